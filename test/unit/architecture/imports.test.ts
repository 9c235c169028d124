/**
 * The layering, checked over the import graph of src/ (static imports, re-exports, dynamic
 * `import()` and `import('…')` types), parsed with the TypeScript compiler so a comment or a string
 * cannot fool it:
 *   - src/core imports no component (src/sources, src/sinks), nor src/builtins.ts, nor src/cli;
 *   - a component imports, inside src/, only src/public and its own folder;
 *   - no import cycle among src modules, type-only imports included (a type loop is still a loop in the design).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SRC = path.join(ROOT, 'src');

interface Edge {
  readonly from: string;
  readonly to: string;
  /** False for `import type`, type-only specifiers and `import('…')` types: erased at run time. */
  readonly runtime: boolean;
  readonly line: number;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

const rel = (file: string) => path.relative(ROOT, file).split(path.sep).join('/');

function importsOf(file: string): Edge[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edges: Edge[] = [];
  const add = (specifier: ts.Expression | ts.LiteralTypeNode['literal'] | undefined, runtime: boolean) => {
    if (!specifier || !ts.isStringLiteralLike(specifier) || !specifier.text.startsWith('.')) return;
    const to = rel(path.resolve(path.dirname(file), specifier.text));
    edges.push({ from: rel(file), to, runtime, line: source.getLineAndCharacterOfPosition(specifier.getStart(source)).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const typeOnly = clause !== undefined && (clause.isTypeOnly
        || (!clause.name && named !== undefined && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier, !typeOnly);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      const named = node.exportClause;
      const typeOnly = node.isTypeOnly
        || (named !== undefined && ts.isNamedExports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly));
      add(node.moduleSpecifier, !typeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], true);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal, false);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, !node.isTypeOnly);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

const edges = sourceFiles(SRC).flatMap(importsOf);
const show = (edge: Edge) => `${edge.from}:${edge.line} imports ${edge.to}`;

/** `src/sources/http` for anything under it; undefined outside the components. */
function componentOf(file: string): string | undefined {
  const match = /^src\/(sources|sinks)\/([^/]+)\//.exec(file);
  return match ? `src/${match[1]}/${match[2]}` : undefined;
}

/** Every elementary cycle reachable in the run-time graph, each reported once as a path. */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const walk = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') {
        const cycle = [...stack.slice(stack.indexOf(next)), next];
        const key = [...cycle.slice(0, -1)].sort().join('|');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push(cycle);
        }
      } else if (!state.has(next)) {
        walk(next);
      }
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) walk(node);
  return cycles;
}

describe('the import graph of src/', () => {
  it('parses imports the way the compiler reads them (sanity: the graph is not empty)', () => {
    assert.ok(edges.some((edge) => edge.from === 'src/builtins.ts' && edge.to === 'src/sinks/console/index.ts'));
    assert.ok(edges.some((edge) => edge.from === 'src/cli/main.ts' && edge.to === 'src/builtins.ts' && edge.runtime), 'dynamic import() is seen');
  });

  it('src/core imports no component, nor src/builtins.ts, nor src/cli', () => {
    const bad = edges.filter((edge) => edge.from.startsWith('src/core/')
      && (componentOf(edge.to) !== undefined || edge.to === 'src/builtins.ts' || edge.to.startsWith('src/cli/')));
    assert.deepEqual(bad.map(show), []);
  });

  it('a component imports, inside src/, only src/public and its own folder', () => {
    const bad = edges.filter((edge) => {
      const own = componentOf(edge.from);
      if (!own || !edge.to.startsWith('src/')) return false;
      return !edge.to.startsWith('src/public/') && !edge.to.startsWith(`${own}/`);
    });
    assert.deepEqual(bad.map(show), []);
  });

  it('has no import cycle', () => {
    const graph = new Map<string, string[]>();
    for (const edge of edges) if (edge.to.startsWith('src/')) graph.set(edge.from, [...(graph.get(edge.from) ?? []), edge.to]);
    assert.deepEqual(findCycles(graph).map((cycle) => cycle.join(' -> ')), []);
  });

  it('finds a cycle and names its path (the checker itself)', () => {
    const graph = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['d']]]);
    assert.deepEqual(findCycles(graph).map((cycle) => cycle.join(' -> ')), ['a -> b -> c -> a', 'd -> d']);
  });
});

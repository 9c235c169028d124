import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PluginApi } from '../public/index.ts';

export class PluginError extends Error {
  override readonly name = 'PluginError';
}

interface PluginsFile {
  plugins: string[];
}

/** Reads plugins.json: `{ "plugins": ["./path/to/plugin.js", "package-name"] }`. */
export function readPluginsFile(file: string): PluginsFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new PluginError(`${file}: cannot read plugins file: ${(error as Error).message}`);
  }
  const list = (parsed as Partial<PluginsFile> | null)?.plugins;
  if (!Array.isArray(list) || list.some((entry) => typeof entry !== 'string' || !entry)) {
    throw new PluginError(`${file}: must be {"plugins": ["./file.js" | "package-name", ...]}`);
  }
  return { plugins: list };
}

/** Resolves a plugins.json entry: a path (relative to the file) or a package name. */
function resolveEntry(entry: string, baseDir: string): string {
  if (entry.startsWith('.') || path.isAbsolute(entry)) {
    const file = path.resolve(baseDir, entry);
    if (!existsSync(file)) throw new Error(`file not found: ${file}`);
    return file;
  }
  return createRequire(path.join(baseDir, 'plugins.json')).resolve(entry);
}

/**
 * Loads each plugin and calls its `register(api)`. A plugin gets the host API as an argument
 * instead of importing auditpipe, so the same plugin works with the single executable.
 */
export async function loadPlugins(file: string, api: (origin: string) => PluginApi): Promise<string[]> {
  const { plugins } = readPluginsFile(file);
  const baseDir = path.dirname(path.resolve(file));
  const loaded: string[] = [];
  for (const entry of plugins) {
    const origin = `plugin "${entry}" (${file})`;
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(resolveEntry(entry, baseDir)).href)) as Record<string, unknown>;
    } catch (error) {
      throw new PluginError(`${origin}: failed to load: ${(error as Error).message}`);
    }
    const register = (typeof module.register === 'function' ? module.register
      : typeof (module.default as any)?.register === 'function' ? (module.default as any).register
      : typeof module.default === 'function' ? module.default : undefined) as ((api: PluginApi) => unknown) | undefined;
    if (!register) throw new PluginError(`${origin}: must export a function "register(api)" (named or default)`);
    try {
      await register(api(origin));
    } catch (error) {
      throw new PluginError(`${origin}: register() failed: ${(error as Error).message}`);
    }
    loaded.push(entry);
  }
  return loaded;
}

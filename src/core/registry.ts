import 'reflect-metadata';
import { container as rootContainer, type DependencyContainer } from 'tsyringe';
import type { SinkDefinition, SourceDefinition } from './component.ts';

const SINK_PREFIX = 'sink:';
const SOURCE_PREFIX = 'source:';

/**
 * Component definitions live in the DI container under `sink:<type>` / `source:<type>`;
 * the engine resolves them from there, whether a built-in or a plugin registered them.
 */
export class ComponentRegistry {
  readonly container: DependencyContainer;
  private readonly sinks = new Set<string>();
  private readonly sources = new Set<string>();

  constructor(container: DependencyContainer = rootContainer.createChildContainer()) {
    this.container = container;
  }

  registerSink(definition: SinkDefinition, origin = 'built-in'): void {
    assertDefinition(definition, 'sink', origin);
    if (this.sinks.has(definition.type)) throw new Error(`${origin}: sink type "${definition.type}" is already registered`);
    this.container.register(SINK_PREFIX + definition.type, { useValue: definition });
    this.sinks.add(definition.type);
  }

  registerSource(definition: SourceDefinition, origin = 'built-in'): void {
    assertDefinition(definition, 'source', origin);
    if (this.sources.has(definition.type)) throw new Error(`${origin}: source type "${definition.type}" is already registered`);
    this.container.register(SOURCE_PREFIX + definition.type, { useValue: definition });
    this.sources.add(definition.type);
  }

  findSink(type: string): SinkDefinition | undefined {
    return this.sinks.has(type) ? this.container.resolve<SinkDefinition>(SINK_PREFIX + type) : undefined;
  }

  findSource(type: string): SourceDefinition | undefined {
    return this.sources.has(type) ? this.container.resolve<SourceDefinition>(SOURCE_PREFIX + type) : undefined;
  }

  sinkTypes(): string[] {
    return [...this.sinks].sort();
  }

  sourceTypes(): string[] {
    return [...this.sources].sort();
  }
}

function assertDefinition(definition: unknown, kind: string, origin: string): void {
  const d = definition as Partial<SinkDefinition> | null;
  const problems: string[] = [];
  if (!d || typeof d !== 'object') problems.push(`a ${kind} definition must be an object`);
  else {
    if (typeof d.type !== 'string' || !/^[a-z][a-z0-9_-]*$/.test(d.type)) problems.push('"type" must be a lower-case name like "ndjson_file"');
    if (!d.schema || typeof d.schema !== 'object') problems.push('"schema" must be a convict schema object');
    if (typeof d.create !== 'function') problems.push('"create" must be a function (config, context) => component');
  }
  if (problems.length > 0) throw new Error(`${origin}: invalid ${kind} definition: ${problems.join('; ')}`);
}

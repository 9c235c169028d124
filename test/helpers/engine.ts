import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { createBuiltinEngine } from '../../src/builtins.ts';
import type { Engine } from '../../src/core/engine.ts';
import { createLogger } from '../../src/core/logger.ts';
import type { HttpSource } from '../../src/sources/http/source.ts';

export interface TestEngine {
  readonly engine: Engine;
  readonly dir: string;
  /** Base URL of the named pipeline's HTTP source, when it has one. */
  url(pipeline?: string): string;
  stop(): Promise<void>;
}

/** Writes `config` as YAML into a fresh temp dir and starts an engine on it, in this process. */
export async function startEngine(config: Record<string, unknown>, options: { pluginsFile?: string } = {}): Promise<TestEngine> {
  const dir = mkdtempSync(path.join(tmpdir(), 'auditpipe-test-'));
  const file = path.join(dir, 'auditpipe.yml');
  writeFileSync(file, stringify({ data_dir: path.join(dir, 'data'), log_level: 'warn', ...config }));
  const engine = await createBuiltinEngine({ configFile: file, pluginsFile: options.pluginsFile ?? emptyPluginsFile(dir), env: process.env }, createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'));
  await engine.start();
  return {
    engine,
    dir,
    url(pipeline = 'test') {
      const address = (engine.source(pipeline) as HttpSource | undefined)?.address?.();
      if (!address) throw new Error(`pipeline ${pipeline} has no HTTP source`);
      return `http://127.0.0.1:${address.port}`;
    },
    stop: () => engine.stop(),
  };
}

/** Writes a plugins file that lists nothing, so tests never pick up the repo's plugins.json by accident. */
export function emptyPluginsFile(dir: string): string {
  const file = path.join(dir, 'plugins.json');
  writeFileSync(file, '{"plugins": []}');
  return file;
}

/**
 * `--preset NAME`: builds the config from a seed deployment's environment instead of a file.
 * Only `argus` exists (src/sources/http/argus/preset.ts); the config is validated exactly like a
 * file, against every component's schema.
 */
import path from 'node:path';
import { registerBuiltins } from '../builtins.ts';
import { pluginApi, type Loaded } from '../core/app.ts';
import { ConfigError, validateConfig } from '../core/config.ts';
import { Engine } from '../core/engine.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { loadPlugins } from '../core/plugins.ts';
import { ComponentRegistry } from '../core/registry.ts';
import { ArgusPresetError, argusPresetConfig } from '../sources/http/argus/preset.ts';

export const PRESETS = ['argus'] as const;

export async function loadPreset(name: string, pluginsFile: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Loaded & { notes: string[] }> {
  if (name !== 'argus') throw new ConfigError([`--preset ${name}: unknown preset (known: ${PRESETS.join(', ')})`]);
  let preset;
  try {
    preset = argusPresetConfig(env);
  } catch (error) {
    if (error instanceof ArgusPresetError) throw new ConfigError([`--preset argus: ${error.message}`]);
    throw error;
  }
  const registry = new ComponentRegistry();
  registerBuiltins(pluginApi(registry, 'built-in'));
  const plugins = pluginsFile ? await loadPlugins(path.resolve(pluginsFile), (origin) => pluginApi(registry, origin)) : [];
  // The "file" only names where problems come from and anchors relative paths (the CWD, as argus).
  const config = validateConfig(preset.config, path.join(process.cwd(), '(argus preset)'), registry);
  return { config, registry, plugins, notes: preset.notes };
}

export async function createPresetEngine(name: string, pluginsFile: string | undefined, logger?: Logger, env: NodeJS.ProcessEnv = process.env): Promise<Engine> {
  const { config, registry, notes } = await loadPreset(name, pluginsFile, env);
  const log = logger ?? createLogger(config.logLevel);
  for (const note of notes) log.warn({ preset: name }, note);
  return new Engine(config, registry, log);
}

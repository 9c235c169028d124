/**
 * Node's compile cache for the CLI and its worker threads, in a directory only this user can
 * write. Stripping the TypeScript and compiling the modules is most of a start: a verify worker
 * took ~270 ms of CPU to load, ~90 ms with the cache (docs/decisions.md, "Verify").
 *
 * Node's own default directory is the shared temporary directory, where another local user
 * could plant compiled code; this one is `$XDG_CACHE_HOME/auditpipe/compile-cache` (or
 * `~/.cache/…`), created private, and used only when it is this user's and nobody else can write
 * it. A user's own NODE_COMPILE_CACHE (or NODE_DISABLE_COMPILE_CACHE) is left to Node.
 * AUDITPIPE_COMPILE_CACHE=off turns it off.
 */
import { lstatSync, mkdirSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import path from 'node:path';

export function enableCompileCache(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.NODE_COMPILE_CACHE || env.NODE_DISABLE_COMPILE_CACHE || env.AUDITPIPE_COMPILE_CACHE === 'off') return undefined;
  if (typeof module.enableCompileCache !== 'function' || typeof process.getuid !== 'function') return undefined;
  try {
    const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(homedir(), '.cache');
    const directory = path.join(base, 'auditpipe', 'compile-cache');
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const uid = process.getuid();
    const isPrivate = (dir: string) => {
      const stat = lstatSync(dir);
      return stat.isDirectory() && stat.uid === uid && (stat.mode & 0o022) === 0;
    };
    // The parent too: whoever can write it could swap the directory for another.
    if (!isPrivate(path.dirname(directory)) || !isPrivate(directory)) return undefined;
    const { status } = module.enableCompileCache(directory);
    if (status === module.constants.compileCacheStatus.FAILED || status === module.constants.compileCacheStatus.DISABLED) return undefined;
    // Worker threads (and Node child processes) read the variable when they start.
    env.NODE_COMPILE_CACHE = directory;
    return directory;
  } catch {
    return undefined; // no home, read-only file system…: start without the cache
  }
}

// An example third-party sink: appends each event as one JSON line to a file and fsyncs it.
// It uses only the `api` object auditpipe passes to register(), never an import of auditpipe,
// so it works the same with the npm package and with the single executable.
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';

/** @param {import('auditpipe').PluginApi} api */
export function register(api) {
  api.registerSink({
    type: 'ndjson_file',
    description: 'Appends events as JSON lines to a file, fsynced before the batch counts as written.',
    schema: {
      path: { doc: 'File to append to; relative paths are resolved against the data dir.', format: String, default: '' },
      fsync: { doc: 'fsync after each batch.', format: Boolean, default: true },
    },
    create(config, context) {
      if (!config.path) throw new Error('ndjson_file: "path" is required');
      const file = path.resolve(context.dataDir, config.path);
      return {
        async start() {
          await mkdir(path.dirname(file), { recursive: true });
        },
        async write(batch) {
          let text = '';
          for (const event of batch.events) text += event.json + '\n';
          const handle = await open(file, 'a');
          try {
            await handle.write(text);
            if (config.fsync) await handle.sync();
          } finally {
            await handle.close();
          }
        },
      };
    },
  });
}

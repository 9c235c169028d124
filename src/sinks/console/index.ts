import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { defineSink, type Batch, type Sink } from '../../public/index.ts';

export interface ConsoleSinkConfig {
  fd: number;
}

/**
 * One JSON line per event (the stored event exactly) on stdout or another file descriptor.
 * A batch counts as written once the bytes are handed to the OS. It cannot deduplicate: a
 * redelivered event is printed again.
 */
export class ConsoleSink implements Sink {
  private readonly stream: Writable;
  private readonly owned: boolean;

  constructor(config: ConsoleSinkConfig) {
    this.owned = config.fd !== 1 && config.fd !== 2;
    this.stream = config.fd === 1 ? process.stdout : config.fd === 2 ? process.stderr : createWriteStream('', { fd: config.fd, autoClose: false });
  }

  write(batch: Batch): Promise<void> {
    let text = '';
    for (const event of batch.events) text += event.json + '\n';
    return new Promise((resolve, reject) => {
      this.stream.write(text, (error) => (error ? reject(error) : resolve()));
    });
  }

  async close(): Promise<void> {
    if (this.owned) await new Promise<void>((resolve) => this.stream.end(resolve));
  }
}

export const consoleSink = defineSink<ConsoleSinkConfig>({
  type: 'console',
  description: 'Writes each event as one JSON line to stdout (or another file descriptor).',
  schema: {
    fd: { doc: 'File descriptor: 1 for stdout, 2 for stderr, or one the process inherited.', format: 'nat', default: 1 },
  },
  create: (config) => new ConsoleSink(config),
});

/** `auditpipe keygen --out FILE`: writes an Ed25519 checkpoint key pair (FILE, mode 0600, and FILE.pub). */
import { KeyError, writeKeyPair } from '../security/keys.ts';
import { parseCommand, UsageError } from './usage.ts';

export const KEYGEN_HELP = `Usage: auditpipe keygen --out FILE

Writes a new Ed25519 checkpoint signing key: FILE (private, PEM, mode 0600) and FILE.pub
(public, PEM; give it to "auditpipe verify --public-key"). Never overwrites an existing file.
Point the postgres sink's checkpoint_key_file at FILE, or put its content (or base64 of it) in
the AUDITPIPE_CHECKPOINT_KEY environment variable. Keep the key out of the repository.
Exit 0: written; 1: cannot write; 2: a file is already there; 64: usage error.
`;

export async function keygenCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand({ command: 'keygen', usage: KEYGEN_HELP, options: { out: { type: 'string', short: 'o' } } }, argv);
  if (parsed.done !== undefined) return parsed.done;
  const out = parsed.values.out;
  if (!out) throw new UsageError('keygen', '--out FILE is required', KEYGEN_HELP);
  try {
    const written = writeKeyPair(out);
    process.stdout.write(`wrote private key ${written.privateFile} (mode 0600) and public key ${written.publicFile}; key id ${written.keyId}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`auditpipe keygen: ${error instanceof KeyError ? error.message : (error as Error).message}\n`);
    return error instanceof KeyError ? 2 : 1;
  }
}

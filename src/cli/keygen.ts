/** `auditpipe keygen --out FILE`: writes an Ed25519 checkpoint key pair (FILE, mode 0600, and FILE.pub). */
import { parseArgs } from 'node:util';
import { KeyError, writeKeyPair } from '../security/keys.ts';

export const KEYGEN_HELP = `Usage: auditpipe keygen --out FILE

Writes a new Ed25519 checkpoint signing key: FILE (private, PEM, mode 0600) and FILE.pub
(public, PEM; give it to "auditpipe verify --public-key"). Never overwrites an existing file.
Point the postgres sink's checkpoint_key_file at FILE, or put its content (or base64 of it) in
the AUDITPIPE_CHECKPOINT_KEY environment variable. Keep the key out of the repository.
`;

export async function keygenCommand(argv: string[]): Promise<number> {
  let out: string | undefined;
  try {
    const { values } = parseArgs({ args: argv, options: { out: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } } });
    if (values.help) {
      process.stdout.write(KEYGEN_HELP);
      return 0;
    }
    out = values.out;
  } catch (error) {
    process.stderr.write(`auditpipe keygen: ${(error as Error).message}\n\n${KEYGEN_HELP}`);
    return 2;
  }
  if (!out) {
    process.stderr.write(`auditpipe keygen: --out FILE is required\n\n${KEYGEN_HELP}`);
    return 2;
  }
  try {
    const written = writeKeyPair(out);
    process.stdout.write(`wrote private key ${written.privateFile} (mode 0600) and public key ${written.publicFile}; key id ${written.keyId}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`auditpipe keygen: ${error instanceof KeyError ? error.message : (error as Error).message}\n`);
    return error instanceof KeyError ? 2 : 1;
  }
}

// Loaded with `node --import`: appends every bare (package) specifier the process resolves to the
// file named by AUDITPIPE_TEST_LOADED_FILE, one per line, so a test can see which libraries loaded.
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const file = process.env.AUDITPIPE_TEST_LOADED_FILE;
const isPackage = (specifier) => !/^(\.|\/|node:|file:|data:)/.test(specifier);

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (file && isPackage(specifier)) appendFileSync(file, `${specifier}\n`);
    return nextResolve(specifier, context);
  },
});

import { pino } from 'pino';

export type Logger = pino.Logger;

/** Keys whose values never reach a log line, wherever they appear in a logged object. */
const SECRET_PATHS = [
  'token', 'tokens', 'password', 'secret', 'secret_key', 'secretKey', 'authorization', 'creds',
  '*.token', '*.tokens', '*.password', '*.secret', '*.secret_key', '*.secretKey', '*.authorization',
  '*.private_key', '*.privateKey', 'headers.authorization', 'req.headers.authorization',
];

/**
 * JSON logs on stderr: stdout belongs to the console sink, whose lines are data.
 * pino transports are not used because they load worker files by path, which a single
 * executable cannot do.
 */
export function createLogger(level = process.env.AUDITPIPE_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      level,
      base: { service: 'auditpipe' },
      redact: { paths: SECRET_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

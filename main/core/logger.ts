/**
 * Logging: pino, one child logger per subsystem (`log.child({ mod: 'queue' })`).
 * Library code never uses `console`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** Directory for `clawbar.log`; omitted means stderr only. */
  logDir?: string;
  /** @default 'info' (or LOG_LEVEL) */
  level?: string;
  /** Also write to stderr. @default true */
  stderr?: boolean;
}

/** Creates the root logger. Writes JSON lines to `<logDir>/clawbar.log` and to stderr. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? 'info';
  const streams: pino.StreamEntry[] = [];
  if (opts.stderr ?? true)
    streams.push({ level: level as pino.Level, stream: pino.destination(2) });
  if (opts.logDir) {
    fs.mkdirSync(opts.logDir, { recursive: true, mode: 0o700 });
    streams.push({
      level: level as pino.Level,
      stream: pino.destination({
        dest: path.join(opts.logDir, 'clawbar.log'),
        mkdir: true,
        sync: false,
      }),
    });
  }
  return pino(
    { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
    pino.multistream(streams),
  );
}

/** A logger that discards everything; for tests and quiet CLI paths. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

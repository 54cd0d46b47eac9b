/**
 * Logging: pino, one child logger per subsystem (`log.child({ mod: 'queue' })`).
 * Library code never uses `console`.
 *
 * Lines go to their destinations through {@link LogSink}s, not pino's own SonicBoom
 * destinations. On a full disk SonicBoom retried the failed write for ever in the flush pino
 * runs at exit (its `flushSync` sleeps and retries on any error, not only EAGAIN), so serve
 * ignored SIGTERM and never exited (issue 6). A sink writes each line synchronously, never
 * retries a failed write, and holds nothing back, so there is nothing to flush at exit and no
 * write can block for long. A log file that cannot be written is dropped, and logging goes on
 * on stderr with one line that says so.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { ConfigError } from './config.js';
import { redactSecrets, serializeError } from './redact.js';

export type { Logger };

export interface LoggerOptions {
  /** Directory for `clawbar.log`; omitted means stderr only. */
  logDir?: string;
  /** @default 'info' (or LOG_LEVEL) */
  level?: string;
  /** Also write to stderr. @default true */
  stderr?: boolean;
  /** The descriptor that stands for stderr; tests point it at a file. @default 2 */
  stderrFd?: number;
}

/** The levels `LOG_LEVEL` may name, quietest last. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/**
 * The level to log at: `raw` trimmed and lowercased, or `info` when unset or blank.
 * @throws {ConfigError} naming the valid levels, when `raw` is not one of them.
 */
export function logLevel(raw: string | undefined): pino.LevelWithSilent {
  const level = raw?.trim().toLowerCase() || 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(
      `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}; got ${JSON.stringify(raw)}`,
    );
  }
  return level as pino.LevelWithSilent;
}

/** The log file's name in the log directory. */
export const LOG_FILE = 'clawbar.log';

/**
 * Creates the root logger. Writes JSON lines to `<logDir>/clawbar.log` (created 0600, in a
 * 0700 directory) and to stderr. A log file that cannot be opened or written is reported on
 * stderr once, and the logger goes on without it.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = logLevel(opts.level ?? process.env.LOG_LEVEL);
  const streams: pino.StreamEntry[] = [];
  const stderrFd = opts.stderrFd ?? 2;
  const useStderr = opts.stderr ?? true;
  const stderr = new LogSink(stderrFd, { name: 'stderr', owned: false });
  if (useStderr) streams.push({ level: level as pino.Level, stream: stderr });
  if (opts.logDir) {
    const file = path.join(opts.logDir, LOG_FILE);
    /** Says once, on stderr, that the file is gone: in pino's shape when stderr carries the log. */
    const report = (err: unknown, what: string): void => {
      const msg = useStderr
        ? `${what}; logging continues on stderr only`
        : `${what}; this command goes on without logging`;
      stderr.write(
        useStderr
          ? `${JSON.stringify({ level: 40, time: new Date().toISOString(), mod: 'logger', file, err: errorFields(err), msg })}\n`
          : `clawbar: ${msg}: ${err instanceof Error ? err.message : String(err)}\n`,
      );
    };
    try {
      const fd = openLogFile(opts.logDir, file);
      streams.push({
        level: level as pino.Level,
        stream: new LogSink(fd, {
          name: file,
          owned: true,
          onFail: (err) => report(err, `the log file ${file} could not be written`),
        }),
      });
    } catch (err) {
      report(err, `the log file ${file} could not be opened`);
    }
  }
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      // pino's own error serializer prints every cause's message and stack, and every field
      // of the error, unredacted; an upstream error body can echo the API key (issue 6).
      // Child loggers inherit these.
      serializers: { err: serializeError, error: serializeError },
      // The last line of defence: a secret that reached a message string or any other field
      // is removed from the finished line before it is written anywhere.
      hooks: { streamWrite: redactSecrets },
    },
    pino.multistream(streams),
  );
}

/**
 * Opens the log file for appending: the directory made 0700 if it is ours, the file created
 * 0600 (and made so if an older version left it readable), never through a link.
 */
function openLogFile(dir: string, file: string): number {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  // A directory the user linked elsewhere is theirs to arrange; one we made is kept private.
  if (st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) !== 0)
    fs.chmodSync(dir, 0o700);
  const { O_WRONLY, O_APPEND, O_CREAT } = fs.constants;
  const noFollow = fs.constants.O_NOFOLLOW ?? 0;
  const fd = fs.openSync(file, O_WRONLY | O_APPEND | O_CREAT | noFollow, 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

/** How long one line may wait for a pipe whose reader is slow (EAGAIN) before it is dropped. */
const MAX_EAGAIN_WAIT_MS = 100;
const EAGAIN_PAUSE_MS = 5;

function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function errorFields(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  return { type: err.name, message: err.message, code: (err as NodeJS.ErrnoException).code };
}

export interface LogSinkOptions {
  /** For the record: the file's path, or "stderr". */
  name: string;
  /** The sink opened the descriptor, and closes it when it gives up. */
  owned: boolean;
  /** The first write that failed (anything but a slow reader): the sink writes no more. */
  onFail?(err: unknown): void;
}

/**
 * A pino destination over one file descriptor that can never hang the process.
 *
 * Each line is written synchronously, so nothing waits in memory and nothing must be flushed
 * at exit. A write that fails (ENOSPC, EIO, EPIPE…) is not retried: the sink stops, closes
 * what it opened and calls `onFail` once. The one error that is waited on is EAGAIN, from a
 * non-blocking pipe whose reader is behind: up to {@link MAX_EAGAIN_WAIT_MS} per line, after
 * which the line is dropped, and later lines are tried once each until the reader catches up.
 */
export class LogSink {
  private fd: number | null;
  /** Lines dropped for a slow reader since the last line that got through. */
  private dropped = 0;

  constructor(
    fd: number,
    private readonly opts: LogSinkOptions,
  ) {
    this.fd = fd;
  }

  /** True once a write failed and the sink gave up. */
  get failed(): boolean {
    return this.fd === null;
  }

  write(line: string): boolean {
    const fd = this.fd;
    if (fd === null) return false;
    const data = Buffer.from(line, 'utf8');
    let offset = 0;
    let waited = 0;
    while (offset < data.length) {
      try {
        offset += fs.writeSync(fd, data, offset, data.length - offset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
          this.fail(err);
          return false;
        }
        // A reader that fell behind: wait a little, unless lines are being dropped already.
        if (this.dropped > 0 || waited >= MAX_EAGAIN_WAIT_MS) {
          this.dropped += 1;
          return false;
        }
        pause(EAGAIN_PAUSE_MS);
        waited += EAGAIN_PAUSE_MS;
      }
    }
    if (this.dropped > 0) {
      const note = `{"level":40,"time":"${new Date().toISOString()}","mod":"logger","dropped":${this.dropped},"msg":"log lines dropped: ${this.opts.name} was not being read"}\n`;
      this.dropped = 0;
      this.write(note);
    }
    return true;
  }

  private fail(err: unknown): void {
    const fd = this.fd;
    this.fd = null;
    if (this.opts.owned && fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {
        // Closing a descriptor whose writes fail may fail too; it is gone either way.
      }
    }
    this.opts.onFail?.(err);
  }
}

/** A logger that discards everything; for tests and quiet CLI paths. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

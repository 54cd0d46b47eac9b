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
 *
 * Where lines go: serve and the app to `logs/clawbar.log`, CLI commands that run the core
 * themselves to `logs/cli.log` (never into serve's file), both JSON lines, rotated by size
 * ({@link LogFileSink}); and stderr, readable on a terminal and JSON lines otherwise
 * (log-format.ts). An error's stack is always in the file, which is read after the fact when
 * nobody can reproduce the failure at debug; on the terminal it shows only at debug.
 */
import fs from 'node:fs';
import path from 'node:path';
import tty from 'node:tty';
import { pino, type Logger } from 'pino';
import { ConfigError } from './config.js';
import { formatPretty, stderrFormat, useColour, type PrettyOptions } from './log-format.js';
import { redactSecrets, serializeError } from './redact.js';

export type { Logger };

export interface LoggerOptions {
  /** Directory for the log file; omitted means stderr only. */
  logDir?: string;
  /**
   * The log file's name in `logDir`: serve and the app write {@link LOG_FILE}, CLI commands
   * {@link CLI_LOG_FILE}, so a command never writes into, or rotates, serve's file.
   * @default LOG_FILE
   */
  fileName?: string;
  /** The log file is rotated once it has grown past this many bytes. @default 10 MiB */
  maxFileBytes?: number;
  /** Rotated generations kept (`clawbar.log.1` … `.N`); the oldest is dropped. @default 3 */
  keepFiles?: number;
  /** @default 'info' (or LOG_LEVEL) */
  level?: string;
  /** Also write to stderr. @default true */
  stderr?: boolean;
  /** The descriptor that stands for stderr; tests point it at a file. @default 2 */
  stderrFd?: number;
  /** Whether stderr is a terminal; tests inject it. @default isatty(stderrFd) */
  isTTY?: boolean;
  /** Where `LOG_LEVEL`, `CLAWBAR_LOG_FORMAT` and `NO_COLOR` are read. @default process.env */
  env?: NodeJS.ProcessEnv;
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

/** pino's number for debug: at it and below, the terminal shows an error's stack. */
const DEBUG_LEVEL = 20;

/** The log file of serve and the app, in the log directory. */
export const LOG_FILE = 'clawbar.log';
/** The log file of CLI commands that run the core themselves (serve not running). */
export const CLI_LOG_FILE = 'cli.log';
/** {@link LoggerOptions.maxFileBytes}'s default: 10 MiB. */
export const DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024;
/** {@link LoggerOptions.keepFiles}'s default. */
export const DEFAULT_KEEP_FILES = 3;

/**
 * Creates the root logger. Writes JSON lines to `<logDir>/<fileName>` (created 0600, in a 0700
 * directory, rotated by size) and to stderr: one readable line per event on a terminal, JSON
 * lines otherwise (see log-format.ts). A log file that cannot be opened or written is reported
 * on stderr once, and the logger goes on without it.
 * @throws {ConfigError} for a bad `LOG_LEVEL` or `CLAWBAR_LOG_FORMAT`, in one line.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const env = opts.env ?? process.env;
  const level = logLevel(opts.level ?? env.LOG_LEVEL);
  const stderrFd = opts.stderrFd ?? 2;
  const facts = { env, isTTY: opts.isTTY ?? tty.isatty(stderrFd) };
  // Checked even when stderr is off, so a mistake shows whichever command meets it first.
  const format = stderrFormat(facts);
  const useStderr = opts.stderr ?? true;
  const streams: pino.StreamEntry[] = [];
  const stderr = new LogSink(stderrFd, {
    name: 'stderr',
    owned: false,
    ...(useStderr && format === 'pretty'
      ? {
          format: prettyFormatter({
            colour: useColour(facts),
            // The stack is for whoever asked for detail; a failure is otherwise one line.
            stack: (pino.levels.values[level] ?? Infinity) <= DEBUG_LEVEL,
          }),
        }
      : {}),
  });
  if (useStderr) streams.push({ level: level as pino.Level, stream: stderr });
  if (opts.logDir) {
    const file = path.join(opts.logDir, opts.fileName ?? LOG_FILE);
    /** Says once, on stderr, what happened to the file: as a log line when stderr carries the log. */
    const report = (err: unknown, what: string, then: string): void => {
      stderr.write(
        useStderr
          ? `${JSON.stringify({ level: 40, time: new Date().toISOString(), mod: 'logger', file, err: serializeError(err), msg: `${what}; ${then}` })}\n`
          : `clawbar: ${what}; ${then}: ${err instanceof Error ? err.message : String(err)}\n`,
      );
    };
    const without = useStderr
      ? 'logging continues on stderr only'
      : 'this command goes on without logging';
    // Bad limits are a programming error, thrown; not a file that could not be opened.
    const limits = rotationLimits(
      opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES,
      opts.keepFiles ?? DEFAULT_KEEP_FILES,
    );
    try {
      streams.push({
        level: level as pino.Level,
        stream: new LogFileSink(opts.logDir, file, {
          ...limits,
          onFail: (err) => report(err, `the log file ${file} could not be written`, without),
          onRotateFail: (err) =>
            report(
              err,
              `the log file ${file} could not be rotated`,
              'logging goes on in it, and rotation is tried again as it grows',
            ),
        }),
      });
    } catch (err) {
      report(err, `the log file ${file} could not be opened`, without);
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
      // is removed from the finished line before it is written anywhere (and before the
      // terminal's formatter reads it).
      hooks: { streamWrite: redactSecrets },
    },
    pino.multistream(streams),
  );
}

/** The terminal formatter, with the time of day in the local zone. */
function prettyFormatter(opts: PrettyOptions): (line: string) => string {
  return (line) => formatPretty(line, opts);
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

export interface LogSinkOptions {
  /** For the record: the file's path, or "stderr". */
  name: string;
  /** The sink opened the descriptor, and closes it when it gives up. */
  owned: boolean;
  /** The first write that failed (anything but a slow reader): the sink writes no more. */
  onFail?(err: unknown): void;
  /**
   * Turns each line into what is written: the terminal's readable form. A formatter that
   * throws never loses the line; it is written as it came. @default the line as it is
   */
  format?(line: string): string;
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
  protected fd: number | null;
  /** Lines dropped for a slow reader since the last line that got through. */
  private dropped = 0;

  constructor(
    fd: number,
    protected readonly opts: LogSinkOptions,
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
    let text = line;
    if (this.opts.format) {
      try {
        text = this.opts.format(line);
      } catch {
        // A bug in the formatter must not cost the line, nor throw into the code that logged.
      }
    }
    const data = Buffer.from(text, 'utf8');
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
    this.written(data.length);
    if (this.dropped > 0) {
      const note = `${JSON.stringify({
        level: 40,
        time: new Date().toISOString(),
        mod: 'logger',
        dropped: this.dropped,
        msg: `log lines dropped: ${this.opts.name} was not being read`,
      })}\n`;
      this.dropped = 0;
      this.write(note);
    }
    return true;
  }

  /** Called after each line that was written whole, with its length in bytes. */
  protected written(_bytes: number): void {}

  private fail(err: unknown): void {
    const fd = this.fd;
    this.fd = null;
    if (this.opts.owned && fd !== null) closeQuietly(fd);
    this.opts.onFail?.(err);
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Closing a descriptor whose writes fail may fail too; it is gone either way.
  }
}

export interface LogFileSinkOptions {
  /** Rotate once the file has grown past this many bytes (a whole number, at least 1). */
  maxBytes: number;
  /** Generations kept besides the live file (a whole number, at least 1). */
  keep: number;
  /** The first write that failed: the sink writes no more (see {@link LogSink}). */
  onFail?(err: unknown): void;
  /**
   * The first rotation that failed. The sink goes on writing the file it has, and tries again
   * once the file has grown by another `maxBytes`; later failures are not reported.
   */
  onRotateFail?(err: unknown): void;
}

/**
 * How often, at most, a writer looks whether the file at its path is still the one it writes:
 * another process may have rotated it, or someone (logrotate, a user) moved or removed it.
 */
const FOLLOW_CHECK_MS = 60_000;

/**
 * A {@link LogSink} over a log file that rotates by size: once the file passes `maxBytes`,
 * `name.N-1` becomes `name.N` … `name.1` becomes `name.2` (the oldest dropped), the file
 * becomes `name.1`, and a new file is opened as the first was (0600, never through a link).
 *
 * Rotation runs inside the write that passed the limit, synchronously, with a few renames and
 * one open: nothing to wait for, nothing to flush. It never throws into a log call: on failure
 * it is reported once and the sink goes on with the file it has.
 *
 * Several processes may append to one file (serve and the app; several CLI commands at once).
 * Appends never tear each other's lines (O_APPEND, one write per line). Each writer counts
 * only its own bytes, so before rotating it checks the file's real size and that the file at
 * the path is still the one it writes; when another writer rotated first, it follows to the
 * new file instead of rotating again. The renames run under a lock file (`name.rotating`), so
 * two writers past the limit at the same instant rotate once, not into each other. A writer
 * that has not noticed a rotation yet appends to `name.1` for up to a minute: its lines are in
 * the older file, never lost.
 */
export class LogFileSink extends LogSink {
  private readonly dir: string;
  private readonly file: string;
  private readonly rotation: LogFileSinkOptions;
  /** Bytes in the file, as far as this writer knows. */
  private size: number;
  /** The size at which the file is looked at again: `maxBytes`, or more after a failure. */
  private checkAt: number;
  /** When the file at the path is looked at again, whatever the size. */
  private followAt: number;
  private rotateFailReported = false;

  /** @throws when the file cannot be opened (see {@link openLogFile}) or a limit is not valid */
  constructor(dir: string, file: string, rotation: LogFileSinkOptions) {
    rotationLimits(rotation.maxBytes, rotation.keep);
    const fd = openLogFile(dir, file);
    super(fd, {
      name: file,
      owned: true,
      ...(rotation.onFail ? { onFail: rotation.onFail } : {}),
    });
    this.dir = dir;
    this.file = file;
    this.rotation = rotation;
    this.size = sizeOf(fd);
    this.checkAt = rotation.maxBytes;
    this.followAt = Date.now() + FOLLOW_CHECK_MS;
  }

  protected override written(bytes: number): void {
    this.size += bytes;
    const now = Date.now();
    if (this.size < this.checkAt && now < this.followAt) return;
    this.followAt = now + FOLLOW_CHECK_MS;
    try {
      this.followOrRotate();
    } catch (err) {
      // Go on with the file we have; try again once it has grown by as much again.
      this.checkAt = this.size + this.rotation.maxBytes;
      if (!this.rotateFailReported) {
        this.rotateFailReported = true;
        this.rotation.onRotateFail?.(err);
      }
    }
  }

  /**
   * Follows the file at the path when it is no longer the one written (another writer rotated
   * it, or it was removed), or rotates it when it is past the limit.
   */
  private followOrRotate(): void {
    const fd = this.fd;
    if (fd === null) return;
    const ours = fs.fstatSync(fd);
    let atPath: fs.Stats | undefined;
    try {
      atPath = fs.lstatSync(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (!atPath || atPath.ino !== ours.ino || atPath.dev !== ours.dev) {
      this.reopen();
      return;
    }
    this.size = ours.size;
    if (ours.size < this.rotation.maxBytes) {
      this.checkAt = this.rotation.maxBytes;
      return;
    }
    const lock = `${this.file}.rotating`;
    // Another writer is rotating: its new file is followed at the next line.
    if (!takeLock(lock)) return;
    try {
      // It may have rotated between the look above and the lock.
      const now = fs.lstatSync(this.file);
      if (now.ino !== ours.ino || now.dev !== ours.dev) {
        this.reopen();
        return;
      }
      // Renames replace what is at the target without following it: a link planted at
      // `name.1` is replaced, never written through.
      for (let n = this.rotation.keep - 1; n >= 1; n--) {
        renameIfThere(`${this.file}.${n}`, `${this.file}.${n + 1}`);
      }
      fs.renameSync(this.file, `${this.file}.1`);
      this.reopen();
    } finally {
      fs.rmSync(lock, { force: true });
    }
  }

  /** Opens the file at the path afresh; the old descriptor is closed only once that worked. */
  private reopen(): void {
    const fresh = openLogFile(this.dir, this.file);
    const old = this.fd;
    this.fd = fresh;
    if (old !== null) closeQuietly(old);
    this.size = sizeOf(fresh);
    this.checkAt = this.rotation.maxBytes;
  }
}

/** @throws {RangeError} unless both are whole numbers of at least 1 */
function rotationLimits(maxBytes: number, keep: number): { maxBytes: number; keep: number } {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new RangeError(`maxFileBytes must be a whole number of bytes, got ${maxBytes}`);
  }
  if (!Number.isSafeInteger(keep) || keep < 1) {
    throw new RangeError(`keepFiles must be a whole number of at least 1, got ${keep}`);
  }
  return { maxBytes, keep };
}

/**
 * A rotation takes a few renames; a lock older than this was left by a writer that died in
 * the middle of one, and is taken over.
 */
const STALE_LOCK_MS = 30_000;

/**
 * Takes the rotation lock (a file created exclusively), so two writers never shift the
 * generations at once: interleaved, their renames could overwrite a generation. False when
 * another writer holds it.
 */
function takeLock(lock: string): boolean {
  const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
  const flags = O_WRONLY | O_CREAT | O_EXCL | (fs.constants.O_NOFOLLOW ?? 0);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.closeSync(fs.openSync(lock, flags, 0o600));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = fs.lstatSync(lock, { throwIfNoEntry: false });
    if (held && Date.now() - held.mtimeMs < STALE_LOCK_MS) return false;
    fs.rmSync(lock, { force: true });
  }
  return false;
}

function sizeOf(fd: number): number {
  try {
    return fs.fstatSync(fd).size;
  } catch {
    return 0; // Found out at the next check.
  }
}

function renameIfThere(from: string, to: string): void {
  try {
    fs.renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** A logger that discards everything; for tests and quiet CLI paths. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

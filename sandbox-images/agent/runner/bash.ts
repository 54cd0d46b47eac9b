/**
 * Runs one shell command for the bash tool: `bash -c` in its own process group, with a
 * timeout that kills the whole group and an output cap that keeps the head and the tail.
 */
import { spawn } from 'node:child_process';

/** How long to wait for output pipes to close after bash itself has exited. */
const PIPE_CLOSE_GRACE_MS = 500;

export interface BashOptions {
  command: string;
  cwd: string;
  timeoutMs: number;
  /** Characters of combined stdout and stderr to keep; the middle of longer output is dropped. */
  maxOutputChars: number;
  /** Aborting kills the process group, as a timeout does. */
  signal?: AbortSignal;
}

export interface BashResult {
  /** Combined stdout and stderr in arrival order, capped. */
  output: string;
  /** How many characters were dropped from the middle of the output. */
  omittedChars: number;
  /** The exit code, or null when a signal ended the process. */
  exitCode: number | null;
  /** The signal that ended the process, e.g. `SIGKILL`. */
  exitSignal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  /**
   * True when bash exited but something it started in the background still held the output
   * pipes open, so the result was taken without waiting for them.
   */
  outputLeftOpen: boolean;
}

/**
 * Keeps the first and the last characters of a long stream, because the start of a command's
 * output says what it did and the end says how it finished.
 */
export class HeadTailBuffer {
  private head = '';
  private tail = '';
  private total = 0;

  constructor(
    private readonly headChars: number,
    private readonly tailChars: number,
  ) {}

  append(text: string): void {
    this.total += text.length;
    let rest = text;
    if (this.head.length < this.headChars) {
      const room = this.headChars - this.head.length;
      this.head += rest.slice(0, room);
      rest = rest.slice(room);
    }
    if (rest === '') return;
    this.tail += rest;
    // Trim only once the tail is twice its size, so appending stays linear.
    if (this.tail.length > 2 * this.tailChars) this.tail = this.tail.slice(-this.tailChars);
  }

  /** The kept text, with a marker where the middle was dropped. */
  result(): { text: string; omittedChars: number } {
    const tail = this.tail.slice(-this.tailChars);
    const omittedChars = this.total - this.head.length - tail.length;
    if (omittedChars <= 0) return { text: this.head + tail, omittedChars: 0 };
    return {
      text: `${this.head}\n\n[… ${omittedChars} characters of output omitted …]\n\n${tail}`,
      omittedChars,
    };
  }
}

/**
 * Runs `command` with `bash -c`. Never rejects: a failure to start is reported as output with
 * exit code 127, the shell's own code for "command not found".
 */
export function runBash(options: BashOptions): Promise<BashResult> {
  const headChars = Math.floor(options.maxOutputChars / 2);
  const buffer = new HeadTailBuffer(headChars, options.maxOutputChars - headChars);

  return new Promise((resolve) => {
    // detached: the child leads a new process group, so a timeout can kill everything it
    // started (pipelines, background jobs) with one signal to the negative pid.
    // stdin is ignored: the runner's own stdin carries protocol frames.
    const child = spawn('bash', ['-c', options.command], {
      cwd: options.cwd,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => buffer.append(chunk));
    child.stderr.on('data', (chunk: string) => buffer.append(chunk));

    let timedOut = false;
    let aborted = false;
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;

    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        // SIGKILL cannot be trapped: a command past its timeout has had its chance.
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // ESRCH: the group is already gone.
      }
    };
    const timeoutTimer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      killGroup();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (
      exitCode: number | null,
      exitSignal: NodeJS.Signals | null,
      outputLeftOpen: boolean,
    ): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timeoutTimer);
      clearTimeout(graceTimer);
      options.signal?.removeEventListener('abort', onAbort);
      const { text, omittedChars } = buffer.result();
      resolve({
        output: text,
        omittedChars,
        exitCode,
        exitSignal,
        timedOut,
        aborted,
        outputLeftOpen,
      });
    };

    child.on('error', (err) => {
      buffer.append(`failed to run bash: ${err.message}\n`);
      finish(127, null, false);
    });
    // 'close' waits for the pipes as well as the process, so no trailing output is lost.
    child.on('close', (code, signal) => finish(code, signal, false));
    child.on('exit', (code, signal) => {
      // A background job (`server &`) keeps the pipes open after bash exits; don't let it
      // hold the turn hostage. Stop reading and report what arrived.
      graceTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal, true);
      }, PIPE_CLOSE_GRACE_MS);
    });
    if (options.signal?.aborted) onAbort();
  });
}

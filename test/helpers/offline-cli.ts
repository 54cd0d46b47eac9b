/**
 * The built `clawbar` command as a user runs it with `serve` not running: a child process with
 * only `CLAWBAR_HOME` of Clawbar's settings (none of this process's `CLAWBAR_*` or
 * `ANTHROPIC_*` variables leak in).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach } from 'vitest';
import { CLI, ROOT } from './clawbar.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Throws, with the fix, when the CLI has not been built. */
export function requireBuiltCli(): void {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'main', 'cli', 'index.js'))) {
    throw new Error(
      'dist/main/cli/index.js is missing: run `npm run build` first (`npm test` does it)',
    );
  }
}

/** The environment of a user who set only CLAWBAR_HOME (plus `extra`). */
export function userEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('CLAWBAR_') && !key.startsWith('ANTHROPIC_')) env[key] = value;
  }
  return { ...env, CLAWBAR_HOME: home, ...extra };
}

/**
 * Runs `clawbar ARGS` in `home` and resolves with its exit code and output (never rejects on
 * the exit code). With `input`, that is written to its stdin, which is then closed (as a pipe
 * into it would be); without, stdin stays an open pipe that nothing writes to.
 */
export function clawbarIn(
  home: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      {
        cwd: ROOT,
        env: userEnv(home, opts.env),
        timeout: opts.timeoutMs ?? 30_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(
            new Error(`clawbar ${args.join(' ')} did not finish (${err.message}):\n${stderr}`),
          );
          return;
        }
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) {
      // EPIPE is expected when the CLI stops reading early (a message over the limit); the
      // exit code and stderr are what the test checks.
      child.stdin?.on('error', () => {});
      child.stdin?.end(opts.input);
    }
  });
}

/** Runs a command that must succeed in `home`, and returns its stdout. */
export async function okIn(
  home: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const run = await clawbarIn(home, args, opts);
  if (run.code !== 0)
    throw new Error(`clawbar ${args.join(' ')} exited ${run.code}:\n${run.stderr}`);
  return run.stdout;
}

/**
 * For a test file of CLI runs: checks the CLI is built, gives each test a fresh home in the temp
 * dir (short: the control socket path in it must fit in 108 bytes), and removes it after.
 * Returns the current test's home.
 */
export function useOfflineHome(prefix = 'clawbar-cli-'): () => string {
  let home = '';
  beforeAll(requireBuiltCli);
  beforeEach(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterEach(() => {
    fs.rmSync(home, { recursive: true, force: true });
  });
  return () => home;
}

/**
 * Driving Clawbar as a user does: the built CLI as a child process, `serve` in the
 * background, the agent image built from this checkout.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { buildAgentImage } from '../../main/core/sandbox/image.js';
import { TEST_BASE_IMAGE } from './docker.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'bin', 'clawbar.js');
/** Tests use their own tag, so they never replace the image a user runs. */
export const TEST_AGENT_IMAGE = 'clawbar-agent:test';

export function requireBuild(): void {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'main', 'cli', 'index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
  }
  if (!fs.existsSync(path.join(ROOT, 'sandbox-images', 'agent', 'dist', 'runner.mjs'))) {
    throw new Error('the runner bundle is missing: run `npm run build`');
  }
}

let imageBuilt: Promise<void> | undefined;

/** Builds the agent image from this checkout's runner bundle (cached layers make it quick). */
export function ensureAgentImage(): Promise<void> {
  imageBuilt ??= buildAgentImage({
    docker: new Docker(),
    contextDir: path.join(ROOT, 'sandbox-images', 'agent'),
    tag: TEST_AGENT_IMAGE,
    baseImage: TEST_BASE_IMAGE,
  }).then(() => undefined);
  return imageBuilt;
}

export function tempHome(prefix = 'clawbar-e2e-'): string {
  // Short path: a unix socket path must fit in 108 bytes.
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `clawbar ARGS` and resolves with its exit code and output (never rejects on exit code). */
export function cli(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      {
        env: { ...process.env, ...env },
        cwd: ROOT,
        timeout: timeoutMs,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number') {
          reject(new Error(`clawbar ${args.join(' ')} did not finish: ${err.message}\n${stderr}`));
          return;
        }
        resolve({ code: err ? Number((err as { code: number }).code) : 0, stdout, stderr });
      },
    );
  });
}

export interface ServeProcess {
  child: ChildProcess;
  logs(): string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `clawbar serve` and resolves once its control socket answers. */
export async function startServe(env: NodeJS.ProcessEnv, home: string): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    // JSON lines on stderr whatever the developer's shell says: tests read serve's log.
    env: { ...process.env, CLAWBAR_LOG_FORMAT: 'json', ...env, CLAWBAR_HOME: home },
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const deadline = Date.now() + 30_000;
  while (!output.includes('clawbar serving')) {
    if (child.exitCode !== null)
      throw new Error(`serve exited early (${child.exitCode}):\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not start within 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    logs: () => output,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** A group as `clawbar groups add --json` prints it. */
export interface AddedGroup {
  name: string;
  folder: string;
  jid: string;
}

/** A chat message as `clawbar messages --json` prints it. */
export interface ChatMessage {
  from: string;
  fromAssistant: boolean;
  text: string;
}

/** How long an agent run may take to show its effects: a cold container start on 2 loaded cores. */
export const RUN_DEADLINE_MS = 90_000;

/**
 * Polls `probe` every 250 ms until it returns a value, or throws at the deadline with `what`
 * (a function when what to say, such as serve's logs, is only known then).
 */
export async function pollUntil<T>(
  what: string | (() => string),
  probe: () => Promise<T | undefined> | T | undefined,
  deadlineMs = RUN_DEADLINE_MS,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      const said = typeof what === 'string' ? what : what();
      throw new Error(`timed out after ${deadlineMs / 1000} s: ${said}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

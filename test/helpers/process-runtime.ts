/**
 * A container runtime for unit tests that runs the agent as a plain child process: by default
 * the real runner bundle, with a temp folder standing in for `/workspace` (its `group` and
 * `global` entries link to the mounts' host folders). No Docker, so
 * `AgentRun`'s timeouts and fault paths are tested fast and exactly.
 *
 * Faults are switched on per test: a start that hangs (honouring the abort signal or not), a
 * kill that fails, a wait the runtime "loses", an engine that reports itself down.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import {
  ImageMissingError,
  type ContainerRuntime,
  type ContainerSpec,
  type RunningContainer,
  type RuntimeState,
  type StartOptions,
} from '../../main/core/sandbox/runtime.js';
import { ROOT } from './clawbar.js';

export const RUNNER_BUNDLE = path.join(ROOT, 'sandbox-images', 'agent', 'dist', 'runner.mjs');

export interface ProcessRuntimeFaults {
  /** How `start` behaves: at once, after a delay, or never (until aborted, or truly never). */
  start: 'ok' | { delayMs: number } | 'hang' | 'hang-ignoring-abort';
  /** `kill()` rejects as an unreachable engine would, and leaves the process running. */
  killFails: boolean;
  /** What `check()` answers. */
  engineUp: boolean;
  /** Whether the agent image is there: without it `start` fails as Docker's would. @default true */
  imagePresent: boolean;
}

export interface StartedProcess {
  spec: ContainerSpec;
  child: ChildProcess;
  /** Every line the host wrote to the process's stdin. */
  stdinLines: string[];
  /** Makes `wait()` reject as if the engine lost the container (the process keeps running). */
  loseWait(): void;
  exited: Promise<number | null>;
}

export class ProcessRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  readonly started: StartedProcess[] = [];
  readonly faults: ProcessRuntimeFaults = {
    start: 'ok',
    killFails: false,
    engineUp: true,
    imagePresent: true,
  };
  /** Calls made to start, including ones that never finished. */
  startCalls = 0;
  private readonly dirs: string[] = [];

  /** @param command what to run instead of the runner bundle, e.g. a misbehaving script */
  constructor(private command: string[] = [process.execPath, RUNNER_BUNDLE]) {}

  /** Runs this script (JavaScript source) with node instead of the runner. */
  useScript(source: string): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-script-'));
    this.dirs.push(dir);
    const file = path.join(dir, 'runner.mjs');
    fs.writeFileSync(file, source);
    this.command = [process.execPath, file];
  }

  async check(): Promise<RuntimeState> {
    return this.faults.engineUp
      ? { ok: true, version: 'process' }
      : { ok: false, reason: 'Docker engine not reachable: test', fix: 'start it' };
  }

  async inspectImage(image: string) {
    return { image, present: this.faults.imagePresent };
  }

  async listOurs() {
    return [];
  }

  async removeOrphans(): Promise<number> {
    return 0;
  }

  async start(spec: ContainerSpec, opts: StartOptions = {}): Promise<RunningContainer> {
    this.startCalls += 1;
    if (!this.faults.imagePresent) throw new ImageMissingError(spec.image);
    const { signal } = opts;
    const fault = this.faults.start;
    if (fault !== 'ok') {
      await new Promise<void>((resolve, reject) => {
        if (fault === 'hang-ignoring-abort') return; // never settles
        const onAbort = () => reject(signal?.reason ?? new Error('aborted'));
        signal?.addEventListener('abort', onAbort, { once: true });
        if (fault !== 'hang') setTimeout(resolve, fault.delayMs);
      });
    }
    signal?.throwIfAborted();
    return this.spawn(spec);
  }

  /** Kills every process still running and removes temp folders. */
  async cleanup(): Promise<void> {
    for (const p of this.started) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await Promise.all(this.started.map((p) => p.exited));
    for (const dir of this.dirs) fs.rmSync(dir, { recursive: true, force: true });
  }

  private spawn(spec: ContainerSpec): RunningContainer {
    const workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-ws-'));
    this.dirs.push(workspace);
    for (const mount of spec.mounts) {
      fs.symlinkSync(mount.hostPath, path.join(workspace, path.basename(mount.containerPath)));
    }
    const [cmd, ...args] = this.command as [string, ...string[]];
    const child = spawn(cmd, args, {
      env: { PATH: process.env.PATH ?? '', ...spec.env, CLAWBAR_WORKSPACE: workspace },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdinLines: string[] = [];
    // A tap in front of the child's stdin, so tests see every frame the host sent.
    const stdin = new PassThrough();
    stdin.on('data', (chunk: Buffer) =>
      stdinLines.push(...chunk.toString().split('\n').filter(Boolean)),
    );
    stdin.pipe(child.stdin!);
    child.stdin!.on('error', () => undefined);
    const exited = new Promise<number | null>((resolve) =>
      child.once('close', (code) => resolve(code)),
    );
    let lose!: (err: Error) => void;
    const lost = new Promise<never>((_, reject) => (lose = reject));
    lost.catch(() => undefined);
    const started: StartedProcess = {
      spec,
      child,
      stdinLines,
      loseWait: () => lose(new Error('lost track of the container (test)')),
      exited,
    };
    this.started.push(started);
    return {
      id: String(child.pid),
      name: spec.name,
      stdin,
      stdout: child.stdout!,
      stderr: child.stderr!,
      wait: () => Promise.race([exited.then((code) => ({ exitCode: code ?? 137 })), lost]),
      kill: async () => {
        if (this.faults.killFails) throw new Error('Docker engine not reachable: kill (test)');
        if (child.exitCode === null) child.kill('SIGKILL');
      },
    };
  }
}

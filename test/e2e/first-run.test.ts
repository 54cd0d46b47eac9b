/**
 * A newcomer's first run (issue 7), with the built CLI, a real `serve` and the real Docker
 * engine: serve builds a missing agent image itself, with progress, and answers once it is
 * built; a second start does not build again. Setup mistakes (no key, no engine) are told to
 * `send --wait` at once with the fix, start no container, and need no restart to clear. A
 * serve that stops mid-wait leaves a clear line, not a stack.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolveHome } from '../../main/core/config.js';
import { RUNNER_HASH_LABEL } from '../../main/core/sandbox/image.js';
import { SCOPE_LABEL, scopeForHome } from '../../main/core/sandbox/runtime.js';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
import {
  CLI,
  cli,
  ensureAgentImage,
  requireBuild,
  ROOT,
  startServe,
  tempHome,
  TEST_AGENT_IMAGE,
  type ServeProcess,
} from '../helpers/clawbar.js';
import { removeTestImage, requireDocker } from '../helpers/docker.js';

const API_KEY = 'sk-ant-test-first-run';
/** The trailing part of every "not answered yet" error: the message is safe. */
const STORED = /The message is stored and will be answered once that is fixed\n$/;
const STACK = /\n\s+at /;

requireDocker('the first run', () => {
  const docker = new Docker();
  let fake: FakeAnthropic;
  const homes: string[] = [];
  const serves: ServeProcess[] = [];
  /** This test's own image tag: serve must build it, and nothing else may use it. */
  const ownImage = `clawbar-test-firstrun-${randomBytes(4).toString('hex')}:latest`;

  beforeAll(async () => {
    requireBuild();
    await ensureAgentImage();
    fake = await startFakeAnthropic({ apiKey: API_KEY, fallback: textTurn('Hello, newcomer.') });
  }, 180_000);

  afterAll(async () => {
    for (const serve of serves) await serve.stop();
    await fake?.close();
    await removeTestImage(docker, ownImage);
    for (const home of homes) fs.rmSync(home, { recursive: true, force: true });
  });

  /**
   * A new home with a "Family" group, and the environment of a user of it: the fake API's key
   * and URL and the test image, with `extra` over them (`home` stands for the new home).
   */
  async function familyHome(
    extra: (home: string) => Record<string, string> = () => ({}),
  ): Promise<{ home: string; env: Record<string, string> }> {
    const home = tempHome('clawbar-first-');
    homes.push(home);
    const env = {
      CLAWBAR_HOME: home,
      ANTHROPIC_API_KEY: API_KEY,
      ANTHROPIC_BASE_URL: fake.url,
      CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
      ...extra(home),
    };
    expect((await cli(['groups', 'add', '--name', 'Family'], env)).code).toBe(0);
    return { home, env };
  }

  async function serveIn(env: NodeJS.ProcessEnv, home: string): Promise<ServeProcess> {
    const serve = await startServe(env, home);
    serves.push(serve);
    return serve;
  }

  /** Containers this home's serve started, by its scope label. */
  async function containersOf(home: string): Promise<number> {
    const scope = scopeForHome(resolveHome({ CLAWBAR_HOME: home }));
    const list = await docker.listContainers({
      all: true,
      filters: { label: [`${SCOPE_LABEL}=${scope}`] },
    });
    return list.length;
  }

  it('serve builds a missing agent image with progress, answers once it is built, and never rebuilds an unchanged one', async () => {
    const { home, env } = await familyHome(() => ({ CLAWBAR_IMAGE: ownImage }));
    const serve = await serveIn(env, home);

    // On a terminal (a pseudo-terminal from script(1)), send --wait shows where it is.
    const answer = await onTerminal(
      [CLI, 'send', '--group', 'family', '--wait', '@Andy hello'],
      env,
    );
    expect(answer.code, `${answer.output}\n${serve.logs()}`).toBe(0);
    expect(answer.output).toContain('Hello, newcomer.');
    // (Whether it also shows "waiting: building the agent image" depends on whether the build,
    // quick here with cached layers, is still running when the message arrives.)
    const stages = progressLines(answer.output);
    expect(stages[0]).toBe('stored');
    expect(stages.slice(-3)).toEqual(['starting the agent container', 'thinking', 'done']);

    // The log tells the build's story, and the image carries the runner's hash.
    expect(serve.logs()).toMatch(/building the agent image .* \(it is not there yet\)/);
    expect(serve.logs()).toMatch(/image build: building on /);
    expect(serve.logs()).toMatch(/agent image built/);
    const built = await docker.getImage(ownImage).inspect();
    expect(built.Config.Labels?.[RUNNER_HASH_LABEL]).toMatch(/^[0-9a-f]{64}$/);
    expect(await serve.stop()).toBe(0);

    // A second start finds it current: nothing is built, the same image answers.
    const again = await serveIn(env, home);
    const second = await cli(['send', '--group', 'family', '--wait', '@Andy again'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(again.logs()).not.toMatch(/building the agent image/);
    expect((await docker.getImage(ownImage).inspect()).Id).toBe(built.Id);
    expect(await again.stop()).toBe(0);
  }, 600_000);

  it('without an API key, send --wait is told the fix at once and no container starts', async () => {
    const { home, env } = await familyHome(() => ({ ANTHROPIC_API_KEY: '' }));
    const serve = await serveIn(env, home);
    const sent = await cli(['send', '--group', 'family', '--wait', '@Andy hello'], env);
    expect(sent.code).toBe(1);
    expect(sent.stderr).toMatch(
      /^clawbar: not answered yet: no Anthropic API key is set \(fix: set ANTHROPIC_API_KEY in the environment of `clawbar serve` and restart it\)\. /,
    );
    expect(sent.stderr).toMatch(STORED);
    expect(sent.stderr).not.toMatch(STACK);
    const status = await cli(['status'], env);
    expect(status.stdout).toMatch(/^ready: +no: no Anthropic API key is set \(fix: /m);
    expect(await containersOf(home)).toBe(0);
    expect(await serve.stop()).toBe(0);

    // Fixed by setting the key and starting serve again: the stored message is answered.
    const fixed = { ...env, ANTHROPIC_API_KEY: API_KEY };
    const restarted = await serveIn(fixed, home);
    await expect
      .poll(async () => (await cli(['messages', '--group', 'family'], fixed)).stdout, {
        timeout: 60_000,
        interval: 500,
      })
      .toMatch(/Hello, newcomer\./);
    expect(await restarted.stop()).toBe(0);
  }, 180_000);

  it('with no engine reachable, send --wait is told the fix at once', async () => {
    // An engine socket nobody listens on: Docker is "not running".
    const { home, env } = await familyHome((dir) => ({
      DOCKER_HOST: `unix://${path.join(dir, 'no-docker.sock')}`,
    }));
    const serve = await serveIn(env, home);
    const sent = await cli(['send', '--group', 'family', '--wait', '@Andy hello'], env);
    expect(sent.code).toBe(1);
    expect(sent.stderr).toMatch(/^clawbar: not answered yet: Docker engine not reachable.*\(fix: /);
    expect(sent.stderr).toMatch(STORED);
    expect(sent.stderr).not.toMatch(STACK);
    expect(await serve.stop()).toBe(0);
  }, 120_000);

  it('a serve that stops mid-wait, killed or orderly, leaves one clear line: the message is stored for the next start', async () => {
    const { home, env } = await familyHome();
    fake.reset();
    fake.script([textTurn('too late', { delayMs: 30_000 })]);
    const serve = await serveIn(env, home);
    const waiting = cli(['send', '--group', 'family', '--wait', '@Andy take your time'], env);
    await fake.waitForRequests(1); // the model is thinking: serve is mid-answer
    serve.child.kill('SIGKILL'); // the hardest stop: no goodbye on the socket
    const sent = await waiting;
    expect(sent.code).toBe(1);
    expect(sent.stderr).toBe(
      'clawbar: clawbar serve stopped before answering; the message is stored and will be answered when serve starts again\n',
    );
    const history = await cli(['messages', '--group', 'family'], env);
    expect(history.stdout).toContain('@Andy take your time');

    // An orderly stop (SIGTERM) answers the waiting client before it goes, in one line too.
    fake.reset();
    fake.script([
      textTurn('Answered after the restart.'),
      textTurn('too late', { delayMs: 30_000 }),
    ]);
    const next = await serveIn(env, home);
    await expect
      .poll(async () => (await cli(['messages', '--group', 'family'], env)).stdout, {
        timeout: 60_000,
        interval: 500,
      })
      .toContain('Answered after the restart.');
    const second = cli(['send', '--group', 'family', '--wait', '@Andy and this?'], env);
    await fake.waitForRequests(2);
    expect(await next.stop()).toBe(0);
    const stopped = await second;
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toBe(
      'clawbar: clawbar is shutting down; the message is stored and will be answered after restart\n',
    );
  }, 180_000);
});

/**
 * Runs node with `args` on a pseudo-terminal (script(1)), so stderr is a TTY as for a person at
 * a terminal; resolves with the exit code and everything written to the terminal.
 */
function onTerminal(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, ...args].map(shellQuote).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qefc', command, '/dev/null'], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, output: output.replace(/\r/g, '') }));
  });
}

/** The progress lines of `send --wait` ("   1.2 s  thinking"), without their times. */
function progressLines(output: string): string[] {
  return [...output.matchAll(/^ +\d+\.\d s {2}(.+)$/gm)].map((m) => m[1] as string);
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

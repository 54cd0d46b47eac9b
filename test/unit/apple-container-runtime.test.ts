/**
 * The Apple Container runtime as a whole, driven through a fake `container` executable (a
 * script in a temp dir that answers like the CLI, from the recorded outputs in
 * test/fixtures/apple-container/): real processes, real stdin/stdout pipes, no Mac.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../main/core/logger.js';
import { AppleContainerRuntime } from '../../main/core/sandbox/apple-container.js';
import { appleImageBuilder } from '../../main/core/sandbox/apple-image-builder.js';
import { RUNNER_HASH_LABEL, runnerContentHash } from '../../main/core/sandbox/image.js';
import {
  DEFAULT_LIMITS,
  ImageMissingError,
  RuntimeUnavailableError,
  type ContainerSpec,
} from '../../main/core/sandbox/runtime.js';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'apple-container');

/**
 * The fake CLI. Its behaviour comes from files in its directory: `mode` (`up`, `down`,
 * `stopped`), and it logs each call's arguments as one JSON line to `calls.log`.
 */
const FAKE_CLI = `#!${process.execPath}
const fs = require('node:fs');
const path = require('node:path');
const dir = __dirname;
const args = process.argv.slice(2);
fs.appendFileSync(path.join(dir, 'calls.log'), JSON.stringify(args) + '\\n');
const fixtures = ${JSON.stringify(FIXTURES)};
const read = (f) => fs.readFileSync(path.join(fixtures, f), 'utf8');
const state = (name, fallback) => { try { return fs.readFileSync(path.join(dir, name), 'utf8').trim(); } catch { return fallback; } };
const mode = state('mode', 'up');
const fail = (file, code) => { process.stderr.write(read(file)); process.exit(code); };
const [cmd, sub] = args;
if (mode === 'down' && !(cmd === 'system' && sub === 'start')) {
  if (cmd === 'system' && sub === 'status') { process.stdout.write(read('status-not-running.json')); process.exit(1); }
  fail('stderr-xpc.txt', 1);
}
if (cmd === 'system' && sub === 'status') {
  process.stdout.write(read('status-running.json')); process.exit(0);
}
if (cmd === 'system' && sub === 'start') {
  fs.writeFileSync(path.join(dir, 'mode'), 'up'); process.stdout.write('Verifying apiserver is running...\\n'); process.exit(0);
}
if (cmd === 'image' && sub === 'inspect') {
  if (args[2] === 'clawbar-missing:none') fail('stderr-not-found.txt', 1);
  process.stdout.write(read('image-inspect-1.x.json').replace('HASH_PLACEHOLDER', state('hash', 'none'))); process.exit(0);
}
if (cmd === 'create') {
  const name = args[args.indexOf('--name') + 1];
  if (state('exists', '') === name) fail('stderr-exists.txt', 1);
  fs.writeFileSync(path.join(dir, 'created-' + name), JSON.stringify(args));
  process.stdout.write(name + '\\n'); process.exit(0);
}
if (cmd === 'start') {
  // The "runner": echoes each stdin line back as a frame, logs to stderr, exits 7 on EOF.
  const name = args[3];
  const mounts = JSON.parse(fs.readFileSync(path.join(dir, 'created-' + name), 'utf8'))
    .flatMap((a, i, all) => (a === '--mount' ? [all[i + 1]] : []));
  process.stderr.write('runner: started\\n');
  process.stdout.write(JSON.stringify({ type: 'ready', mounts }) + '\\n');
  let buf = '';
  process.stdin.on('data', (c) => {
    buf += c;
    let i;
    while ((i = buf.indexOf('\\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      process.stdout.write(JSON.stringify({ type: 'echo', line }) + '\\n');
    }
  });
  process.stdin.on('end', () => process.exit(7));
  // The CLI exits with the killed container's code, as \`container kill\` makes it.
  process.on('SIGUSR2', () => process.exit(137));
  fs.writeFileSync(path.join(dir, 'pid-' + name), String(process.pid));
  return;
}
if (cmd === 'kill') {
  const name = args[args.length - 1];
  try { process.kill(Number(fs.readFileSync(path.join(dir, 'pid-' + name), 'utf8')), 'SIGUSR2'); }
  catch { fail('stderr-not-found.txt', 1); }
  process.stdout.write(name + '\\n'); process.exit(0);
}
if (cmd === 'list') { process.stdout.write(read('list-1.x.json')); process.exit(0); }
if (cmd === 'delete') {
  for (const id of args.slice(2)) process.stdout.write(id + '\\n');
  process.exit(0);
}
if (cmd === 'build') {
  process.stdout.write('#1 [internal] load build definition from Dockerfile\\n#1 DONE 0.0s\\n');
  if (state('build', 'ok') === 'fail') { process.stderr.write('Error: failed to solve: process did not complete successfully\\n'); process.exit(1); }
  process.exit(0);
}
process.stderr.write('Error: Unknown option ' + JSON.stringify(args) + '\\n');
process.exit(64);
`;

let dir = '';
let binary = '';
const runtimes: AppleContainerRuntime[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-apple-'));
  binary = path.join(dir, 'container');
  fs.writeFileSync(binary, FAKE_CLI, { mode: 0o755 });
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  runtimes.length = 0;
});

function runtime(over: Partial<ConstructorParameters<typeof AppleContainerRuntime>[0]> = {}) {
  const rt = new AppleContainerRuntime({
    log: silentLogger(),
    binary,
    scope: 'aaaaaaaaaaaaaaaa',
    stagingRoot: path.join(dir, 'staging'),
    ...over,
  });
  runtimes.push(rt);
  return rt;
}

function calls(): string[][] {
  try {
    return fs
      .readFileSync(path.join(dir, 'calls.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as string[]);
  } catch {
    return [];
  }
}

function spec(over: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name: 'clawbar-family-1',
    image: 'clawbar-agent:latest',
    mounts: [],
    env: {},
    labels: {},
    limits: DEFAULT_LIMITS,
    network: false,
    ...over,
  };
}

async function* lines(stream: NodeJS.ReadableStream): AsyncGenerator<Record<string, unknown>> {
  for await (const line of readline.createInterface({ input: stream })) {
    yield JSON.parse(line) as Record<string, unknown>;
  }
}

describe('check', () => {
  it('reports a running service with its version', async () => {
    expect(await runtime().check()).toEqual({ ok: true, version: '1.2.2' });
  });

  it('starts a stopped service once, then reports it running', async () => {
    fs.writeFileSync(path.join(dir, 'mode'), 'down');
    expect(await runtime().check()).toEqual({ ok: true, version: '1.2.2' });
    expect(calls().map((c) => c.slice(0, 2).join(' '))).toEqual([
      'system status',
      'system start',
      'system status',
    ]);
    expect(calls()[1]).toEqual(['system', 'start', '--enable-kernel-install', '--timeout', '60']);
  });

  it('only reports a stopped service, with the fix, when told not to start it', async () => {
    fs.writeFileSync(path.join(dir, 'mode'), 'down');
    expect(await runtime({ startService: false }).check()).toEqual({
      ok: false,
      reason: 'Apple container service not reachable: the apiserver is not running',
      fix: 'start the container service: container system start',
    });
    expect(calls()).toHaveLength(1);
  });

  it('does not try to start the service more than once a minute', async () => {
    fs.writeFileSync(path.join(dir, 'mode'), 'down');
    let now = 1_000_000;
    const rt = runtime({ now: () => now });
    // The start "fails" to stick: the fake goes down again after each start.
    await rt.check();
    fs.writeFileSync(path.join(dir, 'mode'), 'down');
    expect((await rt.check()).ok).toBe(false);
    now += 61_000;
    expect((await rt.check()).ok).toBe(true);
    expect(calls().filter((c) => c[1] === 'start')).toHaveLength(2);
  });

  it('says how to install the CLI when it is not there', async () => {
    const state = await runtime({ binary: path.join(dir, 'no-such-container') }).check();
    expect(state).toMatchObject({
      ok: false,
      fix: expect.stringContaining('github.com/apple/container/releases'),
    });
    expect(state.ok === false && state.reason).toMatch(/is not installed/);
  });

  it('gives up on a CLI that does not answer in time, killing it', async () => {
    fs.writeFileSync(binary, `#!${process.execPath}\nsetInterval(() => {}, 1000);\n`, {
      mode: 0o755,
    });
    const state = await runtime({ checkTimeoutMs: 300, startService: false }).check();
    expect(state).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/did not finish within 0.3 s/),
    });
  });
});

describe('start: stdin and stdout are the container’s', () => {
  it('creates, then starts attached; frames go in over stdin and come back on stdout; EOF ends it', async () => {
    const c = await runtime().start(spec({ env: { TZ: 'UTC' } }));
    const stderr: string[] = [];
    c.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
    const frames = lines(c.stdout);
    expect((await frames.next()).value).toMatchObject({ type: 'ready' });
    c.stdin.write('{"type":"start"}\n');
    expect((await frames.next()).value).toEqual({ type: 'echo', line: '{"type":"start"}' });
    c.stdin.write('{"type":"message"}\n');
    expect((await frames.next()).value).toEqual({ type: 'echo', line: '{"type":"message"}' });
    c.stdin.end();
    expect(await c.wait()).toEqual({ exitCode: 7 });
    expect(stderr.join('')).toContain('runner: started');
    const [inspect, create, start] = calls();
    expect(inspect).toEqual(['image', 'inspect', 'clawbar-agent:latest']);
    expect(create?.[0]).toBe('create');
    expect(create).toContain('TZ=UTC');
    expect(create).toContain('dev.clawbar.scope=aaaaaaaaaaaaaaaa');
    expect(start).toEqual(['start', '--attach', '--interactive', 'clawbar-family-1']);
    // Writes after exit are dropped, not thrown.
    c.stdin.write('late\n');
  });

  it('kills a running container and its wait resolves', async () => {
    const c = await runtime().start(spec());
    const frames = lines(c.stdout);
    await frames.next();
    await c.kill();
    expect(await c.wait()).toEqual({ exitCode: 137 });
    expect(calls().at(-1)).toEqual(['kill', '--signal', 'KILL', 'clawbar-family-1']);
    await c.kill(); // a second kill of a gone container is fine
  });

  it('mounts directories as they are and single read-only files through a staged copy', async () => {
    const group = path.join(dir, 'group');
    const secrets = path.join(dir, 'home');
    fs.mkdirSync(group);
    fs.mkdirSync(secrets);
    fs.writeFileSync(path.join(secrets, 'notes.txt'), 'remember the milk');
    fs.writeFileSync(path.join(secrets, 'id_rsa'), 'PRIVATE');
    const c = await runtime().start(
      spec({
        mounts: [
          { hostPath: group, containerPath: '/workspace/group', readOnly: false },
          {
            hostPath: path.join(secrets, 'notes.txt'),
            containerPath: '/workspace/extra/notes.txt',
            readOnly: true,
          },
        ],
      }),
    );
    const ready = (await lines(c.stdout).next()).value as { mounts: string[] };
    const staged = path.join(dir, 'staging', 'clawbar-family-1', '1');
    expect(ready.mounts).toEqual([
      `type=bind,source=${group},target=/workspace/group`,
      `type=bind,source=${staged},target=/workspace/extra,readonly`,
    ]);
    expect(fs.readdirSync(staged)).toEqual(['notes.txt']);
    expect(fs.readFileSync(path.join(staged, 'notes.txt'), 'utf8')).toBe('remember the milk');
    c.stdin.end();
    await c.wait();
    // The staged copies go once the container has exited.
    await expect
      .poll(() => fs.existsSync(path.join(dir, 'staging', 'clawbar-family-1')))
      .toBe(false);
  });

  it('refuses a read-write single file before anything runs', async () => {
    const file = path.join(dir, 'notes.txt');
    fs.writeFileSync(file, 'x');
    await expect(
      runtime().start(
        spec({
          mounts: [
            { hostPath: file, containerPath: '/workspace/extra/notes.txt', readOnly: false },
          ],
        }),
      ),
    ).rejects.toThrow(/mounts directories only.*allow its directory/);
    expect(calls()).toEqual([]);
  });

  it('reports a missing image as ImageMissingError without creating anything', async () => {
    await expect(runtime().start(spec({ image: 'clawbar-missing:none' }))).rejects.toBeInstanceOf(
      ImageMissingError,
    );
    expect(calls().map((c) => c[0])).toEqual(['image']);
  });

  it('reports a name clash with the CLI’s words', async () => {
    fs.writeFileSync(path.join(dir, 'exists'), 'clawbar-family-1');
    await expect(runtime().start(spec())).rejects.toThrow(
      /a container named clawbar-family-1 already exists/,
    );
  });

  it('reports a stopped service as RuntimeUnavailableError with the fix', async () => {
    fs.writeFileSync(path.join(dir, 'mode'), 'down');
    const err = await runtime()
      .start(spec())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeUnavailableError);
    expect((err as RuntimeUnavailableError).fix).toBe(
      'start the container service: container system start',
    );
  });

  it('rejects at once with the reason of an aborted signal', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stopped by the user'));
    await expect(runtime().start(spec(), { signal: ac.signal })).rejects.toThrow(
      'stopped by the user',
    );
    expect(calls()).toEqual([]);
  });
});

describe('orphans and images', () => {
  it('lists only this scope’s containers and removes those not kept', async () => {
    const rt = runtime();
    expect((await rt.listOurs()).map((c) => `${c.name} ${c.state}`)).toEqual([
      'clawbar-family-1751360400000 running',
      'clawbar-work-1751321400000 stopped',
    ]);
    expect(await rt.removeOrphans(new Set(['clawbar-family-1751360400000']))).toBe(1);
    expect(calls().at(-1)).toEqual(['delete', '--force', 'clawbar-work-1751321400000']);
  });

  it('inspects an image, and says a missing one is absent', async () => {
    const rt = runtime();
    expect(await rt.inspectImage('clawbar-agent:latest')).toEqual({
      image: 'clawbar-agent:latest',
      present: true,
      id: 'sha256:9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a39c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3',
      createdAt: '2026-07-01T08:55:12Z',
    });
    expect(await rt.inspectImage('clawbar-missing:none')).toEqual({
      image: 'clawbar-missing:none',
      present: false,
    });
  });

  it('builds with container build, and tells current from stale by the runner hash label', async () => {
    const context = path.join(dir, 'ctx');
    fs.mkdirSync(path.join(context, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(context, 'Dockerfile'), 'FROM scratch\n');
    fs.writeFileSync(path.join(context, 'dist', 'runner.mjs'), 'console.log(1)\n');
    const rt = runtime();
    const builder = appleImageBuilder(
      { image: 'clawbar-agent:latest' },
      silentLogger(),
      rt,
      context,
    );
    expect(await builder.freshness()).toBe('stale');
    fs.writeFileSync(path.join(dir, 'hash'), await runnerContentHash(context));
    expect(await builder.freshness()).toBe('current');

    const progress: string[] = [];
    await builder.build((line) => progress.push(line), new AbortController().signal);
    expect(progress).toContain('#1 [internal] load build definition from Dockerfile');
    const build = calls().at(-1) ?? [];
    expect(build.slice(0, 3)).toEqual(['build', '--tag', 'clawbar-agent:latest']);
    expect(build).toContain(`${RUNNER_HASH_LABEL}=${await runnerContentHash(context)}`);

    fs.writeFileSync(path.join(dir, 'build'), 'fail');
    await expect(builder.build(() => {}, new AbortController().signal)).rejects.toThrow(
      /container build of clawbar-agent:latest failed \(exit code 1\)/,
    );
  });
});

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import type { Readable } from 'node:stream';

import Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { silentLogger } from '../../main/core/logger.js';
import {
  ContainerStartError,
  ContainerWaitError,
  DockerRuntime,
  type DockerRuntimeDeps,
} from '../../main/core/sandbox/docker.js';
import { groupMounts } from '../../main/core/sandbox/mounts.js';
import {
  DEFAULT_LIMITS,
  ImageMissingError,
  OURS_LABEL,
  RuntimeUnavailableError,
  SCOPE_LABEL,
  type ContainerSpec,
  type RunningContainer,
} from '../../main/core/sandbox/runtime.js';
import { startDockerProxy, type DockerProxy } from '../helpers/docker-proxy.js';
import { buildTestImage, removeTestImage, requireDocker } from '../helpers/docker.js';

/**
 * The test container's program: echoes stdin lines to stdout as `echo:<line>`, logs to stderr,
 * answers the line `probe` with what it can see of its sandbox, and exits with $EXIT_CODE on
 * EOF. With MODE=hang it ignores its input and never exits.
 */
const ECHO_SCRIPT = String.raw`
const fs = require('fs');
const hang = process.env.MODE === 'hang';
process.stderr.write('echo: started\n');
const rl = require('readline').createInterface({ input: process.stdin });
const tryWrite = (p) => { try { fs.writeFileSync(p, 'x'); return 'ok'; } catch (e) { return e.code; } };
const tryRead = (p) => { try { return fs.readFileSync(p, 'utf8'); } catch (e) { return e.code; } };
const status = (key) => (tryRead('/proc/self/status').match(new RegExp('^' + key + ':\\s*(\\S+)', 'm')) || [])[1];
function probe() {
  return {
    uid: process.getuid(),
    rootWrite: tryWrite('/probe-root'),
    tmpWrite: tryWrite('/tmp/probe'),
    net: fs.readdirSync('/sys/class/net').sort(),
    noNewPrivs: status('NoNewPrivs'),
    capEff: status('CapEff'),
    globalRead: tryRead('/workspace/global/CLAUDE.md'),
    globalWrite: tryWrite('/workspace/global/from-container.txt'),
    groupWrite: tryWrite('/workspace/group/from-container.txt'),
    workspaceWrite: tryWrite('/workspace/from-container.txt'),
  };
}
if (hang) setInterval(() => {}, 1 << 30);
rl.on('line', (line) => {
  if (hang) return;
  process.stdout.write(line === 'probe' ? JSON.stringify(probe()) + '\n' : 'echo:' + line + '\n');
});
rl.on('close', () => {
  if (hang) return;
  process.stderr.write('echo: eof\n');
  process.exitCode = Number(process.env.EXIT_CODE || 0);
});
`;

const DOCKERFILE = `ARG BASE_IMAGE
FROM \${BASE_IMAGE}
COPY echo.js /opt/echo.js
CMD ["node", "/opt/echo.js"]
`;

/** Reads a stream line by line, one `next()` at a time. */
function lineReader(stream: Readable): () => Promise<string> {
  const it = readline.createInterface({ input: stream })[Symbol.asyncIterator]();
  return async () => {
    const next = await it.next();
    if (next.done) throw new Error('stream ended before the expected line');
    return next.value;
  };
}

/** Collects a stream to its end. */
async function collect(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Settles `promise` and says how long that took; a rejection comes back as the value. */
async function timed(promise: Promise<unknown>): Promise<{ value: unknown; ms: number }> {
  const startedAt = performance.now();
  const value = await promise.catch((err: unknown) => err);
  return { value, ms: performance.now() - startedAt };
}

/** Retries `check` until it passes or `ms` have gone by (then its last failure is thrown). */
async function eventually(check: () => Promise<void>, ms = 10_000): Promise<void> {
  const until = performance.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (performance.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** A spec for tests that never reach a real engine. */
const NOWHERE_SPEC: ContainerSpec = {
  name: 'clawbar-test-nowhere',
  image: 'clawbar-agent:latest',
  mounts: [],
  env: {},
  labels: {},
  limits: DEFAULT_LIMITS,
  network: false,
};

describe('DockerRuntime without an engine', () => {
  it('check() says the engine is not reachable and how to start it', async () => {
    const runtime = new DockerRuntime({
      log: silentLogger(),
      socketPath: '/nonexistent/docker.sock',
    });
    const state = await runtime.check();
    expect(state.ok).toBe(false);
    if (state.ok) return;
    expect(state.reason).toBe(
      'Docker engine not reachable: connect ENOENT /nonexistent/docker.sock',
    );
    expect(state.fix).toMatch(/start Docker Desktop.*dockerd/);
  });

  it('start() against a socket that does not exist rejects with RuntimeUnavailableError saying how to start Docker', async () => {
    const runtime = new DockerRuntime({
      log: silentLogger(),
      socketPath: '/nonexistent/docker.sock',
    });
    const err = await runtime.start(NOWHERE_SPEC).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeUnavailableError);
    expect((err as RuntimeUnavailableError).message).toBe(
      'Docker engine not reachable: connect ENOENT /nonexistent/docker.sock',
    );
    expect((err as RuntimeUnavailableError).fix).toMatch(/start Docker Desktop.*start docker/);
    expect((err as Error).cause).toMatchObject({ code: 'ENOENT' });
  });

  it('start() with an already aborted signal rejects with its reason and sends nothing', async () => {
    const runtime = new DockerRuntime({
      log: silentLogger(),
      socketPath: '/nonexistent/docker.sock',
    });
    const reason = new Error('stopped before it began');
    const err = await runtime
      .start(NOWHERE_SPEC, { signal: AbortSignal.abort(reason) })
      .catch((e: unknown) => e);
    expect(err).toBe(reason);
  });
});

requireDocker('DockerRuntime with a real engine', () => {
  const docker = new Docker();
  // A scope of our own: removeOrphans must not touch containers from other test runs or a
  // real Clawbar sharing this engine.
  const scope = `test-${randomBytes(6).toString('hex')}`;
  const runtime = new DockerRuntime({ log: silentLogger(), docker, scope });
  const running: RunningContainer[] = [];
  let image = '';
  let home = '';

  beforeAll(async () => {
    image = await buildTestImage(docker, 'echo', {
      Dockerfile: DOCKERFILE,
      'echo.js': ECHO_SCRIPT,
    });
    home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-home-')));
  });

  afterAll(async () => {
    await Promise.allSettled(running.map((c) => c.kill()));
    await runtime.removeOrphans();
    if (image) await removeTestImage(docker, image);
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  function spec(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
    return {
      name: `clawbar-test-${randomBytes(5).toString('hex')}`,
      image,
      mounts: [],
      env: {},
      labels: {},
      limits: DEFAULT_LIMITS,
      network: false,
      ...overrides,
    };
  }

  async function start(overrides: Partial<ContainerSpec> = {}): Promise<RunningContainer> {
    const container = await runtime.start(spec(overrides));
    running.push(container);
    return container;
  }

  it('check() reports the engine version', async () => {
    const state = await runtime.check();
    expect(state).toMatchObject({ ok: true, version: expect.stringMatching(/^\d+\.\d+/) });
  });

  it('inspectImage() tells present images from missing ones', async () => {
    const present = await runtime.inspectImage(image);
    expect(present).toMatchObject({ image, present: true, id: expect.stringMatching(/^sha256:/) });
    expect(await runtime.inspectImage('clawbar-test-missing:never')).toEqual({
      image: 'clawbar-test-missing:never',
      present: false,
    });
  });

  it('round-trips lines over stdin and stdout and keeps stderr apart', async () => {
    const c = await start();
    const stderr = collect(c.stderr);
    const nextLine = lineReader(c.stdout);

    c.stdin.write('hello\n');
    expect(await nextLine()).toBe('echo:hello');
    c.stdin.write('second line\nthird ✓\n');
    expect(await nextLine()).toBe('echo:second line');
    expect(await nextLine()).toBe('echo:third ✓');

    c.stdin.end();
    expect(await c.wait()).toEqual({ exitCode: 0 });
    // stderr carried only the logs, and stdout none of them.
    expect(await stderr).toBe('echo: started\necho: eof\n');
  });

  it('ending stdin delivers EOF, and wait() reports the exit code', async () => {
    const c = await start({ env: { EXIT_CODE: '7' } });
    const stdout = collect(c.stdout);
    c.stdin.end();
    expect(await c.wait()).toEqual({ exitCode: 7 });
    expect(await stdout).toBe('');
  });

  it('keeps output written right at start (attached before the container starts)', async () => {
    const c = await start();
    const nextErr = lineReader(c.stderr);
    expect(await nextErr()).toBe('echo: started');
    c.stdin.end();
    await c.wait();
  });

  it('creates the container locked down: no network, no capabilities, read-only root, limits, labels', async () => {
    const limits = { memoryBytes: 256 * 1024 * 1024, nanoCpus: 500_000_000, pids: 64 };
    const c = await start({ limits, labels: { 'dev.clawbar.group': 'family' } });
    const info = await docker.getContainer(c.id).inspect();
    const host = info.HostConfig;
    expect(host.NetworkMode).toBe('none');
    expect(host.CapDrop).toEqual(['ALL']);
    expect(host.SecurityOpt).toContain('no-new-privileges');
    expect(host.ReadonlyRootfs).toBe(true);
    expect(host.Tmpfs).toEqual({ '/tmp': 'rw,nosuid,size=256m' });
    expect(host.Memory).toBe(limits.memoryBytes);
    expect(host.MemorySwap).toBe(limits.memoryBytes);
    expect(host.NanoCpus).toBe(limits.nanoCpus);
    expect(host.PidsLimit).toBe(limits.pids);
    expect(host.AutoRemove).toBe(true);
    expect(host.Init).toBe(true);
    expect(info.Config.Labels).toMatchObject({
      [OURS_LABEL]: '1',
      [SCOPE_LABEL]: scope,
      'dev.clawbar.group': 'family',
    });
    expect(info.Config.Tty).toBe(false);
    c.stdin.end();
    await c.wait();
  });

  it('confines the process: read-only root, writable /tmp, loopback only, no privileges, mounts as the policy says', async () => {
    const dirs = {
      groupDir: path.join(home, 'groups', 'family'),
      globalDir: path.join(home, 'groups', 'global'),
    };
    for (const dir of Object.values(dirs)) {
      fs.mkdirSync(dir, { recursive: true });
      // The container runs as nobody; let it write where the policy allows.
      fs.chmodSync(dir, 0o777);
    }
    fs.writeFileSync(path.join(dirs.globalDir, 'CLAUDE.md'), 'shared memory');
    const mounts = groupMounts({ home, ...dirs, isMain: false });

    const c = await start({ mounts, user: '65534:65534' });
    const nextLine = lineReader(c.stdout);
    c.stdin.write('probe\n');
    const seen = JSON.parse(await nextLine()) as Record<string, unknown>;
    c.stdin.end();
    await c.wait();

    expect(seen).toEqual({
      uid: 65534,
      rootWrite: 'EROFS',
      tmpWrite: 'ok',
      net: ['lo'],
      noNewPrivs: '1',
      capEff: '0000000000000000',
      globalRead: 'shared memory',
      globalWrite: 'EROFS',
      groupWrite: 'ok',
      // Nothing else under /workspace is writable: the two mounts are the container's only
      // way to the host's disk.
      workspaceWrite: 'EROFS',
    });
    expect(fs.readFileSync(path.join(dirs.groupDir, 'from-container.txt'), 'utf8')).toBe('x');
    expect(fs.existsSync(path.join(dirs.globalDir, 'from-container.txt'))).toBe(false);
  });

  it('gives the container a network only when the spec allows it', async () => {
    const c = await start({ network: true });
    const info = await docker.getContainer(c.id).inspect();
    expect(info.HostConfig.NetworkMode).not.toBe('none');
    const nextLine = lineReader(c.stdout);
    c.stdin.write('probe\n');
    const seen = JSON.parse(await nextLine()) as { net: string[] };
    expect(seen.net).toContain('lo');
    expect(seen.net.length).toBeGreaterThan(1);
    c.stdin.end();
    await c.wait();
  });

  it('kill() stops a hung container, ends its output, and is safe to call again', async () => {
    const c = await start({ env: { MODE: 'hang' } });
    const stdout = collect(c.stdout);
    const nextErr = lineReader(c.stderr);
    expect(await nextErr()).toBe('echo: started');
    c.stdin.write('ignored\n');

    await c.kill();
    expect(await c.wait()).toEqual({ exitCode: 137 });
    expect(await stdout).toBe('');
    await expect(c.kill()).resolves.toBeUndefined();
    // Writing to a dead container is dropped, not an error that could crash the host.
    const errors: unknown[] = [];
    c.stdin.on('error', (err) => errors.push(err));
    c.stdin.write('too late\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toEqual([]);
  });

  it('start() with a missing image throws ImageMissingError saying how to build it, and leaves nothing behind', async () => {
    const s = spec({ image: 'clawbar-test-missing:never' });
    const err = await runtime.start(s).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageMissingError);
    expect((err as ImageMissingError).message).toBe(
      'the agent image clawbar-test-missing:never is not built; run `clawbar image build`',
    );
    expect((err as ImageMissingError).cause).toBeDefined();
    const left = await docker.listContainers({ all: true, filters: { name: [s.name] } });
    expect(left).toEqual([]);
  });

  it('start() that fails after create removes the created container', async () => {
    // A bind source that is a file mounted onto a directory makes `start` (not create) fail.
    const file = path.join(home, 'not-a-dir');
    fs.writeFileSync(file, '');
    const s = spec({ mounts: [{ hostPath: file, containerPath: '/opt', readOnly: true }] });
    const err = await runtime.start(s).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContainerStartError);
    expect((err as Error).message).toMatch(new RegExp(`^could not start container ${s.name}`));
    const left = await docker.listContainers({ all: true, filters: { name: [s.name] } });
    expect(left).toEqual([]);
  });

  it('listOurs() lists a running container with its labels', async () => {
    const c = await start({ labels: { 'dev.clawbar.group': 'listed' } });
    const ours = await runtime.listOurs();
    expect(ours).toContainEqual(
      expect.objectContaining({
        id: c.id,
        name: c.name,
        state: 'running',
        labels: expect.objectContaining({ 'dev.clawbar.group': 'listed' }),
      }),
    );
    c.stdin.end();
    await c.wait();
    // Condition "removed": once wait() resolves the container is gone, name and all.
    expect((await runtime.listOurs()).map((o) => o.id)).not.toContain(c.id);
  });

  it('removeOrphans() removes our labelled leftovers and leaves other scopes alone', async () => {
    const create = (name: string, containerScope: string): Promise<Docker.Container> =>
      docker.createContainer({
        name,
        Image: image,
        Labels: { [OURS_LABEL]: '1', [SCOPE_LABEL]: containerScope },
      });
    const orphan = await create(`clawbar-test-orphan-${randomBytes(4).toString('hex')}`, scope);
    const foreign = await create(
      `clawbar-test-foreign-${randomBytes(4).toString('hex')}`,
      `${scope}-other`,
    );
    try {
      expect(await runtime.removeOrphans()).toBe(1);
      await expect(orphan.inspect()).rejects.toMatchObject({ statusCode: 404 });
      await expect(foreign.inspect()).resolves.toMatchObject({ Id: foreign.id });
    } finally {
      await foreign.remove({ force: true });
      await orphan.remove({ force: true }).catch(() => undefined);
    }
  });

  describe('when the engine goes away or wedges', () => {
    // A scope of their own: these tests lose containers on purpose (the engine "went away") and
    // count what removeOrphans() finds, so nothing else may share it.
    const faultScope = `test-${randomBytes(6).toString('hex')}`;
    const direct = new DockerRuntime({ log: silentLogger(), docker, scope: faultScope });
    const proxies: DockerProxy[] = [];
    /**
     * How a cut shows up: ENOENT on a new connection, or EPIPE/ECONNRESET when the client reuses
     * a keep-alive connection before it has read the proxy's close.
     */
    const CUT_REASON =
      /^Docker engine not reachable: (connect ENOENT \S+|write EPIPE|read ECONNRESET|socket hang up)$/;

    afterEach(async () => {
      await Promise.allSettled(proxies.splice(0).map((proxy) => proxy.close()));
    });

    afterAll(async () => {
      await direct.removeOrphans();
    });

    /** A runtime that reaches the engine only through a fault-injecting proxy. */
    async function proxied(
      deps: Partial<DockerRuntimeDeps> = {},
    ): Promise<{ proxy: DockerProxy; runtime: DockerRuntime }> {
      const proxy = await startDockerProxy();
      proxies.push(proxy);
      const runtime = new DockerRuntime({
        log: silentLogger(),
        socketPath: proxy.socketPath,
        scope: faultScope,
        ...deps,
      });
      return { proxy, runtime };
    }

    /** Starts a container that ignores its input and never exits, once it is surely running. */
    async function startHung(runtime: DockerRuntime): Promise<RunningContainer> {
      const c = await runtime.start(spec({ env: { MODE: 'hang' } }));
      expect(await lineReader(c.stderr)()).toBe('echo: started');
      return c;
    }

    /** The engine's lifecycle events for one container name since `since` (Unix seconds). */
    async function containerEvents(name: string, since: number): Promise<string[]> {
      const stream = await docker.getEvents({
        since,
        until: Date.now() / 1000,
        filters: { type: ['container'], container: [name] },
      });
      const body = await collect(stream as unknown as Readable);
      return body
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => (JSON.parse(line) as { Action: string }).Action);
    }

    it('start() through a wedged engine rejects with RuntimeUnavailableError at its deadline', async () => {
      const { proxy, runtime } = await proxied({ startTimeoutMs: 1500 });
      proxy.hang();
      const { value: err, ms } = await timed(runtime.start(spec()));
      expect(err).toBeInstanceOf(RuntimeUnavailableError);
      expect((err as RuntimeUnavailableError).message).toBe(
        'the Docker engine did not start the container within 1.5 s',
      );
      expect((err as RuntimeUnavailableError).fix).toMatch(/restart/);
      expect(ms).toBeGreaterThanOrEqual(1400);
      expect(ms).toBeLessThan(2500);
    });

    it('aborting start() through a wedged engine rejects at once with the reason, and removes the container the engine makes later', async () => {
      const { proxy, runtime } = await proxied();
      proxy.hang();
      const s = spec();
      const since = Math.floor(Date.now() / 1000);
      const controller = new AbortController();
      const reason = new Error('the run was stopped');
      const starting = timed(runtime.start(s, { signal: controller.signal }));
      setTimeout(() => controller.abort(reason), 300);
      const { value: err, ms } = await starting;
      expect(err).toBe(reason);
      expect(ms).toBeLessThan(1000);

      // The engine comes back and carries out the create it was holding. start() has given up,
      // so the container made now must be removed, not leaked.
      await proxy.restore();
      await eventually(async () => {
        expect(await containerEvents(s.name, since)).toEqual(
          expect.arrayContaining(['create', 'destroy']),
        );
      });
      expect(await direct.listOurs()).toEqual([]);
    });

    it.each(['create', 'attach', 'start'] as const)(
      'aborting start() right at its %s step rejects with the reason and leaves no container behind',
      async (step) => {
        // A real client, with the caller's abort timed to one step: after the create has been
        // carried out (its answer arrives late), after the attach is open, or as `start` goes out.
        const controller = new AbortController();
        const reason = new Error(`stopped at ${step}`);
        const client = new Docker();
        const create = client.createContainer.bind(client);
        client.createContainer = (async (options: Docker.ContainerCreateOptions) => {
          const container = await create(options);
          if (step === 'create') controller.abort(reason);
          const attach = container.attach.bind(container);
          container.attach = (async (attachOptions: Docker.ContainerAttachOptions) => {
            const stream = await attach(attachOptions);
            if (step === 'attach') controller.abort(reason);
            return stream;
          }) as typeof container.attach;
          const start = container.start.bind(container);
          container.start = (async (startOptions?: Docker.ContainerStartOptions) => {
            if (step === 'start') controller.abort(reason);
            return start(startOptions);
          }) as typeof container.start;
          return container;
        }) as typeof client.createContainer;
        const runtime = new DockerRuntime({
          log: silentLogger(),
          docker: client,
          scope: faultScope,
        });

        const s = spec();
        const since = Math.floor(Date.now() / 1000);
        const { value: err, ms } = await timed(runtime.start(s, { signal: controller.signal }));
        expect(err).toBe(reason);
        expect(ms).toBeLessThan(2000);
        await eventually(async () => {
          expect(await containerEvents(s.name, since)).toEqual(
            expect.arrayContaining(['create', 'destroy']),
          );
        });
        expect(await direct.listOurs()).toEqual([]);
      },
    );

    it('cutting the connection makes wait() reject and stdout end at once; once the engine is back, removeOrphans() removes the lost container and keeps the live one', async () => {
      const { proxy, runtime } = await proxied();
      const lost = await startHung(runtime);
      const stdout = timed(collect(lost.stdout));

      await proxy.cut();
      const waited = await timed(lost.wait());
      expect(waited.value).toBeInstanceOf(ContainerWaitError);
      expect((waited.value as Error).message).toMatch(
        new RegExp(`^lost track of container ${lost.name}: `),
      );
      expect(waited.ms).toBeLessThan(1000);
      const ended = await stdout;
      expect(ended.value).toBe('');

      // The engine never heard of the cut: the container still runs, out of our sight.
      await proxy.restore();
      const live = await startHung(runtime);
      expect((await runtime.listOurs()).map((c) => c.name).sort()).toEqual(
        [lost.name, live.name].sort(),
      );
      expect(await runtime.removeOrphans(new Set([live.name]))).toBe(1);
      expect(await runtime.listOurs()).toEqual([
        expect.objectContaining({ name: live.name, state: 'running' }),
      ]);
      await live.kill();
      expect(await live.wait()).toEqual({ exitCode: 137 });
    });

    it('kill() through a cut connection rejects with RuntimeUnavailableError at once', async () => {
      const { proxy, runtime } = await proxied();
      const c = await startHung(runtime);

      await proxy.cut();
      const { value: err, ms } = await timed(c.kill());
      expect(err).toBeInstanceOf(RuntimeUnavailableError);
      expect((err as Error).message).toMatch(CUT_REASON);
      expect((err as RuntimeUnavailableError).fix).toMatch(/start Docker/);
      expect(ms).toBeLessThan(1000);

      await proxy.restore();
      await c.kill();
      await eventually(async () => expect(await direct.listOurs()).toEqual([]));
    });

    it('kill() through a wedged engine gives up at its deadline with RuntimeUnavailableError', async () => {
      const { proxy, runtime } = await proxied({ killTimeoutMs: 1000 });
      const c = await startHung(runtime);

      proxy.hang();
      const { value: err, ms } = await timed(c.kill());
      expect(err).toBeInstanceOf(RuntimeUnavailableError);
      expect((err as Error).message).toBe(
        `the Docker engine did not kill container ${c.name} within 1 s`,
      );
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(2000);

      // Unwedged, the engine answers again, and the exit wait held meanwhile still reports.
      await proxy.restore();
      await c.kill();
      expect(await c.wait()).toEqual({ exitCode: 137 });
    });

    it('check() through a cut connection says the engine is not reachable', async () => {
      const { proxy, runtime } = await proxied();
      expect(await runtime.check()).toMatchObject({ ok: true });
      await proxy.cut();
      expect(await runtime.check()).toEqual({
        ok: false,
        reason: expect.stringMatching(CUT_REASON),
        fix: expect.stringMatching(/start Docker Desktop/),
      });
    });

    it('check() through a wedged engine says it is not reachable once its deadline passes', async () => {
      const { proxy, runtime } = await proxied({ checkTimeoutMs: 500 });
      proxy.hang();
      const { value: state, ms } = await timed(runtime.check());
      expect(state).toEqual({
        ok: false,
        reason: 'Docker engine not reachable: it did not answer within 500 ms',
        fix: expect.stringMatching(/restart/),
      });
      expect(ms).toBeLessThan(1500);
    });
  });
});

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import {
  agentImageFreshness,
  ensureAgentImage,
  formatImageProgress,
  runOfflineBaseScript,
  type EnsureAgentImageOptions,
  type EnsureImageProgress,
} from '../../main/core/sandbox/ensure-image.js';
import {
  ImageBuildError,
  RUNNER_HASH_LABEL,
  runnerContentHash,
} from '../../main/core/sandbox/image.js';
import { RuntimeUnavailableError } from '../../main/core/sandbox/runtime.js';
import { TEST_BASE_IMAGE, removeTestImage, requireDocker } from '../helpers/docker.js';

const rand = (): string => randomBytes(4).toString('hex');

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-ensure-'));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A tiny build context shaped like sandbox-images/agent: a Dockerfile and a fake runner. */
function writeContext(
  contextDir: string,
  runner = 'process.stdout.write("runner v1\\n");\n',
): void {
  fs.mkdirSync(path.join(contextDir, 'dist'), { recursive: true });
  fs.writeFileSync(
    path.join(contextDir, 'Dockerfile'),
    // The default never resolves: only the base the chain picks makes it build.
    'ARG BASE_IMAGE=registry.invalid/clawbar-test-never:none\nFROM ${BASE_IMAGE}\nCOPY dist/runner.mjs /opt/runner/runner.mjs\n',
  );
  fs.writeFileSync(path.join(contextDir, 'dist', 'runner.mjs'), runner);
}

/** Writes an executable shell script and returns its path. */
function writeScript(file: string, body: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `#!/usr/bin/env bash\nset -euo pipefail\n${body}\n`, { mode: 0o755 });
  return file;
}

/** Whether a process still runs (a zombie waiting to be reaped counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name in parentheses: "123 (sleep) S …".
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('formatImageProgress', () => {
  it('gives one line per event, and none for download ticks', () => {
    const lines = (
      [
        { kind: 'start', tag: 'a:1', reason: 'missing' },
        { kind: 'start', tag: 'a:1', reason: 'stale' },
        { kind: 'start', tag: 'a:1', reason: 'forced' },
        { kind: 'base-trying', image: 'node:22-bookworm-slim', via: 'local' },
        { kind: 'base-trying', image: 'node:22-bookworm-slim', via: 'registry' },
        { kind: 'base-trying', image: 'clawbar-base:offline', via: 'offline-script' },
        { kind: 'base-unavailable', image: 'b:1', via: 'local', reason: 'not present' },
        { kind: 'base-unavailable', image: 'b:1', via: 'registry', reason: 'no such host' },
        { kind: 'base-unavailable', image: 'c:1', via: 'offline-script', reason: 'no debootstrap' },
        { kind: 'base-chosen', image: 'b:1', via: 'local' },
        { kind: 'base-chosen', image: 'b:1', via: 'registry' },
        { kind: 'base-chosen', image: 'b:1', via: 'offline-script' },
        { kind: 'script', line: '[offline-base] I: Retrieving' },
        { kind: 'step', step: 2, total: 4, text: 'Step 2/4 : FROM x' },
        { kind: 'output', text: ' ---> abc' },
        { kind: 'layer', id: 'abc', status: 'Pull complete', progress: undefined },
        { kind: 'layer', id: 'abc', status: 'Downloading', progress: '[=>  ] 1MB/9MB' },
      ] satisfies EnsureImageProgress[]
    ).map(formatImageProgress);
    expect(lines).toEqual([
      'agent image a:1 is missing; building it',
      'agent image a:1 was built from another runner; rebuilding it',
      'rebuilding agent image a:1',
      'base node:22-bookworm-slim: looking for it in the engine',
      'base node:22-bookworm-slim: pulling it from the registry',
      'base clawbar-base:offline: building it with offline-base.sh (debootstrap; a few minutes)',
      'base b:1: not present',
      'base b:1: cannot be pulled: no such host',
      'base c:1: cannot be built here: no debootstrap',
      'building on b:1 (present)',
      'building on b:1 (pulled)',
      'building on b:1 (built here)',
      '  [offline-base] I: Retrieving',
      'Step 2/4 : FROM x',
      '     ---> abc',
      '    abc: Pull complete',
      undefined,
    ]);
  });
});

describe('runOfflineBaseScript', () => {
  it('streams the lines of both output streams as they come, and resolves on exit 0', async () => {
    const script = writeScript(
      path.join(dir, 'offline-base.sh'),
      'echo "[offline-base] making $1" >&2\necho "on stdout"\necho "[offline-base] done" >&2',
    );
    const lines: string[] = [];
    await runOfflineBaseScript({
      script,
      tag: 'clawbar-test:tag',
      searchPath: process.env.PATH ?? '',
      onLine: (line) => lines.push(line),
    });
    expect(lines.sort()).toEqual(
      ['[offline-base] making clawbar-test:tag', 'on stdout', '[offline-base] done'].sort(),
    );
  });

  it('rejects with the exit code and the last lines when the script fails', async () => {
    const script = writeScript(
      path.join(dir, 'offline-base.sh'),
      'for i in 1 2 3 4 5 6; do echo "line $i" >&2; done\nexit 3',
    );
    const err = await runOfflineBaseScript({
      script,
      tag: 'x:y',
      searchPath: process.env.PATH ?? '',
      onLine: () => undefined,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as Error).message).toBe(
      'offline-base.sh x:y failed (exit 3): line 2 | line 3 | line 4 | line 5 | line 6',
    );
  });

  it('turns control characters in its lines into spaces', async () => {
    const script = writeScript(path.join(dir, 'offline-base.sh'), "printf 'a\\033[2Jb\\tc\\n'");
    const lines: string[] = [];
    await runOfflineBaseScript({
      script,
      tag: 'x:y',
      searchPath: process.env.PATH ?? '',
      onLine: (line) => lines.push(line),
    });
    expect(lines).toEqual(['a [2Jb\tc']);
  });

  it('kills the script and the processes under it when the signal aborts', async () => {
    const pidFile = path.join(dir, 'pids');
    const script = writeScript(
      path.join(dir, 'offline-base.sh'),
      // A child of its own, as debootstrap would have: the abort must reach it too.
      `sleep 60 &\necho "$$ $!" > ${pidFile}\necho "working"\nwait`,
    );
    const abort = new AbortController();
    const reason = new Error('test abort');
    const err = await runOfflineBaseScript({
      script,
      tag: 'x:y',
      searchPath: process.env.PATH ?? '',
      onLine: (line) => {
        if (line === 'working') abort.abort(reason);
      },
      signal: abort.signal,
    }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    const pids = fs.readFileSync(pidFile, 'utf8').trim().split(' ').map(Number);
    expect(pids).toHaveLength(2);
    await waitFor(() => pids.every((pid) => !alive(pid)), 'the script and its child to exit');
  });

  it('does not start when the signal has already aborted', async () => {
    const marker = path.join(dir, 'ran');
    const script = writeScript(path.join(dir, 'offline-base.sh'), `touch ${marker}`);
    const abort = new AbortController();
    abort.abort(new Error('already'));
    await expect(
      runOfflineBaseScript({
        script,
        tag: 'x:y',
        searchPath: process.env.PATH ?? '',
        onLine: () => undefined,
        signal: abort.signal,
      }),
    ).rejects.toThrow('already');
    expect(fs.existsSync(marker)).toBe(false);
  });
});

describe('agentImageFreshness without an engine', () => {
  it('says the engine is unreachable, with the fix', async () => {
    writeContext(dir);
    const docker = new Docker({ socketPath: path.join(dir, 'no-such.sock') });
    const err = await agentImageFreshness(docker, 'x:y', dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeUnavailableError);
    expect((err as Error).message).toMatch(/^the Docker engine is not reachable: .*ENOENT/);
    expect((err as RuntimeUnavailableError).fix).toMatch(/dockerd/);
  });
});

requireDocker('ensureAgentImage with a real engine', () => {
  const docker = new Docker();
  const tags: string[] = [];
  const ids = new Set<string>();
  /** A unique tag this file removes when done. */
  const newTag = (what: string): string => {
    const tag = `clawbar-test-ensure-${what}-${rand()}:latest`;
    tags.push(tag);
    return tag;
  };
  /** A tag no engine has, for a base that must be missing. */
  const absent = (): string => `clawbar-test-ensure-absent-${rand()}:never`;
  /** A copy of the test base under a tag of this file's own: a base "present locally". */
  let localBase: string;
  /** A directory holding a fake `docker` only: a PATH where debootstrap cannot be found. */
  let noDebootstrapPath: string;

  beforeAll(async () => {
    localBase = newTag('base');
    const [repo, tag] = localBase.split(':') as [string, string];
    await docker.getImage(TEST_BASE_IMAGE).tag({ repo, tag });
    noDebootstrapPath = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-ensure-bin-'));
    writeScript(path.join(noDebootstrapPath, 'docker'), 'exit 0');
  });

  afterAll(async () => {
    for (const tag of tags) await removeTestImage(docker, tag);
    // Images a rebuild replaced are left untagged; they are this file's to remove.
    for (const id of ids) await removeTestImage(docker, id).catch(() => undefined);
    fs.rmSync(noDebootstrapPath, { recursive: true, force: true });
  });

  /** ensureAgentImage on this file's context, with the chain finding `localBase` first. */
  async function ensure(
    tag: string,
    extra: Partial<EnsureAgentImageOptions> = {},
  ): Promise<{
    result: Awaited<ReturnType<typeof ensureAgentImage>>;
    events: EnsureImageProgress[];
  }> {
    const events: EnsureImageProgress[] = [];
    const result = await ensureAgentImage({
      docker,
      tag,
      contextDir: dir,
      registryBase: localBase,
      offlineBase: absent(),
      searchPath: noDebootstrapPath,
      onProgress: (e) => events.push(e),
      ...extra,
    });
    ids.add(result.id);
    return { result, events };
  }

  it('calls an image missing, builds it on a present base with the label, then calls it current', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const hash = await runnerContentHash(dir);
    expect(await agentImageFreshness(docker, tag, dir)).toEqual({
      state: 'missing',
      tag,
      runnerHash: hash,
    });

    const { result, events } = await ensure(tag);

    expect(result).toMatchObject({
      action: 'built',
      tag,
      reason: 'missing',
      base: localBase,
      runnerHash: hash,
    });
    expect(events[0]).toEqual({ kind: 'start', tag, reason: 'missing' });
    expect(events).toContainEqual({ kind: 'base-chosen', image: localBase, via: 'local' });
    expect(events.some((e) => e.kind === 'step')).toBe(true);
    const info = await docker.getImage(tag).inspect();
    expect(info.Config.Labels?.[RUNNER_HASH_LABEL]).toBe(hash);
    expect(await agentImageFreshness(docker, tag, dir)).toEqual({
      state: 'current',
      tag,
      id: info.Id,
      runnerHash: hash,
    });
  });

  it('does nothing for a current image: no build, no progress', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const first = await ensure(tag);
    const second = await ensure(tag);
    expect(second.result).toEqual({
      action: 'none',
      tag,
      id: first.result.id,
      runnerHash: first.result.runnerHash,
    });
    expect(second.events).toEqual([]);
  });

  it('rebuilds an image whose runner changed, and labels it with the new hash', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const first = await ensure(tag);
    writeContext(dir, 'process.stdout.write("runner v2\\n");\n');
    const newHash = await runnerContentHash(dir);

    expect(await agentImageFreshness(docker, tag, dir)).toEqual({
      state: 'stale',
      tag,
      id: first.result.id,
      runnerHash: newHash,
      imageRunnerHash: first.result.runnerHash,
    });
    const { result, events } = await ensure(tag);

    expect(result).toMatchObject({ action: 'built', reason: 'stale', runnerHash: newHash });
    expect(result.id).not.toBe(first.result.id);
    expect(events[0]).toEqual({ kind: 'start', tag, reason: 'stale' });
    const info = await docker.getImage(tag).inspect();
    expect(info.Config.Labels?.[RUNNER_HASH_LABEL]).toBe(newHash);
  });

  it('calls an image without the label stale', async () => {
    writeContext(dir);
    const tag = newTag('unlabelled');
    const [repo, version] = tag.split(':') as [string, string];
    await docker.getImage(TEST_BASE_IMAGE).tag({ repo, tag: version });
    const freshness = await agentImageFreshness(docker, tag, dir);
    expect(freshness).toMatchObject({ state: 'stale', imageRunnerHash: undefined });
  });

  it('rebuilds a current image when forced', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    await ensure(tag);
    const { result } = await ensure(tag, { force: true });
    expect(result).toMatchObject({ action: 'built', reason: 'forced' });
  });

  it('falls back to the local offline base when the registry base is absent and cannot be pulled', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const registryBase = absent();
    const { result, events } = await ensure(tag, { registryBase, offlineBase: localBase });

    expect(result).toMatchObject({ action: 'built', base: localBase });
    const chain = events.filter((e) => e.kind.startsWith('base-'));
    expect(chain).toEqual([
      { kind: 'base-trying', image: registryBase, via: 'local' },
      {
        kind: 'base-unavailable',
        image: registryBase,
        via: 'local',
        reason: 'not present in the engine',
      },
      { kind: 'base-trying', image: registryBase, via: 'registry' },
      {
        kind: 'base-unavailable',
        image: registryBase,
        via: 'registry',
        reason: expect.stringMatching(/\S/) as unknown as string,
      },
      { kind: 'base-trying', image: localBase, via: 'local' },
      { kind: 'base-chosen', image: localBase, via: 'local' },
    ]);
    // Said in one line, without dockerode's "(HTTP code …)" wrapper.
    const pullFailure = chain[3] as { reason: string };
    expect(pullFailure.reason).not.toMatch(/\n|HTTP code/);
  });

  it('gives up on a registry that does not answer within the pull timeout', async () => {
    // A "registry" that accepts connections and never answers, like a blackholed network.
    const sockets = new Set<net.Socket>();
    const registry = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    try {
      writeContext(dir);
      const { port } = registry.address() as net.AddressInfo;
      const registryBase = `127.0.0.1:${port}/clawbar-test/hang:${rand()}`;
      const { result, events } = await ensure(newTag('agent'), {
        registryBase,
        offlineBase: localBase,
        pullTimeoutMs: 500,
      });
      expect(events).toContainEqual({
        kind: 'base-unavailable',
        image: registryBase,
        via: 'registry',
        reason: 'no answer from the registry within 0.5 s',
      });
      expect(result).toMatchObject({ action: 'built', base: localBase });
      // The engine really tried it: the pull went to this server.
      expect(sockets.size).toBeGreaterThan(0);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => registry.close(resolve));
    }
  });

  it('builds the offline base with the script when debootstrap is there, streaming its lines', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const offlineBase = newTag('offline');
    const bin = path.join(dir, 'bin');
    writeScript(path.join(bin, 'debootstrap'), 'exit 0');
    const [repo, version] = offlineBase.split(':') as [string, string];
    // Stands in for offline-base.sh: the real one runs debootstrap for minutes.
    const script = writeScript(
      path.join(dir, 'fake-offline-base.sh'),
      `echo "[offline-base] making $1" >&2\ndocker tag ${TEST_BASE_IMAGE} ${repo}:${version}\necho "[offline-base] done: $1" >&2`,
    );

    const { result, events } = await ensure(tag, {
      registryBase: absent(),
      offlineBase,
      offlineBaseScript: script,
      searchPath: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
      isRoot: true,
    });

    expect(result).toMatchObject({ action: 'built', base: offlineBase });
    expect(events.filter((e) => e.kind === 'script')).toEqual([
      { kind: 'script', line: `[offline-base] making ${offlineBase}` },
      { kind: 'script', line: `[offline-base] done: ${offlineBase}` },
    ]);
    expect(events).toContainEqual({
      kind: 'base-chosen',
      image: offlineBase,
      via: 'offline-script',
    });
    // The script's lines come before the build's first step.
    const lastScript = events.findLastIndex((e) => e.kind === 'script');
    const firstStep = events.findIndex((e) => e.kind === 'step');
    expect(lastScript).toBeLessThan(firstStep);
  });

  it("says what it tried, with the script's last lines, when the script fails", async () => {
    writeContext(dir);
    const bin = path.join(dir, 'bin');
    writeScript(path.join(bin, 'debootstrap'), 'exit 0');
    const script = writeScript(
      path.join(dir, 'fake-offline-base.sh'),
      'echo "E: Failed getting release file http://deb.debian.org/debian/dists/bookworm/Release" >&2\nexit 1',
    );
    const offlineBase = absent();
    const err = await ensure(newTag('agent'), {
      registryBase: absent(),
      offlineBase,
      offlineBaseScript: script,
      searchPath: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
      isRoot: true,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `; ${offlineBase} is not present; and building it failed: fake-offline-base\\.sh ${offlineBase} failed \\(exit 1\\): E: Failed getting release file .*\\. Fix: `,
      ),
    );
  });

  it('says what it tried and how to fix it when there is no base and no debootstrap', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const registryBase = absent();
    const offlineBase = absent();
    const err = await ensure(tag, { registryBase, offlineBase }).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(ImageBuildError);
    const message = (err as Error).message;
    expect(message).toMatch(
      new RegExp(
        `^no base image to build on: ${registryBase} is not present and could not be pulled \\(.+\\); ${offlineBase} is not present; and it cannot be built with offline-base\\.sh: debootstrap is not installed\\. Fix: `,
      ),
    );
    expect((err as ImageBuildError).fix).toContain(`docker pull ${registryBase}`);
    expect((err as ImageBuildError).fix).toContain('apt-get install -y debootstrap');
    expect((err as ImageBuildError).fix).toContain('clawbar image build');
    expect(message).not.toContain('\n');
    await expect(docker.getImage(tag).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('names every blocker: a missing script, no debootstrap, not root', async () => {
    writeContext(dir);
    const script = path.join(dir, 'nowhere', 'offline-base.sh');
    const err = await ensure(newTag('agent'), {
      registryBase: absent(),
      offlineBaseScript: script,
      isRoot: false,
    }).catch((e: unknown) => e);
    expect((err as Error).message).toContain(
      `${script} is missing, debootstrap is not installed, debootstrap needs root and this process is not root`,
    );
  });

  it('runs one build at a time per tag: a second caller shares the first one', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const [first, second] = await Promise.all([ensure(tag), ensure(tag)]);
    expect(first.result.action).toBe('built');
    expect(second.result).toBe(first.result);
    expect(second.events).toEqual([]);
  });

  it('lets a waiting caller build when the first caller aborts', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const abort = new AbortController();
    const reason = new Error('first caller gave up');
    const first = ensure(tag, {
      signal: abort.signal,
      onProgress: (e) => {
        if (e.kind === 'start') abort.abort(reason);
      },
    });
    const second = ensure(tag);
    await expect(first).rejects.toBe(reason);
    const { result } = await second;
    expect(result).toMatchObject({ action: 'built', reason: 'missing' });
  });

  it('stops at once when the signal is already aborted, building nothing', async () => {
    writeContext(dir);
    const tag = newTag('agent');
    const abort = new AbortController();
    abort.abort(new Error('not now'));
    await expect(ensure(tag, { signal: abort.signal })).rejects.toThrow('not now');
    await expect(docker.getImage(tag).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('raises a throwing progress handler as an error instead of crashing', async () => {
    writeContext(dir);
    const boom = new Error('boom');
    const err = await ensure(newTag('agent'), {
      onProgress: () => {
        throw boom;
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as Error).cause).toBe(boom);
  });
});

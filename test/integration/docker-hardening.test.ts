/**
 * Agent containers as the host creates them, checked inside a real container (issue 6):
 * - no engine-side log (LogConfig none): stdout carried the whole conversation into
 *   /var/lib/docker, and stderr grew without limit;
 * - bind mounts: Docker cannot mount a read-write bind `nosuid,nodev` (see docker.ts), so what
 *   those flags guard against is shown closed another way: a setuid-root program in the group
 *   folder does not raise the agent's privileges, and the agent cannot make a device node.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';

import Docker from 'dockerode';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { silentLogger } from '../../main/core/logger.js';
import { dockerErrorFacts, DockerRuntime } from '../../main/core/sandbox/docker.js';
import { IMAGE_UID, prepareGroupFolders } from '../../main/core/sandbox/folders.js';
import { groupMounts } from '../../main/core/sandbox/mounts.js';
import { DEFAULT_LIMITS, type RunningContainer } from '../../main/core/sandbox/runtime.js';
import {
  buildTestImage,
  removeTestImage,
  requireDocker,
  TEST_BASE_IMAGE,
} from '../helpers/docker.js';

/**
 * What the probe container reports, one `key=value` line each, then waits for stdin to end so
 * the test can inspect it while it runs.
 */
const PROBE_SCRIPT = String.raw`
grep -E ' /workspace/| /tmp ' /proc/mounts | sed 's/^/mount=/'
echo "uid=$(id -u)"
echo "suid=$(/workspace/group/suid-id -u 2>&1)"
echo "nnp=$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/self/status)"
echo "capeff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)"
if mknod /workspace/group/null c 1 3 2>/dev/null; then echo mknod=made; else echo mknod=refused; fi
echo ready
cat >/dev/null
`;

const DOCKERFILE = `ARG BASE_IMAGE
FROM \${BASE_IMAGE}
COPY probe.sh /opt/probe.sh
CMD ["sh", "/opt/probe.sh"]
`;

/** Reads a stream to its end, and can wait for a marker on the way; the one reader of it. */
function watchOutput(stream: Readable): {
  until(marker: string): Promise<void>;
  all: Promise<string>;
} {
  let seen = '';
  const waiters: Array<{ marker: string; resolve: () => void }> = [];
  const all = new Promise<string>((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      for (const w of waiters.filter((x) => seen.includes(x.marker))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    });
    stream.once('end', () => resolve(seen));
    stream.once('error', reject);
  });
  return {
    all,
    until: (marker) =>
      seen.includes(marker)
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => waiters.push({ marker, resolve })),
            all.then((out) => {
              throw new Error(`output ended before "${marker}": ${out}`);
            }),
          ]),
  };
}

requireDocker('agent container hardening on a real engine', () => {
  const docker = new Docker();
  const testId = randomBytes(6).toString('hex');
  /** Every container this file makes by hand carries it, so clean-up finds exactly those. */
  const TEST_LABEL = 'dev.clawbar.test-hardening';
  const runtime = new DockerRuntime({ log: silentLogger(), docker, scope: `test-${testId}` });
  const running: RunningContainer[] = [];
  let image = '';
  let home = '';

  beforeAll(async () => {
    image = await buildTestImage(docker, `hardening-${testId}`, {
      Dockerfile: DOCKERFILE,
      'probe.sh': PROBE_SCRIPT,
    });
    home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-hardening-')));
  });

  afterAll(async () => {
    await Promise.allSettled(running.map((c) => c.kill()));
    await runtime.removeOrphans();
    const mine = await docker.listContainers({
      all: true,
      filters: { label: [`${TEST_LABEL}=${testId}`] },
    });
    await Promise.allSettled(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
    if (image) await removeTestImage(docker, image);
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  /** Runs `cmd` in a plain container (engine defaults: root, default capabilities). */
  async function runPlain(cmd: string[], binds: string[], user?: string): Promise<string> {
    const container = await docker.createContainer({
      Image: TEST_BASE_IMAGE,
      Cmd: cmd,
      Labels: { [TEST_LABEL]: testId },
      ...(user ? { User: user } : {}),
      HostConfig: { Binds: binds, NetworkMode: 'none' },
    });
    try {
      await container.start();
      await container.wait();
      const logs = await container.logs({ stdout: true, stderr: true });
      // Without a TTY the log is framed: 8-byte headers before each chunk.
      const out: Buffer[] = [];
      for (let i = 0; i + 8 <= logs.length;) {
        const size = logs.readUInt32BE(i + 4);
        out.push(logs.subarray(i + 8, i + 8 + size));
        i += 8 + size;
      }
      return Buffer.concat(out).toString('utf8').trim();
    } finally {
      await container.remove({ force: true });
    }
  }

  it('keeps no engine-side log, and a setuid-root file or device node in the group folder gains the agent nothing', async () => {
    const dirs = await prepareGroupFolders(
      {
        groupsDir: path.join(home, 'groups'),
        globalDir: path.join(home, 'groups', 'global'),
        folder: 'family',
        isMain: false,
      },
      0,
    );
    // The fixture: a setuid-root program in the group folder, made by root (here, a plain
    // container with the engine's default capabilities) after the folder was handed over.
    await runPlain(
      ['sh', '-c', 'cp /usr/bin/id /x/suid-id && chmod 4755 /x/suid-id'],
      [`${dirs.group}:/x`],
    );
    const fixture = fs.statSync(path.join(dirs.group, 'suid-id'));
    expect(fixture.uid).toBe(0);
    expect(fixture.mode & 0o4000).toBe(0o4000);
    // Without the hardening it works: the fixture really raises an unprivileged user to root.
    expect(
      await runPlain(['/x/suid-id', '-u'], [`${dirs.group}:/x`], `${IMAGE_UID}:${IMAGE_UID}`),
    ).toBe('0');

    const mounts = groupMounts({
      home,
      groupDir: dirs.group,
      globalDir: path.join(home, 'groups', 'global'),
      isMain: false,
    });
    const c = await runtime.start({
      name: `clawbar-test-hardening-${testId}`,
      image,
      mounts,
      env: {},
      labels: {},
      limits: DEFAULT_LIMITS,
      network: false,
      user: `${IMAGE_UID}:${IMAGE_UID}`,
    });
    running.push(c);
    const stdout = watchOutput(c.stdout);
    await stdout.until('ready');

    const info = await docker.getContainer(c.id).inspect();
    expect(info.HostConfig.LogConfig).toEqual({ Type: 'none', Config: {} });
    expect(info.HostConfig.SecurityOpt).toContain('no-new-privileges');
    expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    // The engine keeps nothing of the conversation: there is no log to read back.
    const logs = await docker
      .getContainer(c.id)
      .logs({ stdout: true, stderr: true })
      .then(
        () => 'the engine kept a log',
        (err: unknown) => dockerErrorFacts(err).message,
      );
    expect(logs).toMatch(/does not support reading/);

    c.stdin.end();
    expect(await c.wait()).toEqual({ exitCode: 0 });
    const report = (await stdout.all).split('\n').filter((l) => l.length > 0);
    const value = (key: string): string | undefined =>
      report.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);

    expect(value('uid')).toBe(String(IMAGE_UID));
    expect(value('suid')).toBe(String(IMAGE_UID));
    expect(value('nnp')).toBe('1');
    expect(value('capeff')).toBe('0000000000000000');
    expect(value('mknod')).toBe('refused');
    expect(fs.existsSync(path.join(dirs.group, 'null'))).toBe(false);
    const mountLines = report.filter((l) => l.startsWith('mount='));
    const tmp = mountLines.find((l) => l.includes(' /tmp '));
    expect(tmp).toMatch(/\bnosuid\b/);
    expect(tmp).toMatch(/\bnodev\b/);
    // Exactly the two standard directories are mounted, global memory read-only for this
    // group; no session folder (the transcript lives in the host's store).
    expect(mountLines.find((l) => l.includes(' /workspace/global '))).toMatch(/ ro,/);
    expect(mountLines.find((l) => l.includes(' /workspace/group '))).toMatch(/ rw,/);
    expect(mountLines.filter((l) => l.includes(' /workspace/'))).toHaveLength(2);
  });
});

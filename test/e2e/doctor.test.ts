/**
 * `clawbar doctor` as a user runs it, without serve: a good setup passes every check, and each
 * kind of failure is reported with its fix and exit code 1. Uses the real Docker engine.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clawbarIn, okIn, useOfflineHome } from '../helpers/offline-cli.js';

const homeOf = useOfflineHome('clawbar-doc-');

/** An image of our own, with no Clawbar label: doctor takes a user-named image as it is. */
const OWN_IMAGE = `clawbar-doctor-ok:${process.pid}`;
const KEY = 'sk-ant-doctor-test-0123456789-never-printed';

beforeAll(() => {
  // An empty image from an empty tar: no registry needed.
  execFileSync('sh', ['-c', `tar cf - --files-from /dev/null | docker import - ${OWN_IMAGE}`], {
    stdio: 'ignore',
  });
});
afterAll(() => {
  execFileSync('docker', ['rmi', OWN_IMAGE], { stdio: 'ignore' });
});

interface Report {
  ok: boolean;
  checks: Array<{ name: string; status: string; detail: string; fix?: string }>;
}

const good = { ANTHROPIC_API_KEY: KEY, CLAWBAR_IMAGE: OWN_IMAGE, TZ: 'Europe/Paris' };

describe('clawbar doctor', () => {
  it('passes every check on a good setup, and never prints the key', async () => {
    await okIn(homeOf(), ['groups', 'add', '--name', 'Family'], { env: good });
    const run = await clawbarIn(homeOf(), ['doctor'], { env: good });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines.map((l) => l.slice(0, 16).trim())).toEqual([
      'ok    data dir',
      'ok    database',
      'ok    time zone',
      'ok    clock',
      'ok    config',
      'ok    api key',
      'ok    runtime',
      'ok    image',
    ]);
    expect(run.stdout).toContain('schema current');
    expect(run.stdout).toContain('Europe/Paris');
    expect(run.stdout).toMatch(/runtime\s+docker \d+\.\d+/);
    expect(run.stdout).toContain('set (from ANTHROPIC_API_KEY)');
    expect(run.stdout).not.toContain(KEY.slice(8));
  });

  it('gives one JSON document with --json', async () => {
    const run = await clawbarIn(homeOf(), ['doctor', '--json'], { env: good });
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => `${c.name}:${c.status}`)).toEqual([
      'data dir:ok',
      'database:ok',
      'time zone:ok',
      'clock:ok',
      'config:ok',
      'api key:ok',
      'runtime:ok',
      'image:ok',
    ]);
    expect(run.stdout).not.toContain(KEY.slice(8));
    // It only looks: the fresh home holds no database, log or socket afterwards.
    expect(fs.readdirSync(homeOf())).toEqual([]);
  });

  it('reports a bad time zone, a missing key and a missing image, each with its fix, and exits 1', async () => {
    const run = await clawbarIn(homeOf(), ['doctor', '--json'], {
      env: { TZ: 'Mars/Olympus_Mons', CLAWBAR_IMAGE: 'clawbar-missing:none' },
    });
    expect(run.code).toBe(1);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.ok).toBe(false);
    const by = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(by['time zone']).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('"Mars/Olympus_Mons" (from TZ) is not a known time zone'),
      fix: expect.stringContaining('IANA zone'),
    });
    expect(by['api key']).toMatchObject({
      status: 'fail',
      fix: expect.stringContaining('ANTHROPIC_API_KEY'),
    });
    expect(by['runtime']?.status).toBe('ok');
    expect(by['image']).toMatchObject({
      status: 'fail',
      detail: 'clawbar-missing:none is not built',
      fix: expect.stringContaining('clawbar image build'),
    });
  });

  it('reports an unreachable engine with the fix, and skips the image', async () => {
    const run = await clawbarIn(homeOf(), ['doctor'], {
      env: { ...good, DOCKER_HOST: 'unix:///nonexistent' },
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAIL {2}runtime {4}docker: Docker engine not reachable/m);
    expect(run.stdout).toMatch(/fix: start Docker Desktop/);
    expect(run.stdout).toMatch(/^skip {2}image/m);
  });

  it('reports a data directory open to other users', async () => {
    fs.chmodSync(homeOf(), 0o755);
    const run = await clawbarIn(homeOf(), ['doctor'], { env: good });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAIL {2}data dir .*mode 755/m);
    expect(run.stdout).toContain(`fix: run chmod 700 ${homeOf()}`);
  });
});

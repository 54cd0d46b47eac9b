import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultRuntime, probeRuntimes } from '../../main/core/sandbox/runtime-choice.js';

describe('the default runtime', () => {
  it.each([
    ['darwin', false, true, 'apple'],
    ['darwin', true, true, 'docker'],
    ['darwin', true, false, 'docker'],
    ['darwin', false, false, 'docker'],
    ['linux', false, true, 'docker'],
    ['linux', true, false, 'docker'],
    ['win32', false, true, 'docker'],
  ] as const)('on %s with docker=%s and container=%s is %s', (platform, docker, apple, want) => {
    expect(defaultRuntime(platform, { dockerInstalled: docker, appleInstalled: apple })).toBe(want);
  });
});

describe('probing what is installed', () => {
  let dir = '';
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('finds executables named docker and container on PATH, and ignores plain files', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-probe-'));
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'container'), '#!/bin/sh\n', { mode: 0o755 });
    fs.writeFileSync(path.join(bin, 'docker'), 'not executable', { mode: 0o644 });
    const env = { PATH: bin, DOCKER_HOST: `unix://${path.join(dir, 'none.sock')}`, HOME: dir };
    const probes = probeRuntimes(env);
    expect(probes.appleInstalled).toBe(true);
    // /var/run/docker.sock may exist on this machine (CI runs dockerd), so only check the PATH half.
    if (!fs.existsSync('/var/run/docker.sock')) expect(probes.dockerInstalled).toBe(false);
    fs.chmodSync(path.join(bin, 'docker'), 0o755);
    expect(probeRuntimes(env).dockerInstalled).toBe(true);
  });

  it('counts a Docker socket named by DOCKER_HOST as Docker', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-probe-'));
    const sock = path.join(dir, 'docker.sock');
    fs.writeFileSync(sock, '');
    expect(probeRuntimes({ PATH: '', DOCKER_HOST: `unix://${sock}` }).dockerInstalled).toBe(true);
    expect(probeRuntimes({ PATH: '', DOCKER_HOST: 'tcp://10.0.0.2:2376' }).dockerInstalled).toBe(
      true,
    );
  });
});

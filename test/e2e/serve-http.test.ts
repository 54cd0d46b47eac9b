/**
 * `clawbar serve --http 127.0.0.1:0` as a user starts it: the printed URL carries the real port
 * and the token (the same as in `$CLAWBAR_HOME/dashboard-token`), the page and the API answer
 * with it, and the CLI sees what the dashboard did. No container engine: work is held, the
 * dashboard still works.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, CLI, requireBuild, ROOT, tempHome } from '../helpers/clawbar.js';

describe('clawbar serve --http', () => {
  const home = tempHome('clawbar-http-');
  // No engine here: serve holds work and says why, and must not try to build an image.
  const env = {
    CLAWBAR_HOME: home,
    DOCKER_HOST: `unix://${path.join(home, 'no-docker.sock')}`,
    CLAWBAR_RUNTIME: 'docker',
  };
  let child: ChildProcess;
  let output = '';
  let dashboard: URL;

  beforeAll(async () => {
    requireBuild();
    expect((await cli(['groups', 'add', '--name', 'Family'], env)).code).toBe(0);
    child = spawn(process.execPath, [CLI, 'serve', '--http', '127.0.0.1:0'], {
      env: { ...process.env, CLAWBAR_LOG_FORMAT: 'json', ...env },
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const deadline = Date.now() + 30_000;
    let line: string | undefined;
    while (!(line = /^dashboard: (\S+)$/m.exec(output)?.[1])) {
      if (child.exitCode !== null) throw new Error(`serve exited early:\n${output}`);
      if (Date.now() > deadline) throw new Error(`serve printed no dashboard URL:\n${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    dashboard = new URL(line);
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('prints the real port and the token kept in dashboard-token', () => {
    expect(dashboard.hostname).toBe('127.0.0.1');
    expect(Number(dashboard.port)).toBeGreaterThan(0);
    const token = fs.readFileSync(path.join(home, 'dashboard-token'), 'utf8').trim();
    expect(dashboard.hash).toBe(`#token=${token}`);
    expect(fs.statSync(path.join(home, 'dashboard-token')).mode & 0o777).toBe(0o600);
  });

  it('serves the page, refuses the API without the token, and pauses a group the CLI then sees paused', async () => {
    const origin = dashboard.origin;
    const token = new URLSearchParams(dashboard.hash.slice(1)).get('token')!;
    const page = await fetch(`${origin}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");

    const refused = await fetch(`${origin}/api/groups:pause`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ group: 'Family' }),
    });
    expect(refused.status).toBe(401);

    const paused = await fetch(`${origin}/api/groups:pause`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ group: 'Family' }),
    });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ result: { name: 'Family', paused: true } });

    const listed = await cli(['groups', 'list', '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({ name: 'Family', paused: true }),
    ]);
  });
});

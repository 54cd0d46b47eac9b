import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PAGE_CSP } from '../../main/core/control/page-policy.js';
import {
  loadDashboardToken,
  parseHttpAddress,
  startHttpBridge,
  type HttpBridge,
} from '../../main/core/control/http-server.js';
import { createUiApi } from '../../main/core/control/ui-api.js';
import { silentLogger } from '../../main/core/logger.js';
import { startUnitCore, type UnitCore } from '../helpers/unit-core.js';

let unit: UnitCore;
let bridge: HttpBridge;
let token: string;
let base: string;

beforeEach(async () => {
  unit = await startUnitCore();
  unit.core.addGroup({ name: 'Family' });
  const rendererDir = path.join(unit.home, 'renderer');
  fs.mkdirSync(rendererDir);
  fs.writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>Clawbar</title>');
  fs.writeFileSync(path.join(unit.home, 'secret.js'), 'secret');
  token = loadDashboardToken(unit.home);
  bridge = await startHttpBridge({
    address: parseHttpAddress('127.0.0.1:0'),
    token,
    api: createUiApi({ core: unit.core, serving: true, log: silentLogger() }),
    events: unit.core.events,
    rendererDir,
    log: silentLogger(),
  });
  base = bridge.url.replace(/\/$/, '');
});

afterEach(async () => {
  await bridge.close();
  await unit.close();
});

const auth = (): Record<string, string> => ({ Authorization: `Bearer ${token}` });

function call(channel: string, body?: unknown, headers: Record<string, string> = auth()) {
  return fetch(`${base}/api/${channel}`, {
    method: 'POST',
    headers: body === undefined ? headers : { ...headers, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** A raw request, for headers fetch will not let a caller set (Host). */
function raw(
  pathname: string,
  headers: Record<string, string>,
  method = 'GET',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: bridge.port, path: pathname, method, headers },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('the dashboard token', () => {
  it('is made once with mode 0600 and reused across starts', () => {
    const file = path.join(unit.home, 'dashboard-token');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(loadDashboardToken(unit.home)).toBe(token);
  });

  it('replaces a malformed token file and tightens a loose one', () => {
    const file = path.join(unit.home, 'dashboard-token');
    fs.chmodSync(file, 0o644);
    expect(loadDashboardToken(unit.home)).toBe(token);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    fs.writeFileSync(file, 'short');
    const fresh = loadDashboardToken(unit.home);
    expect(fresh).not.toBe(token);
    expect(fresh).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});

describe('parseHttpAddress', () => {
  it('takes HOST:PORT and [IPv6]:PORT, and says how to fix anything else', () => {
    expect(parseHttpAddress('127.0.0.1:8765')).toEqual({
      host: '127.0.0.1',
      port: 8765,
      loopback: true,
    });
    expect(parseHttpAddress('[::1]:0')).toEqual({ host: '::1', port: 0, loopback: true });
    expect(parseHttpAddress('0.0.0.0:80').loopback).toBe(false);
    for (const bad of ['8080', 'host:', ':80', 'a:b:c', 'localhost:70000', '[zz]:80'])
      expect(() => parseHttpAddress(bad), bad).toThrow(/^--http/);
  });
});

describe('the HTTP bridge', () => {
  it('refuses /api without the token, or with a wrong one, and the core is untouched', async () => {
    const none = await call('groups:pause', { group: 'Family' }, {});
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({
      error: { message: expect.stringMatching(/missing token/) },
    });
    const wrong = await call('groups:pause', { group: 'Family' }, { Authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${base}/api/events`)).status).toBe(401);
    expect(unit.core.groups.list()[0]?.paused).toBe(false);
  });

  it('refuses a Host that does not name it (DNS rebinding) and a cross-origin caller', async () => {
    const rebound = await raw(
      '/api/status:get',
      { ...auth(), Host: `evil.example:${bridge.port}` },
      'POST',
    );
    expect(rebound.status).toBe(421);
    const page = await raw('/', { Host: `evil.example:${bridge.port}` });
    expect(page.status).toBe(421);
    const crossOrigin = await call(
      'groups:pause',
      { group: 'Family' },
      {
        ...auth(),
        Origin: 'http://evil.example',
      },
    );
    expect(crossOrigin.status).toBe(403);
    expect(unit.core.groups.list()[0]?.paused).toBe(false);
    // The page's own origin, and localhost for a loopback bind, are fine.
    const sameOrigin = await call('status:get', undefined, { ...auth(), Origin: base });
    expect(sameOrigin.status).toBe(200);
    const local = await raw('/', { Host: `localhost:${bridge.port}` });
    expect(local.status).toBe(200);
  });

  it('serves the page with a strict CSP, and nothing outside the renderer folder', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toBe(PAGE_CSP);
    expect(PAGE_CSP).toContain("default-src 'none'");
    expect(await page.text()).toContain('<title>Clawbar</title>');
    for (const escape of ['/../secret.js', '/%2e%2e/secret.js', '/..%2fsecret.js', '/.env'])
      expect((await raw(escape, { Host: `127.0.0.1:${bridge.port}` })).status, escape).toBe(404);
  });

  it('answers a query and a command through the contract; the store agrees', async () => {
    const list = await call('groups:list');
    expect(list.status).toBe(200);
    const { result } = (await list.json()) as { result: Array<{ name: string }> };
    expect(result.map((g) => g.name)).toEqual(['Family']);

    const paused = await call('groups:pause', { group: 'Family' });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ result: { name: 'Family', paused: true } });
    expect(unit.store.getGroup(unit.core.groups.list()[0]!.jid)?.paused).toBe(true);
  });

  it('validates with the contract: 400 with the message, 404 for a channel or group unknown', async () => {
    const bad = await call('groups:pause', { group: 42 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({
      error: { message: 'groups:pause: group: group must be a string (a name, folder or jid)' },
    });
    const unknown = await call('groups:remove', { group: 'Family' });
    expect(unknown.status).toBe(404);
    const nobody = await call('groups:pause', { group: 'Nobody' });
    expect(nobody.status).toBe(404);
    expect(await nobody.json()).toEqual({
      error: { message: expect.stringMatching(/no group named "Nobody"/) },
    });
    const notJson = await fetch(`${base}/api/groups:pause`, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'application/json' },
      body: '{',
    });
    expect(notJson.status).toBe(400);
    const form = await fetch(`${base}/api/groups:pause`, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'text/plain' },
      body: JSON.stringify({ group: 'Family' }),
    });
    expect(form.status).toBe(415);
    expect(unit.core.groups.list()[0]?.paused).toBe(false);
  });

  it('caps the body size', async () => {
    const huge = await call('messages:send', {
      group: 'Family',
      text: 'x'.repeat(2 * 1024 * 1024),
    });
    expect(huge.status).toBe(413);
    expect(unit.core.messages(unit.core.groups.list()[0]!.jid, 10)).toEqual([]);
  });

  it('streams a group:changed event after a pause, and drops its listeners on disconnect', async () => {
    const before = unit.core.events.listenerCount();
    const abort = new AbortController();
    const response = await fetch(`${base}/api/events`, { headers: auth(), signal: abort.signal });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(unit.core.events.listenerCount()).toBeGreaterThan(before);
    expect(bridge.eventStreams()).toBe(1);

    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    await call('groups:pause', { group: 'Family' });
    let text = '';
    while (!text.includes('"type":"group:changed"')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    const data = text.split('\n').find((line) => line.startsWith('data: '));
    expect(JSON.parse(data!.slice(6))).toEqual({
      type: 'group:changed',
      groupJid: unit.core.groups.list()[0]!.jid,
      change: 'paused',
    });

    abort.abort();
    await reader.cancel().catch(() => undefined);
    await expect.poll(() => bridge.eventStreams()).toBe(0);
    expect(unit.core.events.listenerCount()).toBe(before);
  });
});

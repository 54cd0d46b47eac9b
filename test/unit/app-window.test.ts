import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  APP_INDEX_URL,
  appUrlToPath,
  enforceCsp,
  isAllowedExternalUrl,
  serveAppProtocol,
} from '../../main/app/security.js';
import { PAGE_CSP, PAGE_CSP_META } from '../../main/core/control/page-policy.js';
import { UI_EVENT_CHANNEL } from '../../preload/ipc-contract.js';
import {
  createTrayWindow,
  taskbarSide,
  trayWindowOptions,
  windowPosition,
  WINDOW_SIZE,
  type WindowPositionInput,
} from '../../main/app/window.js';
import { silentLogger } from '../../main/core/logger.js';
import {
  BrowserWindow,
  protocol,
  resetElectronFake,
  screen,
  session,
  shell,
} from '../fakes/electron.js';

const display = { x: 0, y: 0, width: 1920, height: 1080 };
const size = { width: 380, height: 520 };
const input = (over: Partial<WindowPositionInput>): WindowPositionInput => ({
  trayBounds: { x: 1500, y: 0, width: 24, height: 24 },
  windowSize: size,
  workArea: { x: 0, y: 24, width: 1920, height: 1056 },
  displayBounds: display,
  platform: 'linux',
  ...over,
});

describe('the window position', () => {
  it('sits under a tray icon in a top bar, centred on it', () => {
    expect(windowPosition(input({}))).toEqual({ x: 1322, y: 24 });
    expect(windowPosition(input({ platform: 'darwin' }))).toEqual({ x: 1322, y: 24 });
  });

  it('sits above a bottom taskbar', () => {
    const bottom = input({
      trayBounds: { x: 1700, y: 1044, width: 24, height: 36 },
      workArea: { x: 0, y: 0, width: 1920, height: 1040 },
    });
    expect(taskbarSide(bottom)).toBe('bottom');
    expect(windowPosition(bottom)).toEqual({ x: 1522, y: 520 });
  });

  it('sits beside a left or right taskbar, level with the icon', () => {
    const left = input({
      trayBounds: { x: 10, y: 500, width: 24, height: 24 },
      workArea: { x: 48, y: 0, width: 1872, height: 1080 },
    });
    expect(taskbarSide(left)).toBe('left');
    expect(windowPosition(left)).toEqual({ x: 48, y: 252 });
    const right = input({
      trayBounds: { x: 1886, y: 100, width: 24, height: 24 },
      workArea: { x: 0, y: 0, width: 1872, height: 1080 },
    });
    expect(taskbarSide(right)).toBe('right');
    // Centred on the icon it would start above the screen: clamped to the top.
    expect(windowPosition(right)).toEqual({ x: 1492, y: 0 });
  });

  it('stays inside the work area for an icon at a screen edge', () => {
    expect(windowPosition(input({ trayBounds: { x: 1900, y: 0, width: 20, height: 24 } }))).toEqual(
      { x: 1540, y: 24 },
    );
    expect(windowPosition(input({ trayBounds: { x: 0, y: 0, width: 20, height: 24 } }))).toEqual({
      x: 0,
      y: 24,
    });
  });

  it('works on a second display and rounds to whole pixels', () => {
    const second = input({
      displayBounds: { x: 1920, y: 0, width: 1280, height: 800 },
      workArea: { x: 1920, y: 25, width: 1280, height: 775 },
      trayBounds: { x: 2500.5, y: 0, width: 21, height: 25 },
    });
    const at = windowPosition(second);
    expect(at).toEqual({ x: 2321, y: 25 });
    expect(Number.isInteger(at.x) && Number.isInteger(at.y)).toBe(true);
  });

  it('with an auto-hiding panel, goes by the side the icon is nearest; with no bounds, top right', () => {
    const hidden = input({
      workArea: display,
      trayBounds: { x: 1800, y: 1050, width: 24, height: 24 },
    });
    expect(taskbarSide(hidden)).toBe('bottom');
    expect(windowPosition(hidden)).toEqual({ x: 1540, y: 560 });
    expect(windowPosition(input({ trayBounds: { x: 0, y: 0, width: 0, height: 0 } }))).toEqual({
      x: 1540,
      y: 24,
    });
  });
});

describe('the tray window', () => {
  let now: number;
  const paths = { preload: '/app/dist/preload/index.cjs', html: '/app/dist/renderer/index.html' };
  const open = () =>
    createTrayWindow({
      BrowserWindow,
      screen,
      openExternal: (url) => shell.openExternal(url),
      paths,
      platform: 'darwin',
      now: () => now,
      log: silentLogger(),
    });
  const tray = { x: 1200, y: 0, width: 22, height: 24 };

  beforeEach(() => {
    resetElectronFake();
    now = 1_000_000;
  });

  it('is frameless, sandboxed, isolated, without Node, and loads our page through app://', () => {
    const window = open();
    window.open(tray);
    const created = BrowserWindow.instances[0]!;
    expect(created.options).toEqual(trayWindowOptions(paths));
    expect(created.options).toMatchObject({ frame: false, show: false, ...WINDOW_SIZE });
    expect(created.options.webPreferences).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      webviewTag: false,
    });
    expect(created.loadedUrl).toBe(APP_INDEX_URL);
    expect(created.position).toEqual([1021, 24]);
  });

  it('a click toggles it; losing focus hides it; the click that caused the blur does not reopen it', () => {
    const window = open();
    window.toggle(tray);
    const created = BrowserWindow.instances[0]!;
    expect(created.visible).toBe(true);
    window.toggle(tray);
    expect(created.visible).toBe(false);
    window.toggle(tray);
    expect(created.visible).toBe(true);
    // Clicking the icon of an open window: first the blur, then the click.
    created.blur();
    expect(created.visible).toBe(false);
    now += 50;
    window.toggle(tray);
    expect(created.visible).toBe(false);
    now += 1_000;
    window.toggle(tray);
    expect(created.visible).toBe(true);
    expect(BrowserWindow.instances).toHaveLength(1);
  });

  it('opens on a route: in the URL when new, by a message when already open', () => {
    const window = open();
    window.open(undefined, 'tasks/t1');
    const created = BrowserWindow.instances[0]!;
    expect(created.loadedUrl).toBe(`${APP_INDEX_URL}#tasks/t1`);
    window.open(undefined, 'tasks/t2');
    expect(created.webContents.sent).toEqual([
      { channel: UI_EVENT_CHANNEL, args: [{ type: 'window:navigate', route: 'tasks/t2' }] },
    ]);
  });

  it('denies navigation, redirects and new windows; opens only allowlisted links outside', () => {
    const window = open();
    window.open(tray);
    const contents = BrowserWindow.instances[0]!.webContents;
    expect(contents.navigate('https://evil.example/')).toBe(true);
    expect(contents.navigate('app://clawbar/other.html')).toBe(true);
    expect(contents.redirect('https://evil.example/')).toBe(true);
    expect(contents.openWindow('https://evil.example/')).toEqual({ action: 'deny' });
    expect(contents.openWindow('https://console.anthropic.com/settings/keys')).toEqual({
      action: 'deny',
    });
    expect(shell.opened).toEqual(['https://console.anthropic.com/settings/keys']);
  });

  it('closing the window leaves the app able to open a new one', () => {
    const window = open();
    window.open(tray);
    BrowserWindow.instances[0]!.close();
    window.open(tray);
    expect(BrowserWindow.instances).toHaveLength(2);
    expect(BrowserWindow.instances[1]!.visible).toBe(true);
  });
});

describe('the external link allowlist', () => {
  it('allows https on listed sites only', () => {
    expect(isAllowedExternalUrl('https://console.anthropic.com/settings/keys')).toBe(true);
    expect(isAllowedExternalUrl('http://console.anthropic.com/')).toBe(false);
    expect(isAllowedExternalUrl('https://console.anthropic.com.evil.example/')).toBe(false);
    expect(isAllowedExternalUrl('https://user:pw@console.anthropic.com/')).toBe(false);
    expect(isAllowedExternalUrl('file:///etc/passwd')).toBe(false);
    expect(isAllowedExternalUrl('javascript:alert(1)')).toBe(false);
    expect(isAllowedExternalUrl('not a url')).toBe(false);
  });
});

describe('the app:// protocol', () => {
  let root: string;
  let outside: string;

  beforeEach(() => {
    resetElectronFake();
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-proto-'));
    root = path.join(base, 'renderer');
    outside = path.join(base, 'secret.js');
    fs.mkdirSync(path.join(root, 'panels'), { recursive: true });
    fs.writeFileSync(path.join(root, 'index.html'), '<!doctype html>');
    fs.writeFileSync(path.join(root, 'panels', 'groups.js'), 'export {}');
    fs.writeFileSync(outside, 'secret');
    serveAppProtocol(protocol, root);
  });

  afterEach(() => {
    fs.rmSync(path.dirname(root), { recursive: true, force: true });
  });

  const get = (url: string, method = 'GET') =>
    protocol.handlers.get('app')!(new Request(url, { method }));

  it('serves files of dist/renderer with their type and the CSP', async () => {
    const page = await get(APP_INDEX_URL);
    expect(page.status).toBe(200);
    expect(await page.text()).toBe('<!doctype html>');
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toBe(PAGE_CSP);
    const script = await get('app://clawbar/panels/groups.js');
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await get('app://clawbar/')).status).toBe(200);
  });

  it('refuses every way out of the folder', async () => {
    // The URL parser already resolves `..` and `%2e%2e` segments, stopping at the root: such
    // a URL names root/secret.js, which does not exist.
    for (const url of [
      'app://clawbar/../secret.js',
      'app://clawbar/%2e%2e/secret.js',
      'app://clawbar/panels/%2E%2E/%2E%2E/secret.js',
    ]) {
      expect(appUrlToPath(url, root), url).toBe(path.join(root, 'secret.js'));
      expect((await get(url)).status, url).toBe(404);
    }
    // What the parser leaves alone is refused here.
    const attempts = [
      'app://clawbar/..%2fsecret.js',
      'app://clawbar/..%5csecret.js',
      'app://clawbar/%00index.html',
      'app://other/index.html',
      'app://clawbar/.hidden.js',
      'app://clawbar/index.html%',
    ];
    for (const url of attempts) {
      expect(appUrlToPath(url, root), url).toBeNull();
      expect((await get(url)).status, url).toBe(404);
    }
    expect(appUrlToPath('https://clawbar/index.html', root)).toBeNull();
  });

  it('does not follow a symbolic link out of the folder', async () => {
    fs.symlinkSync(outside, path.join(root, 'leak.js'));
    expect((await get('app://clawbar/leak.js')).status).toBe(404);
  });

  it('answers only GET and HEAD', async () => {
    expect((await get(APP_INDEX_URL, 'POST')).status).toBe(405);
    const head = await get(APP_INDEX_URL, 'HEAD');
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('the CSP is put on every response of the session, replacing any other', () => {
    enforceCsp(session.defaultSession.webRequest);
    const headers = session.defaultSession.webRequest.receive('https://x.example/', {
      'content-security-policy': ['default-src *'],
      'content-type': ['text/html'],
    });
    expect(headers).toEqual({
      'Content-Security-Policy': [PAGE_CSP],
      'content-type': ['text/html'],
    });
    expect(PAGE_CSP).toMatch(/default-src 'none'/);
    expect(PAGE_CSP).toMatch(/script-src 'self'(;|$)/);
  });

  it("the page's own <meta> policy is the same one, less what a <meta> cannot carry", () => {
    const html = fs.readFileSync(new URL('../../renderer/index.html', import.meta.url), 'utf8');
    const meta = /http-equiv="Content-Security-Policy"\s+content="([^"]*)"/.exec(html);
    expect(meta?.[1]).toBe(PAGE_CSP_META);
    expect(PAGE_CSP).toBe(`${PAGE_CSP_META}; frame-ancestors 'none'`);
    // Nothing in the policy lets a style attribute or an inline script run.
    expect(PAGE_CSP).not.toContain('unsafe-');
  });
});

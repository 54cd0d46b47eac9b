/**
 * What keeps the tray window ours (Electron's security checklist): the page is served through
 * a custom `app://` protocol from `dist/renderer` only, under a strict Content Security
 * Policy; it can neither navigate away nor open windows; and the only links that leave the app
 * go to the system browser, for an allowlist of sites. The IPC gate (`ipc.ts`) trusts "this
 * is our window" because of these.
 *
 * Everything Electron is injected; the pure parts (URL to file, the allowlist) are tested
 * directly and the wiring with `test/fakes/electron.ts`.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { PAGE_CSP } from '../core/control/page-policy.js';
import type { Logger } from '../core/logger.js';

/** The scheme the app's pages are served under: `app://clawbar/index.html`. */
export const APP_SCHEME = 'app';
/** The host part of every app URL; anything else is refused. */
export const APP_HOST = 'clawbar';
/** The page the tray window loads. */
export const APP_INDEX_URL = `${APP_SCHEME}://${APP_HOST}/index.html`;

/**
 * Passed to `protocol.registerSchemesAsPrivileged` before `ready`: a standard, secure scheme
 * (so relative URLs, `'self'` in the CSP and the Fetch API work as for https) that is not
 * allowed to bypass the CSP.
 */
export const APP_SCHEME_PRIVILEGES = [
  {
    scheme: APP_SCHEME,
    privileges: { standard: true, secure: true, supportFetchAPI: true, bypassCSP: false },
  },
];

const MIME_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
};

/**
 * The file under `root` an app URL names, or null for anything that is not a plain file path
 * inside it: another scheme or host, `..` (also percent-encoded), backslashes, NUL bytes,
 * absolute paths, or a file type the page has no use for. Symbolic links are checked when the
 * file is opened ({@link serveAppFile}).
 */
export function appUrlToPath(url: string, root: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== `${APP_SCHEME}:` || parsed.host !== APP_HOST) return null;
  if (parsed.username || parsed.password || parsed.port) return null;
  let relative: string;
  try {
    relative = decodeURIComponent(parsed.pathname);
  } catch {
    return null; // a malformed escape
  }
  if (relative === '/' || relative === '') relative = '/index.html';
  if (relative.includes('\0') || relative.includes('\\')) return null;
  const segments = relative.split('/').slice(1);
  if (segments.some((s) => s === '' || s === '.' || s === '..' || s.startsWith('.'))) return null;
  if (!(path.extname(relative).toLowerCase() in MIME_TYPES)) return null;
  const resolved = path.resolve(root, ...segments);
  const inside = path.relative(path.resolve(root), resolved);
  if (inside.startsWith('..') || path.isAbsolute(inside)) return null;
  return resolved;
}

/**
 * Answers one `app://` request: the file, with its type and the CSP, or 404. The real path is
 * checked again after resolving symbolic links, so a link planted in `dist/renderer` cannot
 * serve a file from outside it. Only GET and HEAD are answered.
 */
export async function serveAppFile(
  request: { url: string; method: string },
  root: string,
): Promise<Response> {
  if (request.method !== 'GET' && request.method !== 'HEAD')
    return new Response('method not allowed', { status: 405 });
  const filePath = appUrlToPath(request.url, root);
  if (!filePath) return notFound();
  try {
    const [realRoot, realFile] = await Promise.all([fs.realpath(root), fs.realpath(filePath)]);
    const inside = path.relative(realRoot, realFile);
    if (inside.startsWith('..') || path.isAbsolute(inside)) return notFound();
    const body = await fs.readFile(realFile);
    return new Response(request.method === 'HEAD' ? null : new Uint8Array(body), {
      status: 200,
      headers: {
        'content-type': MIME_TYPES[path.extname(realFile).toLowerCase()] ?? 'text/plain',
        'content-security-policy': PAGE_CSP,
        'x-content-type-options': 'nosniff',
      },
    });
  } catch {
    return notFound();
  }
}

function notFound(): Response {
  return new Response('not found', { status: 404 });
}

/** The part of Electron's `protocol` used here. */
export interface ProtocolLike {
  handle(scheme: string, handler: (request: Request) => Response | Promise<Response>): void;
}

/** Serves `app://clawbar/…` from `root` (dist/renderer). Call after `ready`. */
export function serveAppProtocol(protocol: ProtocolLike, root: string): void {
  protocol.handle(APP_SCHEME, (request) => serveAppFile(request, root));
}

/** The part of `session.webRequest` used here. */
export interface WebRequestLike {
  onHeadersReceived(
    listener: (
      details: { url: string; responseHeaders?: Record<string, string[]> },
      callback: (response: { responseHeaders?: Record<string, string[]> }) => void,
    ) => void,
  ): void;
}

/**
 * Adds the CSP to every response the session receives, so a page that reached the window by
 * any route still runs under it. The `app://` responses carry it already.
 */
export function enforceCsp(webRequest: WebRequestLike): void {
  webRequest.onHeadersReceived((details, callback) => {
    const headers = { ...details.responseHeaders };
    for (const name of Object.keys(headers))
      if (name.toLowerCase() === 'content-security-policy') delete headers[name];
    headers['Content-Security-Policy'] = [PAGE_CSP];
    callback({ responseHeaders: headers });
  });
}

/** Sites a link in the window may open in the system browser; every other URL is dropped. */
export const EXTERNAL_ORIGINS: readonly string[] = [
  'https://console.anthropic.com',
  'https://docs.anthropic.com',
  'https://docs.claude.com',
  'https://faq.whatsapp.com',
];

/** True for an https URL on an allowlisted site, with no credentials in it. */
export function isAllowedExternalUrl(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol !== 'https:' || parsed.username || parsed.password) return false;
  return EXTERNAL_ORIGINS.includes(parsed.origin);
}

/** The parts of a `WebContents` the guard hooks. */
export interface GuardedContents {
  on(
    event: 'will-navigate' | 'will-redirect',
    listener: (event: { preventDefault(): void }, url: string) => void,
  ): unknown;
  on(event: 'will-attach-webview', listener: (event: { preventDefault(): void }) => void): unknown;
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' }): void;
}

export interface ContentsGuardDeps {
  /** Electron's `shell.openExternal`. */
  openExternal(url: string): Promise<void>;
  log: Logger;
}

/**
 * Locks a web contents to the page it loaded: navigation, redirects, pop-ups and `<webview>`s
 * are refused. A link to an allowlisted site opens in the system browser instead.
 */
export function guardWebContents(contents: GuardedContents, deps: ContentsGuardDeps): void {
  const log = deps.log.child({ mod: 'security' });
  const refuse = (event: { preventDefault(): void }, url: string) => {
    event.preventDefault();
    log.warn({ url: String(url).slice(0, 200) }, 'refused a navigation in the app window');
  };
  contents.on('will-navigate', refuse);
  contents.on('will-redirect', refuse);
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.setWindowOpenHandler((details) => {
    const url = String(details?.url ?? '');
    if (isAllowedExternalUrl(url)) {
      deps
        .openExternal(url)
        .catch((err: unknown) => log.warn({ err, url }, 'could not open the link in the browser'));
    } else {
      log.warn({ url: String(url).slice(0, 200) }, 'refused to open a window');
    }
    return { action: 'deny' };
  });
}

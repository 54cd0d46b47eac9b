/**
 * The headless bridge of `clawbar serve --http HOST:PORT` (DESIGN.md §6): the tray window's
 * page and its API for a browser, so a Linux server gets the same UI.
 *
 * - `GET /` and the page's own files: the built renderer, with a strict CSP.
 * - `POST /api/<channel>`: one contract call (`preload/ipc-contract.ts`), JSON in and out,
 *   through the same dispatch as Electron's IPC (`ui-api.ts`).
 * - `GET /api/events`: the live events as Server-Sent Events, a comment every 25 s keeps
 *   proxies from closing an idle stream.
 *
 * The guards, in order: the Host header must name this server (a DNS-rebinding page's Host is
 * its own name), a cross-origin `Origin` is refused, and every `/api` request carries the token
 * kept in `$CLAWBAR_HOME/dashboard-token` as `Authorization: Bearer …` (compared in constant
 * time). Bodies are capped. Node's http module only: no framework, no new dependency.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { CoreInputError } from '../errors.js';
import type { CoreEventBus } from '../events.js';
import type { Logger } from '../logger.js';
import { PAGE_CSP } from './page-policy.js';
import { UnknownChannelError, type UiApi } from './ui-api.js';
import { subscribeUiEvents } from './ui-events.js';
import { classify } from './server.js';

/** The largest request body read. @default 1 MiB */
export const MAX_HTTP_BODY_BYTES = 1024 * 1024;

/** How often an idle event stream gets a comment. @default 25 s */
export const SSE_HEARTBEAT_MS = 25_000;

/** The token file's name in `$CLAWBAR_HOME`. */
export const DASHBOARD_TOKEN_FILE = 'dashboard-token';

/** `--http` was not `HOST:PORT`. */
export class HttpAddressError extends CoreInputError {
  override readonly name = 'HttpAddressError';
}

export interface HttpAddress {
  /** As given, without IPv6 brackets. */
  host: string;
  /** 0 asks the system for a free port. */
  port: number;
  /** Only this machine can reach it (127.0.0.0/8, ::1, localhost). */
  loopback: boolean;
}

/** Parses `HOST:PORT` (`[::1]:8080` for IPv6). */
export function parseHttpAddress(spec: string): HttpAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(spec.trim());
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || host === undefined || !Number.isInteger(port) || port > 65_535) {
    throw new HttpAddressError(
      `--http takes HOST:PORT, like 127.0.0.1:8765 ([::1]:8765 for IPv6; port 0 picks a free one); got ${JSON.stringify(spec.slice(0, 100))}`,
    );
  }
  if (match[1] !== undefined && net.isIPv6(host) === false)
    throw new HttpAddressError(`--http: ${JSON.stringify(host)} is not an IPv6 address`);
  return { host, port, loopback: isLoopback(host) };
}

function isLoopback(host: string): boolean {
  const lower = host.toLowerCase();
  if (lower === 'localhost' || lower === '::1') return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

/**
 * The dashboard token: read from `$CLAWBAR_HOME/dashboard-token`, or made (32 random bytes,
 * base64url) and written there with mode 0600 on first use. Reused across starts, so a
 * bookmarked URL keeps working; delete the file to change it.
 */
export function loadDashboardToken(home: string): string {
  const file = path.join(home, DASHBOARD_TOKEN_FILE);
  const existing = readToken(file);
  if (existing) return existing;
  // Unreadable or malformed: replaced by a new one (the old URL stops working).
  fs.rmSync(file, { force: true });
  const token = randomBytes(32).toString('base64url');
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}

function readToken(file: string): string | null {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(file);
  } catch {
    return null;
  }
  // A symlink or a directory is not ours to read: it is replaced.
  if (!stat.isFile()) return null;
  if ((stat.mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
  const token = fs.readFileSync(file, 'utf8').trim();
  return /^[A-Za-z0-9_-]{32,256}$/.test(token) ? token : null;
}

export interface HttpBridgeOptions {
  address: HttpAddress;
  token: string;
  api: UiApi;
  events: CoreEventBus;
  /** The built renderer: `index.html` and the files next to it (`dist/renderer`). */
  rendererDir: string;
  log: Logger;
  /** @default {@link SSE_HEARTBEAT_MS} */
  heartbeatMs?: number;
  /** @default {@link MAX_HTTP_BODY_BYTES} */
  maxBodyBytes?: number;
}

export interface HttpBridge {
  /** `http://HOST:PORT/` with the real port; the token goes in the fragment. */
  readonly url: string;
  readonly port: number;
  /** How many event streams are open. */
  eventStreams(): number;
  /** Ends every stream and connection, then stops listening. */
  close(): Promise<void>;
}

const STATIC_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Headers every answer carries. */
const COMMON_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'X-Frame-Options': 'DENY',
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startHttpBridge(opts: HttpBridgeOptions): Promise<HttpBridge> {
  const log = opts.log.child({ mod: 'http' });
  const tokenDigest = digest(opts.token);
  const streams = new Set<http.ServerResponse>();
  let port = opts.address.port;

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'HTTP request handling failed');
      if (!res.headersSent) sendJson(res, 500, { error: { message: 'internal error' } });
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://bridge.invalid');
    try {
      checkHost(req.headers.host, opts.address, port);
      if (!url.pathname.startsWith('/api/')) {
        serveStatic(req, res, url.pathname, opts.rendererDir);
        return;
      }
      checkOrigin(req.headers.origin, req.headers.host ?? '');
      checkToken(req.headers.authorization, tokenDigest);
      if (url.pathname === '/api/events') {
        if (req.method !== 'GET') throw new HttpError(405, 'use GET for /api/events');
        openEventStream(req, res);
        return;
      }
      if (req.method !== 'POST') throw new HttpError(405, 'use POST for /api/<channel>');
      const channel = decodeURIComponent(url.pathname.slice('/api/'.length));
      const body = await readJsonBody(req, opts.maxBodyBytes ?? MAX_HTTP_BODY_BYTES);
      sendJson(res, 200, { result: await callApi(channel, body) });
    } catch (err) {
      if (err instanceof HttpError) {
        if (err.status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
        sendJson(res, err.status, { error: { message: err.message } });
        return;
      }
      throw err;
    }
  }

  async function callApi(channel: string, body: unknown): Promise<unknown> {
    try {
      return await opts.api.call(channel, body === undefined ? [] : [body]);
    } catch (err) {
      if (err instanceof UnknownChannelError) throw new HttpError(404, err.message);
      const { code, message } = classify(err);
      const status = { bad_request: 400, not_found: 404, failed: 500, unavailable: 503 }[code];
      throw new HttpError(status, message);
    }
  }

  function openEventStream(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, {
      ...COMMON_HEADERS,
      'Content-Type': 'text/event-stream; charset=utf-8',
      Connection: 'keep-alive',
      // Tells nginx and its kind not to buffer the stream.
      'X-Accel-Buffering': 'no',
    });
    res.write(': connected\n\n');
    streams.add(res);
    const unsubscribe = subscribeUiEvents(opts.events, (event) => {
      res.write(`data: ${JSON.stringify(event)}\n\n`);
    });
    const heartbeat = setInterval(
      () => res.write(': heartbeat\n\n'),
      opts.heartbeatMs ?? SSE_HEARTBEAT_MS,
    );
    let closed = false;
    const cleanup = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      unsubscribe();
      streams.delete(res);
    };
    req.on('close', cleanup);
    res.on('close', cleanup);
    res.on('error', cleanup);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.address.port, opts.address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  if (bound && typeof bound === 'object') port = bound.port;
  const hostInUrl = net.isIPv6(opts.address.host) ? `[${opts.address.host}]` : opts.address.host;
  const url = `http://${hostInUrl}:${port}/`;
  if (!opts.address.loopback)
    log.warn(
      { url },
      'the dashboard listens beyond this machine; anyone with the token controls Clawbar',
    );
  log.info({ url }, 'dashboard listening');

  return {
    url,
    port,
    eventStreams: () => streams.size,
    async close() {
      for (const res of streams) res.end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** The SHA-256 of a token: equal-length inputs for `timingSafeEqual`, whatever was sent. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

function checkToken(header: string | undefined, expected: Buffer): void {
  const match = /^Bearer ([^\s]+)$/.exec(header ?? '');
  if (!match?.[1])
    throw new HttpError(401, 'missing token: send Authorization: Bearer <token from the URL>');
  if (!timingSafeEqual(digest(match[1]), expected))
    throw new HttpError(401, 'wrong token: use the URL `clawbar serve --http` printed');
}

/**
 * The Host header must name this server: its bound host, `localhost` when bound to loopback,
 * or any IP literal (a rebinding attack needs a DNS name of its own), with this port.
 */
function checkHost(header: string | undefined, address: HttpAddress, port: number): void {
  const refuse = (): never => {
    throw new HttpError(421, 'this request is not for this server (Host header)');
  };
  if (!header) return refuse();
  let parsed: URL;
  try {
    parsed = new URL(`http://${header}`);
  } catch {
    return refuse();
  }
  const hostPort = parsed.port === '' ? 80 : Number(parsed.port);
  if (hostPort !== port) return refuse();
  const name = parsed.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (name === address.host.toLowerCase()) return;
  if (name === 'localhost' && address.loopback) return;
  if (net.isIP(name) !== 0) return;
  refuse();
}

/** A browser names the page's origin; a call from any other page is refused. */
function checkOrigin(origin: string | undefined, host: string): void {
  if (origin === undefined) return;
  if (origin !== `http://${host}`)
    throw new HttpError(403, 'cross-origin requests are refused; open the dashboard URL itself');
}

function readJsonBody(req: http.IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes)
    return Promise.reject(
      new HttpError(413, `request body too large (the limit is ${maxBytes} bytes)`),
    );
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        reject(new HttpError(413, `request body too large (the limit is ${maxBytes} bytes)`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (size === 0) {
        resolve(undefined);
        return;
      }
      // application/json cannot be sent cross-site without a preflight, which this server never answers.
      if (!/^application\/json(;|$)/i.test(req.headers['content-type'] ?? '')) {
        reject(new HttpError(415, 'send the argument as Content-Type: application/json'));
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new HttpError(400, 'the request body is not JSON'));
      }
    });
  });
}

/** The renderer's own files, flat in one directory; nothing else is served. */
function serveStatic(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  pathname: string,
  dir: string,
): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'use GET');
  const name = pathname === '/' ? 'index.html' : pathname.slice(1);
  const type = STATIC_TYPES[path.extname(name)];
  if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(name) || !type) throw new HttpError(404, 'not found');
  const file = path.join(dir, name);
  let content: Buffer;
  try {
    if (!fs.lstatSync(file).isFile()) throw new Error('not a regular file');
    content = fs.readFileSync(file);
  } catch {
    throw new HttpError(
      404,
      name === 'index.html' ? 'the dashboard page is not built; run `npm run build`' : 'not found',
    );
  }
  res.writeHead(200, {
    ...COMMON_HEADERS,
    'Content-Type': type,
    'Content-Length': content.length,
    'Content-Security-Policy': PAGE_CSP,
  });
  res.end(req.method === 'HEAD' ? undefined : content);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

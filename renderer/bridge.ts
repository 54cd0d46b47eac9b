/**
 * The browser bridge: when the page runs in a browser under `clawbar serve --http` (no preload,
 * so no `window.clawbar`), it builds the same API over HTTP. Calls are `POST /api/<channel>`,
 * live events come from `GET /api/events` (Server-Sent Events, read with `fetch` so the token
 * goes in a header, as everywhere else, and never in a URL).
 *
 * The token arrives in the URL's fragment (`#token=…`), which browsers never send to a
 * server. It is moved to sessionStorage (this tab only, so a reload keeps working) and removed
 * from the address bar, history and bookmarks.
 */
import { createClawbarApi, type IpcChannel } from '../preload/api.js';
import type { ClawbarApiShape, UiEvent } from '../preload/ipc-contract.js';

const TOKEN_KEY = 'clawbar-dashboard-token';
/** Waits before reconnecting the event stream: doubles from the first, up to the last. */
const RECONNECT_MS = { first: 1_000, max: 30_000 };

/** Installs `window.clawbar` over HTTP unless the preload already did. Idempotent. */
export function installHttpBridge(): void {
  if ('clawbar' in window) return;
  const token = takeToken();
  if (!token) return;
  Object.defineProperty(window, 'clawbar', { value: createHttpClawbar(token), enumerable: true });
}

/** The token from `#token=…` (then removed from the address bar), else from this tab's storage. */
function takeToken(): string | null {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl) {
    window.sessionStorage.setItem(TOKEN_KEY, fromUrl);
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
    return fromUrl;
  }
  return window.sessionStorage.getItem(TOKEN_KEY);
}

/** The HTTP transport's error: the server's message, as the IPC transport gives it. */
export class BridgeCallError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'BridgeCallError';
  }
}

/** `window.clawbar` over `fetch`, with `fetchImpl` injectable for tests. */
export function createHttpClawbar(
  token: string,
  fetchImpl: typeof fetch = (input, init) => fetch(input, init),
): ClawbarApiShape {
  const authorization = `Bearer ${token}`;
  const invoke = async (channel: IpcChannel, args: unknown): Promise<unknown> => {
    const response = await fetchImpl(`/api/${channel}`, {
      method: 'POST',
      headers:
        args === undefined
          ? { Authorization: authorization }
          : { Authorization: authorization, 'Content-Type': 'application/json' },
      ...(args === undefined ? {} : { body: JSON.stringify(args) }),
    });
    const body = (await response.json().catch(() => null)) as {
      result?: unknown;
      error?: { message?: string };
    } | null;
    if (!response.ok)
      throw new BridgeCallError(
        body?.error?.message ?? `${channel} failed (HTTP ${response.status})`,
        response.status,
      );
    return body?.result;
  };
  return createClawbarApi(invoke, eventStream(authorization, fetchImpl));
}

/**
 * One event stream shared by every listener: opened with the first, closed with the last, and
 * reopened (with growing waits) when it drops. Each reopening is followed by an
 * `events:resumed` event, since the server keeps no backlog: what it sent meanwhile is gone,
 * and the page fetches its state again instead.
 */
function eventStream(
  authorization: string,
  fetchImpl: typeof fetch,
): (listener: (event: UiEvent) => void) => () => void {
  const listeners = new Set<(event: UiEvent) => void>();
  let abort: AbortController | null = null;

  const deliverEvent = (event: UiEvent): void => {
    for (const listener of listeners) listener(event);
  };
  const deliver = (data: string): void => {
    let event: UiEvent;
    try {
      event = JSON.parse(data) as UiEvent;
    } catch {
      return;
    }
    deliverEvent(event);
  };

  const run = async (signal: AbortSignal): Promise<void> => {
    let wait = RECONNECT_MS.first;
    let connectedBefore = false;
    while (!signal.aborted) {
      try {
        const response = await fetchImpl('/api/events', {
          headers: { Authorization: authorization, Accept: 'text/event-stream' },
          signal,
        });
        if (response.ok && response.body) {
          wait = RECONNECT_MS.first;
          // Events sent while the stream was down are lost: the page is told to fetch again.
          if (connectedBefore) deliverEvent({ type: 'events:resumed' });
          connectedBefore = true;
          await readEvents(response.body, deliver);
        }
      } catch {
        // Dropped or refused: try again after the wait, unless we were closed.
      }
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, RECONNECT_MS.max);
    }
  };

  return (listener) => {
    listeners.add(listener);
    if (!abort) {
      const controller = new AbortController();
      abort = controller;
      void run(controller.signal);
    }
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && abort) {
        abort.abort();
        abort = null;
      }
    };
  };
}

/** Reads Server-Sent Events until the stream ends, passing each `data:` payload on. */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  deliver: (data: string) => void,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data) deliver(data);
    }
  }
}

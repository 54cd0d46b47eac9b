/**
 * The browser bridge (`renderer/bridge.ts`) over a scripted `fetch`: calls carry the token and
 * their argument, errors carry the server's message, and the event stream reopens after a drop
 * and then says `events:resumed`, so the page fetches what it missed.
 */
import { describe, expect, it } from 'vitest';
import { BridgeCallError, createHttpClawbar, readEvents } from '../../renderer/bridge.js';
import type { UiEvent } from '../../preload/ipc-contract.js';

interface Call {
  url: string;
  init: RequestInit | undefined;
}

/** A stream the test writes Server-Sent Events into, and ends when it likes. */
function eventSource(): { body: ReadableStream<Uint8Array>; send(e: UiEvent): void; end(): void } {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => (controller = c) });
  const encoder = new TextEncoder();
  return {
    body,
    send: (event) => controller.enqueue(encoder.encode(`data: ${JSON.stringify(event)}\n\n`)),
    end: () => controller.close(),
  };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' },
  });
}

describe('the HTTP bridge', () => {
  it('posts each call to /api/<channel> with the token and its argument', async () => {
    const calls: Call[] = [];
    const api = createHttpClawbar('tok-1', async (url, init) => {
      calls.push({ url: String(url), init });
      return json(200, { result: { paused: true } });
    });
    await expect(api.groups.pause({ group: 'family' })).resolves.toEqual({ paused: true });
    await api.status.get();
    expect(calls.map((c) => c.url)).toEqual(['/api/groups:pause', '/api/status:get']);
    expect(calls[0]!.init).toMatchObject({
      method: 'POST',
      headers: { Authorization: 'Bearer tok-1', 'Content-Type': 'application/json' },
      body: JSON.stringify({ group: 'family' }),
    });
    // No argument: no body, and no content type claiming one.
    expect(calls[1]!.init?.body).toBeUndefined();
    expect(calls[1]!.init?.headers).toEqual({ Authorization: 'Bearer tok-1' });
  });

  it("rejects with the server's message and status, or says which call failed", async () => {
    const answers = [
      json(400, { error: { message: 'groups:pause: group: expected a string' } }),
      new Response('<html>proxy error</html>', { status: 502 }),
    ];
    const api = createHttpClawbar('tok', async () => answers.shift()!);
    const first = await api.groups.pause({ group: 'x' }).catch((err: unknown) => err);
    expect(first).toBeInstanceOf(BridgeCallError);
    expect(first).toMatchObject({
      message: 'groups:pause: group: expected a string',
      status: 400,
    });
    await expect(api.status.get()).rejects.toThrow('status:get failed (HTTP 502)');
  });

  it('reopens a dropped event stream, then says events:resumed before the new events', async () => {
    const streams = [eventSource(), eventSource()];
    const opened: string[] = [];
    const signals: AbortSignal[] = [];
    const api = createHttpClawbar('tok', async (url, init) => {
      opened.push(String(url));
      signals.push(init!.signal!);
      expect(init?.headers).toMatchObject({ Authorization: 'Bearer tok' });
      const next = streams[opened.length - 1];
      if (!next) throw new Error('no more streams');
      return new Response(next.body, { headers: { 'Content-Type': 'text/event-stream' } });
    });
    const seen: UiEvent[] = [];
    const off = api.onEvent((event) => seen.push(event));
    const setup: UiEvent = { type: 'setup:changed', ready: true, problems: [] };
    await expect.poll(() => opened.length).toBe(1);
    streams[0]!.send(setup);
    await expect.poll(() => seen.length).toBe(1);
    streams[0]!.end();
    // The bridge waits a second before it reconnects.
    await expect.poll(() => opened.length, { timeout: 5_000 }).toBe(2);
    streams[1]!.send(setup);
    await expect.poll(() => seen.length).toBe(3);
    expect(seen).toEqual([setup, { type: 'events:resumed' }, setup]);
    expect(opened).toEqual(['/api/events', '/api/events']);

    // The last listener gone: the open request is aborted.
    expect(signals[1]!.aborted).toBe(false);
    off();
    expect(signals[1]!.aborted).toBe(true);
  }, 10_000);

  it('reads events split across chunks, joins multi-line data, and skips comments', async () => {
    const chunks = [': keep-alive\n\n', 'data: {"a":', '1}\n\ndata: x\ndata: y\n', '\n'];
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
        controller.close();
      },
    });
    const seen: string[] = [];
    await readEvents(body, (data) => seen.push(data));
    expect(seen).toEqual(['{"a":1}', 'x\ny']);
  });
});

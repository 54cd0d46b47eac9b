/**
 * The control socket server: a unix socket in `$CLAWBAR_HOME` (mode 0600, so only the
 * user who runs Clawbar can drive it), speaking the JSON-lines protocol of `protocol.ts`.
 * Every request is parsed before it reaches a handler; bad input gets an error answer and
 * the connection stays usable.
 */
import fs from 'node:fs';
import net from 'node:net';
import { ZodError, type z } from 'zod';
import { FrameDecoder, type DecodeFailure } from '../agent/protocol.js';
import { CoreInputError, UnknownGroupError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ControlHandlers, RequestContext } from './handlers.js';
import {
  ControlMethods,
  ControlRequestSchema,
  isControlMethod,
  MAX_REQUEST_BYTES,
  type ControlErrorCode,
  type ControlProgress,
  type ControlMethod,
  type ControlResponse,
} from './protocol.js';

/** What a client is told about a line it cannot have answered by id. */
const REFUSAL: Record<DecodeFailure, string> = {
  too_large: `request too large (the limit is ${MAX_REQUEST_BYTES} bytes a line)`,
  not_json: 'request is not JSON',
  invalid: 'request needs id, method, params',
};

type ControlRequest = z.infer<typeof ControlRequestSchema>;

export class ServeAlreadyRunningError extends Error {
  constructor(socketPath: string) {
    super(`clawbar serve is already running (its control socket ${socketPath} answers)`);
    this.name = 'ServeAlreadyRunningError';
  }
}

export class ControlServer {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private readonly log: Logger;

  constructor(
    private readonly socketPath: string,
    private readonly handlers: ControlHandlers,
    log: Logger,
  ) {
    this.log = log.child({ mod: 'control' });
  }

  async listen(): Promise<void> {
    await this.clearStaleSocket();
    const server = net.createServer((socket) => this.accept(socket));
    // Create the socket file already private: no window in which others could connect. The
    // umask is process-wide, so it is narrowed only around the call that binds: `listen()` on
    // a path binds synchronously (outside cluster mode) and only reports asynchronously, so no
    // other code runs (and creates a directory without its x bit) while the umask is 0177.
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const previousMask = process.umask(0o177);
      try {
        server.listen(this.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(previousMask);
      }
    });
    // Whatever the umask did, the mode is exactly 0600 (and the home around it is 0700).
    fs.chmodSync(this.socketPath, 0o600);
    this.server = server;
    this.log.info({ socket: this.socketPath }, 'control socket listening');
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(this.socketPath, { force: true });
  }

  /** A socket file with nobody behind it is left by a crash; one that answers is a live serve. */
  private async clearStaleSocket(): Promise<void> {
    if (!fs.existsSync(this.socketPath)) return;
    const alive = await new Promise<boolean>((resolve) => {
      const probe = net.connect(this.socketPath);
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (alive) throw new ServeAlreadyRunningError(this.socketPath);
    fs.rmSync(this.socketPath, { force: true });
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    // Ends this client's long waits (`send --wait`) when it goes away or the server closes.
    const gone = new AbortController();
    socket.on('close', () => {
      this.sockets.delete(socket);
      gone.abort();
    });
    socket.on('error', (err) => this.log.debug({ err }, 'control connection error'));
    socket.setEncoding('utf8');
    // The same line splitter as the container protocol: an oversized line is refused once and
    // skipped up to its newline, so the connection stays usable.
    const decoder = new FrameDecoder(ControlRequestSchema, MAX_REQUEST_BYTES);
    socket.on('data', (chunk: string) => {
      for (const result of decoder.push(chunk)) {
        if (result.ok)
          this.handleRequest(socket, result.frame, gone.signal).catch((err: unknown) =>
            this.log.error({ err }, 'control request handling failed'),
          );
        else
          this.reply(socket, {
            id: 0,
            ok: false,
            error: { code: 'bad_request', message: REFUSAL[result.kind] },
          });
      }
    });
  }

  private async handleRequest(
    socket: net.Socket,
    request: ControlRequest,
    signal: AbortSignal,
  ): Promise<void> {
    const { id, method } = request;
    if (!isControlMethod(method)) {
      this.reply(socket, {
        id,
        ok: false,
        error: { code: 'bad_request', message: `unknown method "${method}"` },
      });
      return;
    }
    const progress = (update: ControlProgress): void =>
      this.reply(socket, { id, progress: update });
    this.reply(socket, {
      id,
      ...(await invokeControl(this.handlers, method, request.params, this.log, signal, progress)),
    });
  }

  private reply(socket: net.Socket, response: ControlResponse): void {
    if (!socket.destroyed) socket.write(`${JSON.stringify(response)}\n`);
  }
}

/**
 * Parses a method's params and runs its handler. Shared by the socket server and the CLI's
 * in-process path, so both validate the same way. Never throws.
 */
export async function invokeControl(
  handlers: ControlHandlers,
  method: ControlMethod,
  rawParams: unknown,
  log?: Logger,
  signal: AbortSignal = new AbortController().signal,
  progress: (update: ControlProgress) => void = () => undefined,
): Promise<
  { ok: true; result: unknown } | { ok: false; error: { code: ControlErrorCode; message: string } }
> {
  const params = ControlMethods[method].safeParse(rawParams ?? {});
  if (!params.success)
    return { ok: false, error: { code: 'bad_request', message: describeZodError(params.error) } };
  try {
    // The handler table is keyed by method; the params were parsed with that method's schema.
    const handler = handlers[method] as (p: unknown, ctx: RequestContext) => Promise<unknown>;
    return { ok: true, result: await handler(params.data, { signal, progress }) };
  } catch (err) {
    const { code, message } = classify(err);
    if (code === 'failed') log?.error({ method, err }, 'control request failed');
    return { ok: false, error: { code, message } };
  }
}

export function describeZodError(error: ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid parameters';
  return issue.path.length ? `${issue.path.join('.')}: ${issue.message}` : issue.message;
}

/** Maps an error to what the client is told. Unexpected errors keep their message, not their stack. */
export function classify(err: unknown): { code: ControlErrorCode; message: string } {
  if (err instanceof UnknownGroupError) return { code: 'not_found', message: err.message };
  if (
    err instanceof CoreInputError ||
    (err instanceof Error && err.name === 'InvalidFolderNameError')
  ) {
    return { code: 'bad_request', message: err.message };
  }
  return { code: 'failed', message: err instanceof Error ? err.message : String(err) };
}

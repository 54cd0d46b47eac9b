/** A client for the control socket, used by the CLI. */
import net from 'node:net';
import type {
  ControlErrorCode,
  ControlMethod,
  ControlParams,
  ControlProgress,
  ControlResponse,
} from './protocol.js';

/** `serve` is not running (no socket, or nobody behind it). */
export class ServeNotRunningError extends Error {
  constructor(socketPath: string, options?: ErrorOptions) {
    super(`clawbar serve is not running (no answer on ${socketPath})`, options);
    this.name = 'ServeNotRunningError';
  }
}

/** The server answered with an error. */
export class ControlRequestError extends Error {
  constructor(
    message: string,
    readonly code: ControlErrorCode,
  ) {
    super(message);
    this.name = 'ControlRequestError';
  }
}

/** `serve` closed the connection before it answered: it stopped, or was killed. */
export class ServeClosedError extends Error {
  constructor() {
    super('clawbar serve closed the connection before answering (did it stop?)');
    this.name = 'ServeClosedError';
  }
}

export interface RequestOptions {
  /** Progress of a long request, before its answer. Must not throw (a throw is ignored). */
  onProgress?(progress: ControlProgress): void;
}

export class ControlClient {
  private nextId = 1;

  private constructor(private readonly socket: net.Socket) {}

  /** Connects, or throws {@link ServeNotRunningError}. */
  static connect(socketPath: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new ControlClient(socket));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        // ENOTDIR: the data directory is a file; the in-process path then says so plainly.
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTDIR')
          reject(new ServeNotRunningError(socketPath, { cause: err }));
        else reject(err);
      });
    });
  }

  /** Sends one request and waits for its answer; progress before it goes to `opts.onProgress`. */
  request<M extends ControlMethod>(
    method: M,
    params: ControlParams<M>,
    opts: RequestOptions = {},
  ): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      let buffer = '';
      const onData = (chunk: Buffer) => {
        buffer += chunk.toString('utf8');
        let newline: number;
        while ((newline = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          let response: ControlResponse;
          try {
            response = JSON.parse(line) as ControlResponse;
          } catch {
            cleanup();
            reject(
              new Error(
                `clawbar serve answered with something that is not JSON: ${line.slice(0, 120)}`,
              ),
            );
            return;
          }
          if ('progress' in response) {
            if (response.id === id) reportProgress(opts, response.progress);
            continue;
          }
          // Id 0 is the server's answer to a request it could not read (too large, not JSON):
          // it belongs to the request in flight, which would otherwise wait forever.
          if (response.id !== id && !(response.id === 0 && !response.ok)) continue;
          cleanup();
          if (response.ok) resolve(response.result);
          else reject(new ControlRequestError(response.error.message, response.error.code));
        }
      };
      const onClose = () => {
        cleanup();
        reject(new ServeClosedError());
      };
      const cleanup = () => {
        this.socket.off('data', onData);
        this.socket.off('close', onClose);
      };
      this.socket.on('data', onData);
      this.socket.on('close', onClose);
      this.socket.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }

  close(): void {
    this.socket.end();
  }
}

/** Passes on a progress frame whose shape checks out; anything else is not progress. */
function reportProgress(opts: RequestOptions, progress: unknown): void {
  if (!opts.onProgress || typeof progress !== 'object' || progress === null) return;
  const { stage, text } = progress as Record<string, unknown>;
  if (typeof stage !== 'string' || typeof text !== 'string') return;
  try {
    opts.onProgress({ stage: stage as ControlProgress['stage'], text });
  } catch {
    // Showing progress must never lose the answer.
  }
}

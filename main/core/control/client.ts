/** A client for the control socket, used by the CLI. */
import net from 'node:net';
import type {
  ControlErrorCode,
  ControlMethod,
  ControlParams,
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
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
          reject(new ServeNotRunningError(socketPath, { cause: err }));
        else reject(err);
      });
    });
  }

  /** Sends one request and waits for its answer. */
  request<M extends ControlMethod>(method: M, params: ControlParams<M>): Promise<unknown> {
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
        reject(new Error('clawbar serve closed the connection before answering (did it stop?)'));
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

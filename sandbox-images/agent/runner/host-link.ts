/**
 * The runner's side of the stdio link: writes frames to the host and pairs each
 * `model.request` and `host.call` with the reply frame that answers it.
 */
import { randomUUID } from 'node:crypto';
import {
  RunnerToHostSchema,
  encodeFrame,
  type HostCallName,
  type HostToRunner,
  type RunnerToHost,
} from '../../../main/core/agent/protocol.js';
import type { RunnerLog } from './log.js';
import type { HostCallReply } from './tools/index.js';

export type ModelRequest = Omit<
  Extract<RunnerToHost, { type: 'model.request' }>,
  'type' | 'requestId'
>;
export type ModelResult = Extract<HostToRunner, { type: 'model.result' }>;
type ReplyFrame = Extract<HostToRunner, { type: 'model.result' | 'model.error' | 'tool.result' }>;

/** The host answered a model request with `model.error`. */
export class ModelCallError extends Error {
  override readonly name = 'ModelCallError';
  /**
   * @param retryable the same request may succeed later (rate limit, overload, network).
   * @param retryAfterMs how long the API asked to wait before trying again, when it said.
   */
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

/** What the agent loop and the tools need from the host. */
export interface RunnerHost {
  /** Writes one frame to the host. */
  send(frame: RunnerToHost): void;
  /**
   * Sends a `model.request` and resolves with its `model.result`.
   * @throws {ModelCallError} when the host answers with `model.error`.
   * Rejects with the signal's reason when the signal aborts first.
   */
  requestModel(request: ModelRequest, signal?: AbortSignal): Promise<ModelResult>;
  /** Sends a `host.call` and resolves with the matching `tool.result`. */
  callHost(name: HostCallName, args: unknown, signal?: AbortSignal): Promise<HostCallReply>;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/** The stdio implementation of {@link RunnerHost}. */
export class HostLink implements RunnerHost {
  private readonly modelWaiters = new Map<string, Waiter<ModelResult>>();
  private readonly callWaiters = new Map<string, Waiter<HostCallReply>>();

  /**
   * @param writeLine writes one encoded frame (a JSON line) to the host, i.e. to stdout.
   */
  constructor(
    private readonly writeLine: (line: string) => void,
    private readonly log: RunnerLog,
  ) {}

  send(frame: RunnerToHost): void {
    const problem = this.trySend(frame);
    if (problem !== null) {
      this.log.error(problem);
      this.writeLine(encodeFrame({ type: 'error', message: clampMessage(problem) }));
    }
  }

  /**
   * Writes a frame unless it breaks the schema, in which case it returns why. The host would
   * reject such a frame (an oversized field, say), so it is better caught on the way out.
   */
  private trySend(frame: RunnerToHost): string | null {
    const checked = RunnerToHostSchema.safeParse(frame);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      return `runner bug: refused to send an invalid ${frame.type} frame (${issue?.path.join('.') || 'frame'}: ${issue?.message ?? 'bad shape'})`;
    }
    this.writeLine(encodeFrame(frame));
    return null;
  }

  /** Sends an `error` frame and logs the same text on stderr. */
  reportError(message: string, err?: unknown): void {
    this.log.error(message, err);
    this.send({ type: 'error', message: clampMessage(message) });
  }

  /**
   * Reports a frame from the host that failed to decode or validate, as an `error` frame with
   * code `bad_frame`: it tells the host that whatever the frame asked for will never happen.
   */
  reportBadFrame(message: string): void {
    this.log.error(message);
    this.send({ type: 'error', message: clampMessage(message), code: 'bad_frame' });
  }

  requestModel(request: ModelRequest, signal?: AbortSignal): Promise<ModelResult> {
    const requestId = `model-${randomUUID()}`;
    return this.awaitReply(this.modelWaiters, requestId, signal, () =>
      this.trySend({ type: 'model.request', requestId, ...request }),
    );
  }

  callHost(name: HostCallName, args: unknown, signal?: AbortSignal): Promise<HostCallReply> {
    const callId = `call-${randomUUID()}`;
    return this.awaitReply(this.callWaiters, callId, signal, () =>
      this.trySend({ type: 'host.call', callId, name, args }),
    );
  }

  /**
   * Hands a reply frame to the request waiting for it. A reply nobody waits for (a stale or
   * made-up id) is reported as an error frame and otherwise ignored.
   */
  deliver(frame: ReplyFrame): void {
    switch (frame.type) {
      case 'model.result':
      case 'model.error': {
        const waiter = this.modelWaiters.get(frame.requestId);
        if (!waiter)
          return this.reportError(`ignored ${frame.type} for unknown request ${frame.requestId}`);
        this.modelWaiters.delete(frame.requestId);
        if (frame.type === 'model.result') {
          waiter.resolve(frame);
        } else {
          const { message, retryable, retryAfterMs } = frame;
          waiter.reject(new ModelCallError(message, retryable, retryAfterMs ?? null));
        }
        return;
      }
      case 'tool.result': {
        const waiter = this.callWaiters.get(frame.callId);
        if (!waiter)
          return this.reportError(`ignored tool.result for unknown call ${frame.callId}`);
        this.callWaiters.delete(frame.callId);
        waiter.resolve({ ok: frame.ok, result: frame.result });
        return;
      }
      default: {
        const unreachable: never = frame;
        throw new Error(`unhandled reply ${String(unreachable)}`);
      }
    }
  }

  private awaitReply<T>(
    waiters: Map<string, Waiter<T>>,
    id: string,
    signal: AbortSignal | undefined,
    sendRequest: () => string | null,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = (): void => {
        waiters.delete(id);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      waiters.set(id, {
        resolve: (value) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(value);
        },
        reject: (reason) => {
          signal?.removeEventListener('abort', onAbort);
          reject(reason);
        },
      });
      // A request that could not be sent will never be answered: fail now rather than wait.
      const problem = sendRequest();
      if (problem !== null) {
        waiters.get(id)?.reject(new Error(problem));
        waiters.delete(id);
      }
    });
  }
}

/** The protocol caps error messages at 10,000 characters. */
export function clampMessage(message: string): string {
  return message.length > 10_000 ? `${message.slice(0, 9_990)}…` : message;
}

/**
 * Sending a model request again when the host answers it with a retryable `model.error` (a rate
 * limit, an overload, a dropped connection), inside the turn, so that a passing hiccup does not
 * fail the whole turn.
 *
 * Only the model request is sent again, each time under a new request id. Tools the turn has
 * already run are never replayed: their results are part of the request being re-sent.
 */
import {
  ModelCallError,
  type ModelRequest,
  type ModelResult,
  type RunnerHost,
} from './host-link.js';
import type { RunnerLog } from './log.js';

/** When and how long to wait before sending a failed model request again. */
export interface ModelRetryPolicy {
  /** Retries of one model request after retryable errors; 0 turns retrying off. @default 4 */
  maxRetries: number;
  /** The backoff before the first retry; it doubles for each later one. @default 2_000 */
  baseDelayMs: number;
  /**
   * The longest backoff before one retry. A longer wait the API asked for (`retryAfterMs`) is
   * still honoured, within {@link maxTotalWaitMs}.
   * @default 60_000
   */
  maxDelayMs: number;
  /**
   * The waiting allowed in total for one request. A retry whose wait would go past it is not
   * made: the turn fails with the last error instead.
   * @default 180_000 (3 minutes)
   */
  maxTotalWaitMs: number;
  /**
   * How far the random jitter moves a backoff, as a fraction of it (0.2: up to 20 % either
   * way), so that runners hit by the same outage do not all come back at the same moment.
   * @default 0.2
   */
  jitter: number;
  /**
   * Waits `ms`, and rejects with the signal's reason as soon as the signal aborts.
   * @default a timer
   */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  /** A number in [0, 1), for the jitter. @default Math.random */
  random(): number;
}

export const DEFAULT_MODEL_RETRY: ModelRetryPolicy = {
  maxRetries: 4,
  baseDelayMs: 2_000,
  maxDelayMs: 60_000,
  maxTotalWaitMs: 180_000,
  jitter: 0.2,
  sleep: abortableSleep,
  random: Math.random,
};

/**
 * The wait before retry number `retry` (from 1): an exponential backoff with jitter, capped at
 * `maxDelayMs`, and never shorter than what the API asked for.
 */
export function retryDelayMs(
  retry: number,
  retryAfterMs: number | null,
  policy: ModelRetryPolicy,
): number {
  const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  const spread = policy.jitter * (2 * policy.random() - 1);
  const jittered = Math.min(policy.maxDelayMs, Math.round(backoff * (1 + spread)));
  return Math.max(jittered, retryAfterMs ?? 0, 0);
}

/**
 * Sends a model request and resolves with its result, sending it again after a retryable
 * `model.error` as the policy allows. Each retry is logged.
 *
 * @throws {ModelCallError} at once when the error is not retryable; after the last retry, or
 *   when the next wait would pass `maxTotalWaitMs`, the last error with a note saying so.
 * Rejects with the signal's reason as soon as the signal aborts, a wait included.
 */
export async function requestModelWithRetry(
  host: RunnerHost,
  request: ModelRequest,
  signal: AbortSignal,
  policy: ModelRetryPolicy,
  log: RunnerLog,
): Promise<ModelResult> {
  let waitedMs = 0;
  for (let retry = 1; ; retry++) {
    try {
      return await host.requestModel(request, signal);
    } catch (err) {
      if (signal.aborted || !(err instanceof ModelCallError) || !err.retryable) throw err;
      const retriesMade = retry - 1;
      if (retriesMade >= policy.maxRetries) {
        if (retriesMade === 0) throw err;
        log.warn(`model call failed (${err.message}); giving up after ${retriesMade} retries`);
        throw withNote(err, `still failing after ${retriesMade} retries`);
      }
      const delayMs = retryDelayMs(retry, err.retryAfterMs, policy);
      if (waitedMs + delayMs > policy.maxTotalWaitMs) {
        const note = `not retried: waiting ${formatSeconds(delayMs)} more would pass the ${formatSeconds(policy.maxTotalWaitMs)} limit`;
        log.warn(`model call failed (${err.message}); ${note}`);
        throw withNote(err, note);
      }
      log.warn(
        `model call failed (${err.message}); retry ${retry} of ${policy.maxRetries} in ${formatSeconds(delayMs)}` +
          (err.retryAfterMs === null
            ? ''
            : ` (the API asked for ${formatSeconds(err.retryAfterMs)})`),
      );
      await policy.sleep(delayMs, signal);
      waitedMs += delayMs;
    }
  }
}

function withNote(err: ModelCallError, note: string): ModelCallError {
  return new ModelCallError(`${err.message} (${note})`, err.retryable, err.retryAfterMs);
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/** Waits `ms` unless the signal aborts first, in which case it rejects with the signal's reason. */
function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

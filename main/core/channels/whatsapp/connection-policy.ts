/**
 * What the WhatsApp channel does after its socket closes, by the disconnect's status code.
 * Pure: it holds only counters, and takes the time and randomness it needs as arguments and
 * injected functions, so the whole reconnect schedule is testable without timers.
 *
 * Peers reconnect at once on every close, and a flapping network or a server in trouble turns
 * that into a storm of connection attempts (and, at WhatsApp, a risk to the account). Here:
 *
 * - 515 restartRequired (WhatsApp asks for it right after pairing): reconnect at once, but only a
 *   few times in a row; a server that keeps answering 515 falls into the backoff below.
 * - 408, 428, 500, 503, any other code and plain network errors: exponential backoff with
 *   "equal jitter" (half fixed, half random), capped, and reset once a connection has stayed up
 *   for a stable spell. The fixed half gives a hard floor, so attempts per minute are bounded.
 * - 440 connectionReplaced: another WhatsApp Web client took the session; fighting it would
 *   make the two kick each other off forever, so stop.
 * - 401 loggedOut, 403 forbidden, 411 multideviceMismatch: the credentials are no good; they
 *   are cleared and a person must pair again.
 */

/** WhatsApp's disconnect status codes that the policy names (Baileys' `DisconnectReason`). */
export const DisconnectCode = {
  connectionLost: 408,
  connectionClosed: 428,
  connectionReplaced: 440,
  loggedOut: 401,
  forbidden: 403,
  multideviceMismatch: 411,
  badSession: 500,
  unavailableService: 503,
  restartRequired: 515,
} as const;

export interface ReconnectPolicyOptions {
  /** The first backoff step. @default 1000 */
  baseDelayMs: number;
  /** The longest wait between two attempts. @default 60000 */
  maxDelayMs: number;
  /** A connection open this long resets the backoff. @default 60000 */
  stableAfterMs: number;
  /** 515s in a row that reconnect at once before they back off too. @default 3 */
  maxImmediateRestarts: number;
}

export const DEFAULT_RECONNECT_POLICY: ReconnectPolicyOptions = {
  baseDelayMs: 1_000,
  maxDelayMs: 60_000,
  stableAfterMs: 60_000,
  maxImmediateRestarts: 3,
};

/** What to do about one close. */
export type DisconnectDecision =
  | {
      action: 'reconnect';
      /** Wait this long first; 0 means at once. */
      delayMs: number;
      code: number | undefined;
      reason: string;
    }
  /** Do not reconnect; the session was taken over (440). */
  | { action: 'stop'; code: number; reason: string }
  /** Clear the credentials and wait for a person to pair again. */
  | { action: 'logged-out'; code: number; reason: string };

export const REPLACED_REASON =
  'another WhatsApp Web client took over this session; run `clawbar pair` or restart Clawbar to reconnect';

export const LOGGED_OUT_REASON =
  'WhatsApp logged this device out; run `clawbar pair` to link it again';

/**
 * The status code of a close, from Baileys' `lastDisconnect.error` (a Boom, whose
 * `output.statusCode` holds it), or undefined for a plain error or none.
 */
export function disconnectCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const output = (error as { output?: { statusCode?: unknown } }).output;
  const code = output?.statusCode;
  return typeof code === 'number' && Number.isInteger(code) ? code : undefined;
}

/** Words for a close, for the log, `status` and the tray. */
export function describeDisconnect(code: number | undefined, error?: unknown): string {
  const message = error instanceof Error && error.message ? error.message : undefined;
  switch (code) {
    case DisconnectCode.restartRequired:
      return 'WhatsApp asked for a restart';
    case DisconnectCode.connectionLost:
      return `connection lost or timed out${message ? ` (${message})` : ''}`;
    case DisconnectCode.connectionClosed:
      return `connection closed${message ? ` (${message})` : ''}`;
    case DisconnectCode.badSession:
      return `bad session${message ? ` (${message})` : ''}`;
    case DisconnectCode.unavailableService:
      return 'WhatsApp is unavailable';
    case DisconnectCode.connectionReplaced:
      return REPLACED_REASON;
    case DisconnectCode.loggedOut:
    case DisconnectCode.forbidden:
    case DisconnectCode.multideviceMismatch:
      return LOGGED_OUT_REASON;
    default:
      return message ?? (code === undefined ? 'connection failed' : `disconnected (${code})`);
  }
}

/**
 * The reconnect schedule of one channel: tell it when the connection opens and ask it what to
 * do on each close.
 */
export class ReconnectPolicy {
  private readonly options: ReconnectPolicyOptions;
  /** Backoff steps taken since the last stable connection. */
  private failures = 0;
  /** 515s answered at once since the last stable connection. */
  private immediateRestarts = 0;
  private openedAt: number | null = null;

  constructor(
    options: Partial<ReconnectPolicyOptions> = {},
    private readonly random: () => number = Math.random,
  ) {
    this.options = { ...DEFAULT_RECONNECT_POLICY, ...options };
  }

  /** The connection opened at `now`. */
  opened(now: number): void {
    this.openedAt = now;
  }

  /** Forgets the schedule: a person asked to connect (pairing, a restart from the tray). */
  reset(): void {
    this.failures = 0;
    this.immediateRestarts = 0;
    this.openedAt = null;
  }

  /** Backoff steps taken since the last stable connection. */
  get attempts(): number {
    return this.failures;
  }

  /** Decides what to do about a close at `now` with this status code (undefined: unknown). */
  closed(code: number | undefined, now: number, error?: unknown): DisconnectDecision {
    if (this.openedAt !== null && now - this.openedAt >= this.options.stableAfterMs) {
      this.failures = 0;
      this.immediateRestarts = 0;
    }
    this.openedAt = null;
    const reason = describeDisconnect(code, error);
    switch (code) {
      case DisconnectCode.connectionReplaced:
        return { action: 'stop', code, reason };
      case DisconnectCode.loggedOut:
      case DisconnectCode.forbidden:
      case DisconnectCode.multideviceMismatch:
        this.reset();
        return { action: 'logged-out', code, reason };
      case DisconnectCode.restartRequired:
        if (this.immediateRestarts < this.options.maxImmediateRestarts) {
          this.immediateRestarts += 1;
          return { action: 'reconnect', delayMs: 0, code, reason };
        }
        return { action: 'reconnect', delayMs: this.nextDelay(), code, reason };
      default:
        return { action: 'reconnect', delayMs: this.nextDelay(), code, reason };
    }
  }

  /**
   * The wait before the next attempt: half of the capped exponential step for sure, the other
   * half at random ("equal jitter"). The sure half bounds the attempts per minute; the random
   * half keeps many clients that dropped together from all coming back at once.
   */
  private nextDelay(): number {
    const { baseDelayMs, maxDelayMs } = this.options;
    const step = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(this.failures, 30));
    this.failures += 1;
    const random = Math.min(1, Math.max(0, this.random()));
    return Math.round(step / 2 + (step / 2) * random);
  }
}

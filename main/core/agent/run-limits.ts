/**
 * The amounts one run of an agent may use, enforced on the host.
 *
 * Any process in a container can write protocol frames to the runner's stdout, so nothing the
 * container says about itself is a limit: the runner's own caps (its model-call cap, its
 * request trimming) keep a well-behaved agent inside these, and the host enforces them for
 * the agent that is not well-behaved (issue 6). Past a limit the run is stopped once, with a
 * reason the chat is told, and it is not retried: a runaway turn would only run away again.
 */
import { MAX_FRAME_BYTES } from './protocol.js';

/**
 * The longest text one chat message may carry, in UTF-16 code units (a JavaScript string's
 * length). The same bound as `send_message`'s `text` in the protocol's `HostCallArgsSchemas`,
 * so a reply and a sent message are held to one rule.
 */
export const MAX_CHAT_MESSAGE_CHARS = 65_536;

/** Limits on one run and on each of its turns. Every field is a positive whole number. */
export interface RunLimits {
  /**
   * `output` frames (replies for the chat) one turn may send. The runner sends one per turn,
   * its final answer; more than a few is a flood.
   * @default 20
   */
  maxRepliesPerTurn: number;
  /**
   * UTF-8 bytes of all of one turn's `output` texts together, as the container sent them.
   * @default 262144 (256 KiB)
   */
  maxReplyBytesPerTurn: number;
  /**
   * Characters in one `output` frame's text: a chat message's maximum.
   * @default MAX_CHAT_MESSAGE_CHARS (65,536)
   */
  maxOutputChars: number;
  /**
   * Model calls the API answered in one turn (a `model.result` went back to the container).
   * The runner stops a turn itself after 50; a request beyond this many is not made and the
   * run is stopped. Calls that failed (a rate limit, an overload) do not count here, so a
   * turn that is honest but meets a storm of 429s is not stopped for its retries: they count
   * against {@link maxModelAttemptsPerTurn}.
   * @default 60
   */
  maxModelCallsPerTurn: number;
  /**
   * Model requests the host takes in one turn, whatever became of them: answered, failed at
   * the API, refused by the host or the broker. It bounds the retries that
   * {@link maxModelCallsPerTurn} leaves out. The runner makes at most 50 calls a turn and
   * retries each at most 4 times (250 requests), so an honest turn stays below it.
   * @default 300
   */
  maxModelAttemptsPerTurn: number;
  /**
   * The JSON size of one model request (system prompt, messages and tools). A larger request
   * is answered with a `model.error` the runner reports as a failed turn; it never reaches the
   * API. It must stay below the protocol's frame limit, or it would never apply.
   * @default 2097152 (2 MiB)
   */
  maxRequestBytes: number;
  /**
   * The host's cap on a request's `maxTokens`: the broker is asked for the smaller of the
   * request's value and this. The runner asks for 8192.
   * @default 8192
   */
  maxTokens: number;
  /**
   * `error` frames (without a code) one turn may send. The runner sends one when a turn fails
   * and one for each warning, a handful at most; each is logged, so a flood of them would fill
   * the log. An `error` frame outside a turn counts as a malformed frame instead.
   * @default 20
   */
  maxErrorFramesPerTurn: number;
  /**
   * `host.call` frames one turn may make (every host tool together). A tool answer is written
   * to the container's stdin whether or not it reads it, so an unbounded number of calls would
   * be an unbounded buffer on the host.
   * @default 100
   */
  maxHostCallsPerTurn: number;
  /**
   * How long one turn may take from its start, however busy it looks. Progress resets the
   * silence timeout (`hardTimeoutMs`), never this.
   * @default 1800000 (30 minutes)
   */
  turnWallClockMs: number;
  /**
   * How long one run (one container) may live. Past it the run takes no new turn: the turn
   * under way finishes, the container stops, and waiting messages get a fresh run.
   * @default 7200000 (2 hours)
   */
  runWallClockMs: number;
  /**
   * `send_message` calls one turn may make; past it the call is refused with a tool error the
   * model can read, and nothing is queued.
   * @default 5
   */
  maxSendsPerTurn: number;
  /**
   * `send_message` calls one group may make in any 60 seconds, across its turns and runs.
   * @default 10
   */
  maxSendsPerMinute: number;
}

export const DEFAULT_RUN_LIMITS: Readonly<RunLimits> = Object.freeze({
  maxRepliesPerTurn: 20,
  maxReplyBytesPerTurn: 256 * 1024,
  maxOutputChars: MAX_CHAT_MESSAGE_CHARS,
  maxModelCallsPerTurn: 60,
  maxModelAttemptsPerTurn: 300,
  maxErrorFramesPerTurn: 20,
  maxRequestBytes: 2 * 1024 * 1024,
  maxTokens: 8192,
  maxHostCallsPerTurn: 100,
  turnWallClockMs: 30 * 60_000,
  runWallClockMs: 2 * 60 * 60_000,
  maxSendsPerTurn: 5,
  maxSendsPerMinute: 10,
});

/**
 * The defaults with `overrides` applied, each checked.
 * @throws {RangeError} when a value is not a positive whole number, or `maxRequestBytes` is
 *   not below the protocol's frame limit; the message names the setting.
 */
export function resolveRunLimits(overrides: Partial<RunLimits> = {}): RunLimits {
  const limits: RunLimits = { ...DEFAULT_RUN_LIMITS };
  for (const key of Object.keys(DEFAULT_RUN_LIMITS) as Array<keyof RunLimits>) {
    const value = overrides[key];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`run limit ${key} must be a whole number of at least 1, got ${value}`);
    }
    limits[key] = value;
  }
  if (limits.maxRequestBytes >= MAX_FRAME_BYTES) {
    throw new RangeError(
      `run limit maxRequestBytes must be below the ${MAX_FRAME_BYTES}-byte frame limit, got ${limits.maxRequestBytes}`,
    );
  }
  return limits;
}

/** Which limit or deadline stopped a run. */
export type LimitName =
  | keyof RunLimits
  /** `hardTimeoutMs`: no progress for too long. */
  | 'silence'
  /**
   * A frame no well-behaved runner sends (two model calls at once, a call outside a turn), or
   * too many malformed frames.
   */
  | 'protocol';

/**
 * A run was stopped for going past one of the host's limits or deadlines, or for breaking the
 * protocol in a way only a hostile or broken runner does. The message is written for the chat:
 * "Sorry, I could not answer that: <message>".
 */
export class RunLimitError extends Error {
  constructor(
    readonly limit: LimitName,
    message: string,
  ) {
    super(message);
    this.name = 'RunLimitError';
  }
}

/** A byte count for people: "256 KiB", "2 MiB", "900 bytes". */
export function describeBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** A duration for people, in its largest whole unit: "2 h", "30 min", "45 s", "300 ms". */
export function describeDuration(ms: number): string {
  if (ms >= 3_600_000 && ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms >= 1_000 && ms % 1_000 === 0) return `${ms / 1_000} s`;
  return `${ms} ms`;
}

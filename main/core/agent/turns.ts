/**
 * Turn sources: what an {@link AgentRun} works on, and how each turn is made durable.
 *
 * A run does not know whether it answers chat messages or runs a scheduled task. It asks its
 * source for the next turn (a prompt), runs it, and hands the result to that turn's `commit`,
 * which writes the replies to the outbox together with the source's own bookkeeping in one
 * transaction: the cursor move for messages, the run record for a task, and the transcript
 * when the turn belongs to the group's conversation.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import type { RunKill, RunOutcome } from '../queue/group-queue.js';
import { pendingTurn } from '../router.js';
import { ImageMissingError } from '../sandbox/runtime.js';
import type { Group, OutboxItem, Store, TokenUsage, TurnAttempt } from '../store/index.js';
import { trimConversation } from './conversation.js';
import { ModelError, type ModelErrorKind } from './model-errors.js';
import type { MessageParam } from './protocol.js';

/** What a finished turn produced, from the host's own records. */
export interface TurnResult {
  turnId: string;
  /** Text for the chat, already cleaned of `<internal>` notes. */
  replies: string[];
  /**
   * The turn's messages to append to the transcript, already checked by the host against its
   * own records; null when it refused them (the transcript then stays as it was).
   */
  messages: MessageParam[] | null;
  /**
   * Summed from the model broker's answers during the turn, never from the container; for
   * reports only (the run log, a task's run record). A commit does not record it: the core
   * recorded each call's usage as the API answered, failed turns' calls included.
   */
  usage: TokenUsage;
  now: number;
}

/** One turn, as a source plans it. */
export interface PlannedTurn {
  prompt: string;
  /** For messages: the last message seq the turn answers (what `send --wait` waits for). */
  throughSeq: number | null;
  /** Makes the turn durable in one transaction; returns what it queued for delivery. */
  commit(result: TurnResult): OutboxItem[];
  /**
   * The turn can never succeed as it stands (its prompt cannot be sent, the agent gave up on
   * it): record it as done with a notice to the chat, in one transaction, so the group goes
   * on with its next message instead of retrying this one.
   */
  skip(turnId: string, reason: string, now: number): OutboxItem[];
  /**
   * The prompt has been handed to the container: from now until the turn is closed, a run that
   * ends (or a host that dies) counts as a failed attempt at its messages. Not called when the
   * container never got the prompt, so an engine that is down costs no attempt. Never throws.
   */
  began?(now: number): void;
}

/** How a run over a source ended, as the orchestrator tells the source. */
export interface RunEnding {
  outcome: RunOutcome;
  /**
   * The queue killed the run, in the middle of its turn or not: the user stopped it
   * (`clawbar groups stop`), or Clawbar shut down while it was still busy. Neither is the
   * messages' fault. Null when the run ended by itself, which includes dying with the host:
   * then nothing is told at all, and the attempt stays counted.
   */
  killedBy: RunKill | null;
  now: number;
}

export interface TurnSource {
  readonly kind: 'messages' | 'task';
  /** Whether messages stored while the run is alive may become turns of it. */
  readonly takesMessages: boolean;
  /** The conversation the container resumes; empty for a fresh one. */
  history(): MessageParam[];
  /**
   * Forgets the stored conversation that {@link history} resumes, so the next run starts
   * fresh: the model API refused a request that carried it, and every later request carrying
   * it could be refused the same way. Absent when the source keeps no conversation. May throw
   * (a store error); the run logs it.
   */
  resetHistory?(now: number): void;
  /**
   * Called once by the run before its container starts, and awaited: keeps the stored
   * conversation resumable (compaction.ts may summarise its old turns through the model). It
   * must stop early when `signal` aborts (the run was stopped) and never throw. Absent when
   * the source has nothing to prepare.
   */
  prepare?(signal: AbortSignal): Promise<void>;
  /** The next turn, or null when there is nothing (more) to do. */
  next(): PlannedTurn | null;
  /**
   * The run over this source has ended: settle what a turn it began left open. Called once,
   * by the orchestrator. Never throws.
   */
  runEnded?(ending: RunEnding): void;
}

/**
 * How many times the messages after one cursor position are handed to an agent, without the
 * turn being closed, before they are given up (counted in the database: `turn_attempts`).
 *
 * Three, because this is the guard against what the queue's retries cannot see: a message
 * whose run takes the host down is queued again at every restart, and the queue's failure
 * count starts from zero each time. Three crashes are enough to tell a poisoned message from
 * bad luck, and few enough that serve is back to answering within a few restarts. Within one
 * process the queue's backoff (5 s, 10 s, … DESIGN.md §5) is cut short by it for a turn the
 * container did receive: its third failure ends the tries. Failures before the prompt reaches
 * the container (an engine that is down, an image that is missing) count nothing, so the
 * queue's own retries and give-up still handle those.
 */
export const MAX_TURN_ATTEMPTS = 3;

export interface MessageTurnsDeps {
  store: Store;
  groupJid: string;
  /** IANA zone for the prompt's times. */
  timezone: string;
  /** @default MAX_PROMPT_BYTES */
  maxPromptBytes?: number;
  /**
   * Planning gave up on messages whose attempts were spent: their notice is queued and the
   * cursor moved past them, through `throughSeq` (the last message the attempts carried). The
   * orchestrator wakes the outbox and announces the closed turn, as it does for a turn a run
   * closed.
   */
  onGaveUp?(turnId: string, throughSeq: number): void;
  /**
   * Keeps the group's transcript within budget: compaction before the run (`prepare`), and a
   * hard trim that archives what it drops at each commit. Without it, a commit trims old turns
   * outright (trimConversation).
   */
  upkeep?: TranscriptUpkeep;
  /** @default Date.now */
  now?: () => number;
  log?: Logger;
}

/** What a turn source needs of the transcript's keeper (compaction.ts `TranscriptCompactor`). */
export interface TranscriptUpkeep {
  prepare(signal: AbortSignal): Promise<unknown>;
  /** The transcript kept under the hard limit; sync, for the commit. */
  trimForCommit(transcript: MessageParam[]): MessageParam[];
}

/**
 * Turns that answer a group's chat: each covers every message since the cursor, and its
 * commit moves the cursor past them with the replies. Nothing while the group is paused.
 *
 * Each turn whose prompt reached a container counts as an attempt at the messages after the
 * cursor, until the turn is closed. Once {@link MAX_TURN_ATTEMPTS} are spent, planning gives
 * those messages up with a notice instead of running them again, so a message whose runs keep
 * failing, or keep taking the host down, cannot crash-loop serve. An attempt that ended for a
 * reason that is not the messages' fault is taken back (see `runEnded`).
 */
export function messageTurns(deps: MessageTurnsDeps): TurnSource {
  const { store, groupJid, timezone } = deps;
  const clock = deps.now ?? Date.now;
  /** The cursor of the last turn this source handed to a container. */
  let begunAfter: number | null = null;

  const plan = (group: Group) =>
    pendingTurn(store, group, {
      timezone,
      ...(deps.maxPromptBytes ? { maxBytes: deps.maxPromptBytes } : {}),
    });

  /**
   * Closes the messages the spent attempts carried with a notice: `run` when the pending
   * messages may be tried, `gave-up` when those were closed, `stuck` when closing them failed
   * (logged; they are not run again either, and the next planning tries the give-up once more).
   *
   * Only through the last attempt's final message: what arrived after it was never handed to
   * an agent, so it is planned as a turn of its own, not swallowed by another message's
   * failures.
   */
  const giveUpIfSpent = (): 'run' | 'gave-up' | 'stuck' => {
    const attempt = store.turnAttemptOf(groupJid);
    if (!attempt || attempt.attempts < MAX_TURN_ATTEMPTS) return 'run';
    if (attempt.afterSeq !== store.cursorOf(groupJid)) return 'run';
    const { throughSeq } = attempt;
    const turnId = `gave-up:${randomUUID()}`;
    deps.log?.warn(
      { group: groupJid, attempts: attempt.attempts, lastError: attempt.lastError },
      'giving up on messages whose runs kept failing',
    );
    try {
      store.skipTurn({ groupJid, throughSeq, turnId, notice: giveUpNotice(attempt), now: clock() });
    } catch (err) {
      deps.log?.error({ group: groupJid, err }, 'could not record the give-up');
      return 'stuck';
    }
    deps.onGaveUp?.(turnId, throughSeq);
    return 'gave-up';
  };

  return {
    kind: 'messages',
    takesMessages: true,
    history: () => store.transcriptOf(groupJid, deps.log),
    resetHistory: (at) => store.setTranscript(groupJid, [], at),
    ...(deps.upkeep
      ? {
          prepare: async (signal: AbortSignal) => {
            await deps.upkeep?.prepare(signal);
          },
        }
      : {}),
    next(): PlannedTurn | null {
      const group = store.getGroup(groupJid);
      if (!group || group.paused) return null;
      let pending = plan(group);
      if (pending) {
        const verdict = giveUpIfSpent();
        if (verdict === 'stuck') return null;
        // Only what arrived after the given-up messages is left, if anything.
        if (verdict === 'gave-up') pending = plan(group);
      }
      if (!pending) return null;
      const { throughSeq } = pending;
      const afterSeq = store.cursorOf(groupJid);
      return {
        prompt: pending.prompt,
        throughSeq,
        began: (at) => {
          try {
            store.recordTurnAttempt(groupJid, { afterSeq, throughSeq }, at);
            begunAfter = afterSeq;
          } catch (err) {
            deps.log?.error({ group: groupJid, err }, 'could not count a turn attempt');
          }
        },
        commit: (result) =>
          store.commitTurn({
            groupJid,
            throughSeq,
            turnId: result.turnId,
            replies: result.replies.map((text) => ({ chatJid: groupJid, text })),
            transcript: extendedTranscript(store, groupJid, result.messages, deps.upkeep),
            now: result.now,
          }),
        skip: (turnId, reason, now) =>
          store.skipTurn({
            groupJid,
            throughSeq,
            turnId,
            notice: `Sorry, I could not answer that: ${reason}`,
            now,
          }),
      };
    },
    runEnded({ outcome, killedBy, now: at }) {
      if (begunAfter === null) return;
      try {
        // A closed turn took its count with it; a count at another cursor is not this run's.
        const attempt = store.turnAttemptOf(groupJid);
        if (!attempt || attempt.afterSeq !== begunAfter) return;
        const excuse = killedBy ?? (outcome.ok ? null : notTheMessagesFault(outcome));
        if (excuse !== null) {
          store.forgiveTurnAttempt(groupJid, begunAfter, at);
          deps.log?.info({ group: groupJid, excuse }, 'the open turn attempt is not counted');
        } else if (!outcome.ok) {
          store.recordTurnError(groupJid, begunAfter, outcome.error.message, at);
        }
      } catch (err) {
        deps.log?.error({ group: groupJid, err }, 'could not settle a turn attempt');
      }
    },
  };
}

/**
 * Model failures a message cannot cause: the key, the account, the configured model or base
 * URL, and the API's own availability. Each would fail any message the same way, so counting
 * them would give up a new user's first messages before a key is set. A request the API
 * refused (`bad_request`), a server error, a timeout, a broken stream, and anything the host
 * refused still count: those can be the request's doing.
 */
const BLAMELESS_MODEL_ERRORS: ReadonlySet<ModelErrorKind> = new Set<ModelErrorKind>([
  'no_key',
  'auth',
  'billing',
  'permission',
  'not_found',
  'rate_limit',
  'overloaded',
  'connection',
]);

/** How deep the cause chain of a run's error is searched; the chains the host builds are short. */
const MAX_CAUSE_DEPTH = 8;

/**
 * Why a failed run is not its messages' fault, or null when it may be. Read from the error's
 * cause chain, which the host built itself (the model broker's {@link ModelError}, the
 * runtime's errors): a container sends only text and cannot put an error object there.
 */
function notTheMessagesFault(outcome: Extract<RunOutcome, { ok: false }>): string | null {
  if (outcome.failure === 'not-ready')
    return 'the machine was not ready to run agents (engine or image)';
  let current: unknown = outcome.error;
  for (let depth = 0; current instanceof Error && depth < MAX_CAUSE_DEPTH; depth++) {
    if (current instanceof ModelError && BLAMELESS_MODEL_ERRORS.has(current.kind)) {
      return `the model API failed for a reason of its own or of the setup (${current.kind})`;
    }
    if (current instanceof ImageMissingError) return 'the agent image is missing';
    current = current.cause;
  }
  return null;
}

/** What the chat is told when its messages are given up; the reason is the last run's error. */
function giveUpNotice(attempt: TurnAttempt): string {
  const reason =
    attempt.lastError?.trim().replace(/[\s.]+$/, '') ||
    'no run lived to say why (Clawbar itself may have stopped each time)';
  return `Sorry, I gave up on your last message after ${attempt.attempts} attempts: ${reason}.`;
}

export interface TaskTurnDeps {
  store: Store;
  group: Group;
  prompt: string;
  /**
   * The group's conversation to continue (context mode `group`), its turn then joining the
   * stored transcript; or null for an isolated run, which starts fresh and saves nothing.
   */
  history: MessageParam[] | null;
  timezone: string;
  /**
   * Whether the turn's final replies go to the chat. When false they are kept only in the
   * run's record (what the agent sent with send_message meanwhile was posted anyway).
   * @default true
   */
  postResult?: boolean;
  /**
   * Extra bookkeeping in the commit's transaction (the scheduler records the run). It runs
   * inside `store.db.transaction`, so a throw rolls the replies back too.
   */
  onCommit?(result: TurnResult, items: OutboxItem[]): void;
  onSkip?(reason: string): void;
  /**
   * For a run that continues the group's conversation: compaction before the run, and the
   * archiving trim at commit, as for chat turns. The conversation is then read after the
   * compaction, not from `history`, which only says that there is one to continue.
   */
  upkeep?: TranscriptUpkeep;
}

/**
 * One scheduled task as a single turn. Its replies go to the group's chat; it takes no chat
 * messages, which wait until it ends (DESIGN.md §5).
 */
export function taskTurn(deps: TaskTurnDeps): TurnSource {
  const { store, group } = deps;
  let given = false;
  return {
    kind: 'task',
    takesMessages: false,
    history: () =>
      deps.history === null ? [] : deps.upkeep ? store.transcriptOf(group.jid) : deps.history,
    ...(deps.history !== null && deps.upkeep
      ? {
          prepare: async (signal: AbortSignal) => {
            await deps.upkeep?.prepare(signal);
          },
        }
      : {}),
    ...(deps.history !== null
      ? { resetHistory: (now: number) => store.setTranscript(group.jid, [], now) }
      : {}),
    next(): PlannedTurn | null {
      if (given) return null;
      given = true;
      return {
        prompt: deps.prompt,
        throughSeq: null,
        commit: (result) =>
          store.db.transaction(() => {
            const items =
              deps.postResult === false
                ? []
                : result.replies.map((text) =>
                    store.enqueueOutbound(group.jid, text, result.turnId, result.now),
                  );
            if (deps.history !== null) {
              const transcript = extendedTranscript(store, group.jid, result.messages, deps.upkeep);
              if (transcript !== null) store.setTranscript(group.jid, transcript, result.now);
            }
            deps.onCommit?.(result, items);
            return items;
          })(),
        skip: (turnId, reason, now) => {
          deps.onSkip?.(reason);
          return [
            store.enqueueOutbound(
              group.jid,
              `A scheduled task could not run: ${reason}`,
              turnId,
              now,
              'notice',
            ),
          ];
        },
      };
    },
  };
}

/**
 * The group's stored transcript with a turn's messages appended, trimmed to its budget (by
 * `upkeep`, which archives what it drops, when there is one); null when the host refused the
 * turn's messages, so the stored transcript stays as it was.
 */
function extendedTranscript(
  store: Store,
  groupJid: string,
  messages: MessageParam[] | null,
  upkeep?: TranscriptUpkeep,
): MessageParam[] | null {
  if (messages === null) return null;
  const transcript = [...store.transcriptOf(groupJid), ...messages];
  return upkeep ? upkeep.trimForCommit(transcript) : trimConversation(transcript);
}

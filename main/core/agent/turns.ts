/**
 * Turn sources: what an {@link AgentRun} works on, and how each turn is made durable.
 *
 * A run does not know whether it answers chat messages or runs a scheduled task. It asks its
 * source for the next turn (a prompt), runs it, and hands the result to that turn's `commit`,
 * which writes the replies to the outbox together with the source's own bookkeeping in one
 * transaction: the cursor move for messages, the run record for a task.
 */
import { pendingTurn } from '../router.js';
import type { Group, OutboxItem, Store, TokenUsage } from '../store/index.js';
import { dayInZone } from '../time.js';

/** What a finished turn produced, from the host's own records. */
export interface TurnResult {
  turnId: string;
  /** Text for the chat, already cleaned of `<internal>` notes. */
  replies: string[];
  sessionRef: string | null;
  /** Summed from the model broker's answers during the turn, never from the container. */
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
}

export interface TurnSource {
  readonly kind: 'messages' | 'task';
  /** Whether messages stored while the run is alive may become turns of it. */
  readonly takesMessages: boolean;
  /** The conversation the container resumes, or null for a fresh one. */
  sessionRef(): string | null;
  /** The next turn, or null when there is nothing (more) to do. */
  next(): PlannedTurn | null;
}

export interface MessageTurnsDeps {
  store: Store;
  groupJid: string;
  /** IANA zone for the prompt's times and the usage day. */
  timezone: string;
  /** @default MAX_PROMPT_BYTES */
  maxPromptBytes?: number;
}

/**
 * Turns that answer a group's chat: each covers every message since the cursor, and its
 * commit moves the cursor past them with the replies. Nothing while the group is paused.
 */
export function messageTurns(deps: MessageTurnsDeps): TurnSource {
  const { store, groupJid, timezone } = deps;
  return {
    kind: 'messages',
    takesMessages: true,
    sessionRef: () => store.sessionOf(groupJid),
    next(): PlannedTurn | null {
      const group = store.getGroup(groupJid);
      if (!group || group.paused) return null;
      const pending = pendingTurn(store, group, {
        timezone,
        ...(deps.maxPromptBytes ? { maxBytes: deps.maxPromptBytes } : {}),
      });
      if (!pending) return null;
      const { throughSeq } = pending;
      return {
        prompt: pending.prompt,
        throughSeq,
        commit: (result) =>
          store.commitTurn({
            groupJid,
            throughSeq,
            turnId: result.turnId,
            replies: result.replies.map((text) => ({ chatJid: groupJid, text })),
            sessionRef: result.sessionRef,
            usage: result.usage,
            day: dayInZone(result.now, timezone),
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
  };
}

export interface TaskTurnDeps {
  store: Store;
  group: Group;
  prompt: string;
  /** The session to continue (context mode `group`), or null for an isolated run. */
  sessionRef: string | null;
  timezone: string;
  /**
   * Extra bookkeeping in the commit's transaction (the scheduler records the run). It runs
   * inside `store.db.transaction`, so a throw rolls the replies back too.
   */
  onCommit?(result: TurnResult, items: OutboxItem[]): void;
  onSkip?(reason: string): void;
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
    sessionRef: () => deps.sessionRef,
    next(): PlannedTurn | null {
      if (given) return null;
      given = true;
      return {
        prompt: deps.prompt,
        throughSeq: null,
        commit: (result) =>
          store.db.transaction(() => {
            const items = result.replies.map((text) =>
              store.enqueueOutbound(group.jid, text, result.turnId, result.now),
            );
            store.addUsage(group.jid, dayInZone(result.now, deps.timezone), result.usage);
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

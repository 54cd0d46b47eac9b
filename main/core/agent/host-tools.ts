/**
 * Host tools: what an agent may ask the host to do (`host.call` frames).
 *
 * Authorization comes only from the run's binding (the group the container was started
 * for), never from fields in the payload. A non-main group may message only its own chat.
 *
 * Amounts are bound to the run too: `send_message` is rate-limited per turn and per minute
 * per group, so a hijacked agent cannot flood a chat. A call past a limit gets a tool error
 * the model can read, and nothing is queued.
 */
import { HostCallArgsSchemas, type HostCallName } from './protocol.js';
import { resolveRunLimits, type RunLimits } from './run-limits.js';
import type { Logger } from '../logger.js';
import type { OutboxWorker } from '../outbox.js';
import type { Store } from '../store/index.js';

/**
 * How long send_message waits to say "sent" before it answers "queued". A slow or closed
 * channel must never hold a turn open.
 * @default 2000
 */
export const SEND_CONFIRM_MS = 2_000;

/** The identity a container's session is bound to, fixed when the host starts it. */
export interface RunBinding {
  groupJid: string;
  chatJid: string;
  folder: string;
  isMain: boolean;
  turnId: string;
}

export interface HostCallResult {
  ok: boolean;
  result: string;
}

export interface HostToolsDeps {
  store: Store;
  outbox: Pick<OutboxWorker, 'notify' | 'whenSettled'>;
  formatOutbound(text: string): string | null;
  now(): number;
  log: Logger;
  /** @default SEND_CONFIRM_MS */
  sendConfirmMs?: number;
  /** Only `maxSendsPerTurn` and `maxSendsPerMinute` apply here. @default DEFAULT_RUN_LIMITS */
  limits?: Partial<RunLimits>;
}

/** The window `maxSendsPerMinute` counts over. */
const SEND_WINDOW_MS = 60_000;

/** What one group has sent lately, for the rate limits. */
interface SendHistory {
  /** The turn the count belongs to; a new turn starts from zero. */
  turnId: string;
  sentThisTurn: number;
  /** When each of the group's latest sends was queued, oldest first; never longer than the per-minute limit. */
  recent: number[];
}

export class HostTools {
  private readonly log: Logger;
  private readonly maxSendsPerTurn: number;
  private readonly maxSendsPerMinute: number;
  /** Per group; one small entry for each group that ever sent, so it stays bounded. */
  private readonly sends = new Map<string, SendHistory>();

  /** @throws {RangeError} when a limit in `deps.limits` is not a positive whole number */
  constructor(private readonly deps: HostToolsDeps) {
    this.log = deps.log.child({ mod: 'host-tools' });
    const limits = resolveRunLimits(deps.limits);
    this.maxSendsPerTurn = limits.maxSendsPerTurn;
    this.maxSendsPerMinute = limits.maxSendsPerMinute;
  }

  /** Runs one host call for the bound run. Never throws: failures become `ok: false`. */
  async call(binding: RunBinding, name: string, rawArgs: unknown): Promise<HostCallResult> {
    if (!isHostCall(name)) return { ok: false, result: `unknown host call "${name}"` };
    const parsed = HostCallArgsSchemas[name].safeParse(rawArgs);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return {
        ok: false,
        result: `bad arguments for ${name}: ${issue?.path.join('.') || 'args'}: ${issue?.message}`,
      };
    }
    try {
      switch (name) {
        case 'send_message':
          return await this.sendMessage(binding, parsed.data);
        default: {
          const unreachable: never = name;
          return { ok: false, result: `unhandled host call ${String(unreachable)}` };
        }
      }
    } catch (err) {
      this.log.error({ group: binding.groupJid, call: name, err }, 'host call failed');
      return { ok: false, result: `${name} failed on the host` };
    }
  }

  private async sendMessage(
    binding: RunBinding,
    args: { text: string; chatJid?: string },
  ): Promise<HostCallResult> {
    const target = args.chatJid ?? binding.chatJid;
    if (target !== binding.chatJid) {
      if (!binding.isMain) {
        this.log.warn(
          { group: binding.groupJid, target },
          'denied: non-main group tried to message another chat',
        );
        return {
          ok: false,
          result: 'not allowed: this group may only send messages to its own chat',
        };
      }
      if (!this.deps.store.getChat(target)) return { ok: false, result: `unknown chat ${target}` };
    }
    const text = this.deps.formatOutbound(args.text);
    if (text === null)
      return { ok: false, result: 'nothing to send after removing <internal> text' };
    const refused = this.takeSendAllowance(binding);
    if (refused !== null) return { ok: false, result: refused };
    const item = this.deps.store.enqueueOutbound(target, text, binding.turnId, this.deps.now());
    this.deps.outbox.notify();
    // Truthful either way: "sent" only once the channel took it.
    const outcome = await this.deps.outbox.whenSettled(
      item.id,
      this.deps.sendConfirmMs ?? SEND_CONFIRM_MS,
    );
    switch (outcome) {
      case 'sent':
        return { ok: true, result: 'sent' };
      case 'queued':
        return {
          ok: true,
          result: 'queued: the chat is not reachable right now; it will be delivered when it is',
        };
      case 'failed':
        return { ok: false, result: 'not delivered: the chat refused the message' };
      default: {
        const unreachable: never = outcome;
        return { ok: false, result: `unknown delivery outcome ${String(unreachable)}` };
      }
    }
  }

  /**
   * Counts one send against the turn's and the group's limits, or says why it may not go.
   * Synchronous, between the checks and the enqueue, so calls that arrive together cannot all
   * pass the check before any of them counts.
   */
  private takeSendAllowance(binding: RunBinding): string | null {
    const now = this.deps.now();
    let history = this.sends.get(binding.groupJid);
    if (!history) {
      history = { turnId: binding.turnId, sentThisTurn: 0, recent: [] };
      this.sends.set(binding.groupJid, history);
    }
    if (history.turnId !== binding.turnId) {
      history.turnId = binding.turnId;
      history.sentThisTurn = 0;
    }
    while (history.recent.length > 0 && now - (history.recent[0] as number) >= SEND_WINDOW_MS) {
      history.recent.shift();
    }
    if (history.sentThisTurn >= this.maxSendsPerTurn) {
      this.log.warn(
        { group: binding.groupJid, turn: binding.turnId, limit: this.maxSendsPerTurn },
        'send_message refused: per-turn limit reached',
      );
      return `rate limited: at most ${this.maxSendsPerTurn} messages per turn; put the rest in your final answer`;
    }
    if (history.recent.length >= this.maxSendsPerMinute) {
      this.log.warn(
        { group: binding.groupJid, limit: this.maxSendsPerMinute },
        'send_message refused: per-minute limit reached',
      );
      return `rate limited: at most ${this.maxSendsPerMinute} messages a minute in this chat; try again later`;
    }
    history.sentThisTurn += 1;
    history.recent.push(now);
    return null;
  }
}

function isHostCall(name: string): name is HostCallName {
  return Object.hasOwn(HostCallArgsSchemas, name);
}

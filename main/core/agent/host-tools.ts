/**
 * Host tools: what an agent may ask the host to do (`host.call` frames).
 *
 * Authorization comes only from the run's binding (the group the container was started
 * for), never from fields in the payload. A non-main group may message only its own chat.
 *
 * Amounts are bound to the run too: `send_message` is rate-limited per turn and per minute
 * per group, so a hijacked agent cannot flood a chat. A call past a limit gets a tool error
 * the model can read, and nothing is queued.
 *
 * `list_chats` is for the main group only: it shows every chat the channels know, which a
 * non-main group (a chat of other people) has no business seeing.
 *
 * The scheduled-task calls (schedule_task, list_tasks, update_task, pause_task, resume_task,
 * cancel_task) are in {@link TaskTools}: each group manages its own tasks, main any group's.
 *
 * `send_file` is in {@link SendFile} (send-file.ts): a file from the group's own folder to its
 * own chat, path-checked on the host, counted against the same limits as send_message.
 */
import { HostCallArgsSchemas, LIST_CHATS_MAX, type HostCallName } from './protocol.js';
import { resolveRunLimits, type RunLimits } from './run-limits.js';
import { GroupTools, type GroupChanges } from './group-tools.js';
import { SendFile } from './send-file.js';
import { TaskTools } from './task-tools.js';
import type { z } from 'zod';
import { clip, oneLine } from '../text.js';
import type { Logger } from '../logger.js';
import type { OutboxWorker } from '../outbox.js';
import type { TaskAdmin } from '../scheduler/task-admin.js';
import type { Chat, Group, Store } from '../store/index.js';

/**
 * How long send_message waits to say "sent" before it answers "queued". A slow or closed
 * channel must never hold a turn open.
 * @default 2000
 */
export const SEND_CONFIRM_MS = 2_000;

/** Characters of a chat's name `list_chats` shows; names come from strangers and may be long. */
const CHAT_NAME_MAX_CHARS = 80;
/** Characters of a jid shown, the same bound the protocol puts on a group's jid. */
const CHAT_JID_MAX_CHARS = 256;

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
  /**
   * The scheduled tasks the task calls act on. Without it (hosts that schedule nothing, such as
   * tests of other calls) those calls answer that scheduling is not available here.
   */
  tasks?: TaskAdmin;
  /**
   * Adding and removing groups, for the main group's register_group and unregister_group.
   * Without it those calls answer that this host does not offer them.
   */
  groups?: GroupChanges;
  /**
   * Where send_file reads and stages files: `groupsDir` (`$CLAWBAR_HOME/groups`) and
   * `filesDir`, a host-only folder outside it (`$CLAWBAR_HOME/outbox-files`). Without it
   * send_file answers that this host does not offer it.
   */
  files?: { groupsDir: string; filesDir: string; maxBytes?: number };
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
  private readonly taskTools: TaskTools | null;
  private readonly groupTools: GroupTools | null;
  private readonly sendFile: SendFile | null;

  /** @throws {RangeError} when a limit in `deps.limits` is not a positive whole number */
  constructor(private readonly deps: HostToolsDeps) {
    this.log = deps.log.child({ mod: 'host-tools' });
    const limits = resolveRunLimits(deps.limits);
    this.maxSendsPerTurn = limits.maxSendsPerTurn;
    this.maxSendsPerMinute = limits.maxSendsPerMinute;
    this.taskTools = deps.tasks
      ? new TaskTools({ store: deps.store, tasks: deps.tasks, log: this.log })
      : null;
    this.groupTools = deps.groups
      ? new GroupTools({ store: deps.store, groups: deps.groups, log: this.log })
      : null;
    this.sendFile = deps.files
      ? new SendFile({
          ...deps.files,
          store: deps.store,
          outbox: deps.outbox,
          formatOutbound: deps.formatOutbound,
          // Files count against the same limits as messages: both reach the chat.
          takeAllowance: (binding) => this.takeSendAllowance(binding),
          now: deps.now,
          log: this.log,
          ...(deps.sendConfirmMs !== undefined ? { sendConfirmMs: deps.sendConfirmMs } : {}),
        })
      : null;
  }

  /** Runs one host call for the bound run. Never throws: failures become `ok: false`. */
  async call(binding: RunBinding, name: string, rawArgs: unknown): Promise<HostCallResult> {
    if (!isHostCall(name)) return { ok: false, result: `unknown host call "${name}"` };
    try {
      // Each case parses its own arguments, so that each handler gets its own argument type.
      switch (name) {
        case 'send_message': {
          const args = parseArgs(name, HostCallArgsSchemas.send_message, rawArgs);
          return args.ok ? await this.sendMessage(binding, args.data) : args;
        }
        case 'list_chats': {
          const args = parseArgs(name, HostCallArgsSchemas.list_chats, rawArgs);
          return args.ok ? this.listChats(binding, args.data) : args;
        }
        case 'schedule_task': {
          const args = parseArgs(name, HostCallArgsSchemas.schedule_task, rawArgs);
          return args.ok ? this.withTasks((tasks) => tasks.schedule(binding, args.data)) : args;
        }
        case 'list_tasks': {
          const args = parseArgs(name, HostCallArgsSchemas.list_tasks, rawArgs);
          return args.ok ? this.withTasks((tasks) => tasks.list(binding, args.data)) : args;
        }
        case 'update_task': {
          const args = parseArgs(name, HostCallArgsSchemas.update_task, rawArgs);
          return args.ok ? this.withTasks((tasks) => tasks.update(binding, args.data)) : args;
        }
        case 'pause_task': {
          const args = parseArgs(name, HostCallArgsSchemas.pause_task, rawArgs);
          return args.ok ? this.withTasks((tasks) => tasks.pause(binding, args.data)) : args;
        }
        case 'resume_task': {
          const args = parseArgs(name, HostCallArgsSchemas.resume_task, rawArgs);
          return args.ok ? this.withTasks((tasks) => tasks.resume(binding, args.data)) : args;
        }
        case 'cancel_task': {
          const args = parseArgs(name, HostCallArgsSchemas.cancel_task, rawArgs);
          return args.ok ? this.withTasks((tasks) => tasks.cancel(binding, args.data)) : args;
        }
        case 'register_group': {
          const args = parseArgs(name, HostCallArgsSchemas.register_group, rawArgs);
          return args.ok ? this.withGroups((groups) => groups.register(binding, args.data)) : args;
        }
        case 'unregister_group': {
          const args = parseArgs(name, HostCallArgsSchemas.unregister_group, rawArgs);
          return args.ok
            ? this.withGroups((groups) => groups.unregister(binding, args.data))
            : args;
        }
        case 'send_file': {
          const args = parseArgs(name, HostCallArgsSchemas.send_file, rawArgs);
          if (!args.ok) return args;
          if (!this.sendFile)
            return { ok: false, result: 'send_file is not available on this host' };
          return await this.sendFile.send(binding, args.data);
        }
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

  private withGroups(call: (groups: GroupTools) => HostCallResult): HostCallResult {
    if (!this.groupTools)
      return { ok: false, result: 'managing groups is not available on this host' };
    return call(this.groupTools);
  }

  private withTasks(call: (tasks: TaskTools) => HostCallResult): HostCallResult {
    if (!this.taskTools) {
      return { ok: false, result: 'scheduled tasks are not available on this host' };
    }
    return call(this.taskTools);
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
   * Lists the chats the channels know, newest first, one line each, for the main group only.
   * Chat names are set by other people, so each is stripped of control characters, clipped
   * and quoted: a name cannot add lines or fields that look like the host's own text.
   */
  private listChats(binding: RunBinding, args: { query?: string }): HostCallResult {
    if (!binding.isMain) {
      this.log.warn({ group: binding.groupJid }, 'denied: non-main group tried to list chats');
      return { ok: false, result: 'not allowed: only the main group may list chats' };
    }
    const query = args.query?.trim().toLowerCase() ?? '';
    const groups = new Map(this.deps.store.listGroups().map((group) => [group.jid, group]));
    // The store hands them out most recently active first.
    const chats = this.deps.store
      .listChats()
      .map((chat) => ({ chat, name: oneLine(chat.name) }))
      .filter(
        ({ chat, name }) =>
          query === '' ||
          name.toLowerCase().includes(query) ||
          chat.jid.toLowerCase().includes(query),
      );
    if (chats.length === 0) {
      return {
        ok: true,
        result:
          query === ''
            ? 'No chats known yet: the channels have not reported any.'
            : `No chats match ${JSON.stringify(args.query?.trim())}.`,
      };
    }
    const shown = chats.slice(0, LIST_CHATS_MAX);
    const header =
      `${chats.length} chat${chats.length === 1 ? '' : 's'}` +
      (query === '' ? '' : ` matching ${JSON.stringify(args.query?.trim())}`) +
      (shown.length < chats.length
        ? `; the ${shown.length} most recently active are shown, pass a query to narrow`
        : '') +
      ', newest first. Each line: jid | group or direct | channel | name | last activity (UTC) | enabled?';
    const lines = shown.map(({ chat, name }) => chatLine(chat, name, groups.get(chat.jid)));
    this.log.debug(
      { group: binding.groupJid, matched: chats.length, shown: shown.length },
      'listed chats',
    );
    return { ok: true, result: [header, ...lines].join('\n') };
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

/** One line of `list_chats`. `name` is already cleaned; everything else from the chat is cleaned here. */
function chatLine(chat: Chat, name: string, group: Group | undefined): string {
  const jid = clip(oneLine(chat.jid), CHAT_JID_MAX_CHARS);
  const shownName = name === '' ? '(no name)' : JSON.stringify(clip(name, CHAT_NAME_MAX_CHARS));
  const enabled = group
    ? `enabled, folder ${oneLine(group.folder)}${group.isMain ? ' (the main group)' : ''}`
    : 'not enabled';
  return [
    jid,
    chat.isGroup ? 'group' : 'direct',
    chat.channel,
    shownName,
    formatActivity(chat.lastActivity),
    enabled,
  ].join(' | ');
}

/** A chat's last activity as `2026-11-24 12:00`, or a word when there is none or it is nonsense. */
function formatActivity(ms: number | null): string {
  if (ms === null || ms <= 0) return 'no activity';
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return 'unknown';
  return date.toISOString().slice(0, 16).replace('T', ' ');
}

/** Validates a host call's arguments, or answers with what is wrong with them. */
function parseArgs<T>(
  name: HostCallName,
  schema: z.ZodType<T>,
  rawArgs: unknown,
): { ok: true; data: T } | { ok: false; result: string } {
  const parsed = schema.safeParse(rawArgs);
  if (parsed.success) return { ok: true, data: parsed.data };
  const issue = parsed.error.issues[0];
  return {
    ok: false,
    result: `bad arguments for ${name}: ${issue?.path.join('.') || 'args'}: ${issue?.message}`,
  };
}

function isHostCall(name: string): name is HostCallName {
  return Object.hasOwn(HostCallArgsSchemas, name);
}

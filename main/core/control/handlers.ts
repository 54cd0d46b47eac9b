/**
 * What each control method does. The control server calls these for `serve`; the CLI calls
 * the same handlers in-process when `serve` is not running (with dispatch off, so a message
 * is stored and waits for the next `serve`).
 */
import {
  InvalidPhoneNumberError,
  pairWhatsApp,
  type PairingResult,
  type WhatsAppControl,
  type WhatsAppDisconnect,
} from '../channels/whatsapp-control.js';
import type { ChannelState } from '../channels/channel.js';
import type { Core } from '../core.js';
import { CoreInputError } from '../errors.js';
import type { SetupProblem } from '../setup.js';
import type { TaskListing, TaskRunView, TaskView } from '../scheduler/task-admin.js';
import { senderMayTrigger } from '../router.js';
import type { GroupMountsView } from '../sandbox/mount-allowlist.js';
import type { Chat, Group, OutboxItem, StoredMessage } from '../store/index.js';
import type { ControlMethod, ControlParams, ControlProgress } from './protocol.js';
import type { UsageToday } from '../budget.js';
import {
  groupSettingsView,
  settingsNotes,
  type GroupSettingsChangeView,
  type GroupSettingsView,
} from './group-settings-view.js';

export interface GroupView {
  name: string;
  folder: string;
  jid: string;
  channel: 'local' | 'whatsapp';
  trigger: string | null;
  main: boolean;
  paused: boolean;
  /** Why the group is paused, when Clawbar paused it (its folders are over their disk budget). */
  pausedReason?: string;
  /**
   * Who may wake the agent, when the group limits it: phone jids (names in a local-chat group).
   * Absent: anyone in the chat may.
   */
  allowedSenders?: string[];
  /** Whether the group's container gets a network (off: `--network none`). */
  network: boolean;
  /** Whether Anthropic's web fetch is on for the group (off by default). */
  webFetch: boolean;
  /** Tokens used today (local day) and their estimated cost (`groups list`). */
  usageToday?: UsageToday;
  /** The group's daily cap, when it has one (`groups list`; set with `clawbar groups set`). */
  dailyBudget?: { tokens: number | null; usd: number | null };
}

/** The answer to `groups.senders`: the group and its policy after any change. */
export interface SenderPolicyView {
  group: GroupView;
  /** null: anyone in the chat may wake the agent; else only these (and the account owner). */
  allowedSenders: string[] | null;
}

export interface MessageView {
  id: string;
  /** Insertion order; absent for a reply that was never delivered. */
  seq: number | null;
  from: string;
  fromAssistant: boolean;
  text: string;
  time: string;
  /**
   * For a reply the chat has not received: `queued` (waiting for the channel) or `failed`
   * (given up after every attempt; `error` says why). Absent for delivered messages.
   */
  delivery?: 'queued' | 'failed';
  error?: string;
}

/** The answer to `groups.stop`. */
export interface GroupStopView {
  group: GroupView;
  /** A run was under way and was killed; its messages stay stored for the next trigger. */
  stopped: boolean;
  /** A failed run was waiting to be retried; it will not be. */
  cancelledRetry: boolean;
}

export function groupView(group: Group): GroupView {
  return {
    name: group.name,
    folder: group.folder,
    jid: group.jid,
    channel: group.jid.startsWith('local:') ? 'local' : 'whatsapp',
    trigger: group.isMain || !group.requiresTrigger ? null : group.trigger,
    main: group.isMain,
    paused: group.paused,
    ...(group.allowedSenders !== null ? { allowedSenders: group.allowedSenders } : {}),
    network: group.networkAllowed,
    webFetch: group.webFetch,
  };
}

/** One chat a channel knows, for `clawbar chats` and the main agent's list. */
export interface ChatView {
  jid: string;
  name: string;
  kind: 'group' | 'direct';
  channel: 'local' | 'whatsapp';
  /** The last message, as an ISO time; null when none was stored. */
  lastActivity: string | null;
  /** Whether Clawbar answers in it (it is a registered group), and under which group name. */
  enabled: boolean;
  group: string | null;
}

/** The chats, each marked with whether it is a registered group; most recent activity first. */
export function chatViews(chats: readonly Chat[], groups: readonly Group[]): ChatView[] {
  const byJid = new Map(groups.map((g) => [g.jid, g]));
  return [...chats]
    .sort((a, b) => (b.lastActivity ?? 0) - (a.lastActivity ?? 0) || a.name.localeCompare(b.name))
    .map((chat) => {
      const group = byJid.get(chat.jid);
      return {
        jid: chat.jid,
        name: chat.name,
        kind: chat.isGroup ? 'group' : 'direct',
        channel: chat.channel,
        lastActivity: chat.lastActivity === null ? null : new Date(chat.lastActivity).toISOString(),
        enabled: group !== undefined,
        group: group?.name ?? null,
      };
    });
}

/**
 * The answer to `tasks.pause`, `tasks.resume` and `tasks.remove`: the task as it now is (as it
 * was, for remove), or null when its stored schedule cannot be read.
 */
export interface TaskChangeView {
  id: string;
  task: TaskView | null;
}

/** The answer to `tasks.run`: the task, and the due time its run stands for (ISO UTC). */
export interface TaskRunStarted {
  id: string;
  task: TaskView;
  dueAt: string;
}

/** The answer to `tasks.runs`: latest first, times also in `timezone` (the task's). */
export interface TaskRunsView {
  id: string;
  timezone: string;
  runs: TaskRunView[];
}

/** What `status` adds to the core's status when there is a WhatsApp channel. */
export interface WhatsAppStatusView {
  whatsappLastDisconnect?: WhatsAppDisconnect | null;
}

/** The answer to `whatsapp.unlink`. */
export interface UnlinkView {
  unlinked: true;
  /** The channel's state after the wipe (needs pairing). */
  state: ChannelState;
}

/** The WhatsApp channel's controls, or a clear error when serve has none. */
function requireWhatsApp(whatsapp: WhatsAppControl | null, serving: boolean): WhatsAppControl {
  if (!serving) {
    throw new CoreInputError(
      'this needs `clawbar serve` running: it holds the one WhatsApp connection. Start it, then try again',
    );
  }
  if (!whatsapp) {
    throw new CoreInputError(
      'this serve has no WhatsApp channel; enable WhatsApp in the settings and restart `clawbar serve`',
    );
  }
  return whatsapp;
}

export function messageView(message: StoredMessage): MessageView {
  return {
    id: message.id,
    seq: message.seq,
    from: message.senderName,
    fromAssistant: message.fromBot,
    text: message.text,
    time: new Date(message.timestamp).toISOString(),
  };
}

/** What a handler knows about the request besides its parameters. */
export interface RequestContext {
  /** Aborted when the client disconnects or the server closes: long waits end then. */
  signal: AbortSignal;
  /** Tells the client where a long request is, before its answer (a no-op in-process). */
  progress(update: ControlProgress): void;
}

export type ControlHandlers = {
  [M in ControlMethod]: (params: ControlParams<M>, ctx: RequestContext) => Promise<unknown>;
};

/** An undelivered reply, shown in the history where it would have been. */
export function undeliveredView(item: OutboxItem, assistantName: string): MessageView {
  return {
    id: `outbox-${item.id}`,
    seq: null,
    from: assistantName,
    fromAssistant: true,
    text: item.text,
    time: new Date(item.createdAt).toISOString(),
    delivery: item.state === 'failed' ? 'failed' : 'queued',
    ...(item.lastError ? { error: item.lastError } : {}),
  };
}

export interface HandlerContext {
  core: Core;
  /** True inside `serve`: messages are dispatched to agents. */
  serving: boolean;
}

/** @default 10 minutes */
export const DEFAULT_WAIT_MS = 10 * 60_000;

/** What each control method does; every method keeps its own result type ({@link ControlResult}). */
export function controlHandlers(context: HandlerContext): TypedControlHandlers {
  return handlerTable(context);
}

/**
 * The handler table. Its type is inferred (and checked against {@link ControlHandlers}) so each
 * method keeps its own result type: the tray's IPC contract derives its results from it.
 */
function handlerTable({ core, serving }: HandlerContext) {
  const { assistantName } = core;
  const whatsappOf = (): WhatsAppControl | null => core.whatsapp;
  return {
    status: async () => {
      const whatsapp = whatsappOf();
      return {
        serving,
        ...(await core.status()),
        // Why WhatsApp last closed, also once it is open again: `status` tells of a flaky link.
        ...(whatsapp ? { whatsappLastDisconnect: whatsapp.lastDisconnect() } : {}),
      };
    },
    'groups.list': async () =>
      core.groups.list().map((group) => {
        const reason = group.paused ? core.disk.pausedReason(group.jid) : null;
        const { tokens, usd } = group.dailyBudget;
        return {
          ...groupView(group),
          ...(reason ? { pausedReason: reason } : {}),
          usageToday: core.budget.usageToday(group.jid),
          ...(tokens !== null || usd !== null ? { dailyBudget: { tokens, usd } } : {}),
        };
      }),
    'groups.add': async (p) =>
      groupView(
        core.addGroup({
          name: p.name,
          ...(p.jid !== undefined ? { jid: p.jid } : {}),
          ...(p.main !== undefined ? { main: p.main } : {}),
          ...(p.trigger !== undefined ? { trigger: p.trigger } : {}),
          ...(p.requiresTrigger !== undefined ? { requiresTrigger: p.requiresTrigger } : {}),
        }),
      ),
    'groups.remove': async (p) => groupView(core.removeGroup(p.group)),
    'groups.pause': async (p) => groupView(core.pauseGroup(p.group)),
    'groups.resume': async (p) => groupView(core.resumeGroup(p.group)),
    'groups.stop': async (p): Promise<GroupStopView> => {
      const { group, stopped, cancelledRetry } = core.stopGroup(p.group);
      return { group: groupView(group), stopped, cancelledRetry };
    },
    'groups.senders': async (p): Promise<SenderPolicyView> => {
      const group = core.groups.updateSenders(p.group, {
        ...(p.allow !== undefined ? { allow: p.allow } : {}),
        ...(p.deny !== undefined ? { deny: p.deny } : {}),
        ...(p.everyone !== undefined ? { everyone: p.everyone } : {}),
      });
      return { group: groupView(group), allowedSenders: group.allowedSenders };
    },
    'groups.mounts': async (p): Promise<GroupMountsView> =>
      core.groups.mounts(p.group, {
        ...(p.add !== undefined ? { add: p.add } : {}),
        ...(p.remove !== undefined ? { remove: p.remove } : {}),
      }),
    'groups.show': async (p): Promise<GroupSettingsView> => {
      const group = core.groups.resolve(p.group);
      return {
        ...groupSettingsView(group, core.defaultModel),
        usageToday: core.budget.usageToday(group.jid),
      };
    },
    'groups.set': async ({ group: ref, ...input }): Promise<GroupSettingsChangeView> => {
      const group = core.updateGroupSettings(ref, input);
      return {
        settings: groupSettingsView(group, core.defaultModel),
        notes: settingsNotes(input),
      };
    },
    send: async (p, ctx) => {
      if (p.wait && !serving) {
        throw new CoreInputError(
          '--wait needs `clawbar serve` running; the message was not stored',
        );
      }
      const posted = core.postLocal(p.group, p.from ?? 'you', p.text);
      const base = {
        stored: messageView(posted.message),
        triggered: posted.triggered,
        // Said apart from "no trigger": the group's allowlist held it back (router.ts senderMayTrigger).
        ...(senderMayTrigger(posted.group, posted.message) ? {} : { senderNotAllowed: true }),
        dispatched: serving,
        // Paused: stored, not dispatched; without this the CLI reported a paused group's message as "sent".
        ...(posted.group.paused ? { paused: true } : {}),
      };
      if (!p.wait || !posted.triggered || posted.group.paused) return { ...base, replies: [] };
      ctx.progress({ stage: 'stored', text: 'stored' });
      const unfollow = followProgress(core, posted.group.jid, ctx.progress);
      let reply;
      try {
        reply = await core.waitForReply(
          posted.group.jid,
          posted.message.seq,
          p.timeoutMs ?? DEFAULT_WAIT_MS,
          ctx.signal,
        );
      } finally {
        unfollow();
      }
      return {
        ...base,
        replies: [
          ...reply.replies.map(messageView),
          ...reply.undelivered.map((item) => undeliveredView(item, assistantName)),
        ],
      };
    },
    messages: async (p) => {
      const group = core.groups.resolve(p.group);
      const limit = p.limit ?? 50;
      // Undelivered replies are part of the story: they show after the delivered history.
      const undelivered = core
        .undelivered(group.jid)
        .map((item) => undeliveredView(item, assistantName));
      const delivered = core.messages(group.jid, limit).map(messageView);
      return [...delivered, ...undelivered].slice(-limit);
    },
    chats: async () => chatViews(core.chats(), core.groups.list()),
    'whatsapp.pair': async (p, ctx): Promise<PairingResult> => {
      const whatsapp = requireWhatsApp(whatsappOf(), serving);
      try {
        return await pairWhatsApp(
          {
            control: whatsapp,
            onState: (listener) =>
              core.events.on('channel:state', (e) => {
                if (e.channel === 'whatsapp') listener(e.state);
              }),
            progress: ctx.progress,
            signal: ctx.signal,
            ...(p.timeoutMs !== undefined ? { timeoutMs: p.timeoutMs } : {}),
          },
          p.phone !== undefined ? { phone: p.phone } : {},
        );
      } catch (err) {
        if (err instanceof InvalidPhoneNumberError) throw new CoreInputError(err.message);
        throw err;
      }
    },
    'whatsapp.unlink': async (): Promise<UnlinkView> => {
      const whatsapp = requireWhatsApp(whatsappOf(), serving);
      await whatsapp.unlink();
      return { unlinked: true, state: whatsapp.state() };
    },
    'tasks.list': async (p): Promise<TaskListing> => {
      const groupJid = p.group !== undefined ? core.groups.resolve(p.group).jid : undefined;
      const { tasks, unreadable } = core.tasks.list(groupJid !== undefined ? { groupJid } : {});
      return {
        tasks: tasks.map((task) => core.tasks.view(task)),
        unreadable: unreadable.map((err) => ({ id: err.taskId, error: err.message })),
      };
    },
    'tasks.add': async (p): Promise<TaskView> =>
      core.tasks.view(
        core.tasks.add({
          group: core.groups.resolve(p.group),
          prompt: p.prompt,
          ...(p.cron !== undefined ? { cron: p.cron } : {}),
          ...(p.every !== undefined ? { every: p.every } : {}),
          ...(p.at !== undefined ? { at: p.at } : {}),
          ...(p.timezone !== undefined ? { timezone: p.timezone } : {}),
          ...(p.contextMode !== undefined ? { contextMode: p.contextMode } : {}),
          ...(p.postResult !== undefined ? { postResult: p.postResult } : {}),
          createdBy: 'cli',
        }),
      ),
    'tasks.pause': async (p): Promise<TaskChangeView> => {
      const task = core.tasks.pause(p.id);
      return { id: p.id, task: task && core.tasks.view(task) };
    },
    'tasks.resume': async (p): Promise<TaskChangeView> => ({
      id: p.id,
      task: core.tasks.view(core.tasks.resume(p.id)),
    }),
    'tasks.remove': async (p): Promise<TaskChangeView> => {
      const task = core.tasks.remove(p.id);
      return { id: p.id, task: task && core.tasks.view(task) };
    },
    'tasks.run': async (p): Promise<TaskRunStarted> => {
      if (!serving) {
        throw new CoreInputError(
          'running a task needs `clawbar serve` running: it runs the agents. Start it, then try again',
        );
      }
      const { task, dueAt } = core.runTask(p.id);
      return { id: p.id, task: core.tasks.view(task), dueAt: new Date(dueAt).toISOString() };
    },
    'tasks.runs': async (p): Promise<TaskRunsView> => {
      const runs = core.tasks.runs(p.id, p.limit ?? 20);
      // The run log of a task whose schedule cannot be read is still shown, its times in UTC.
      let timezone = 'UTC';
      try {
        timezone = core.tasks.get(p.id).timezone;
      } catch {
        // CorruptTaskError: keep UTC (an unknown id was refused by runs() above).
      }
      return { id: p.id, timezone, runs: runs.map((run) => core.tasks.runView(run, timezone)) };
    },
  } satisfies ControlHandlers;
}

/** What a control method answers. */
export type ControlResult<M extends ControlMethod> = Awaited<
  ReturnType<ReturnType<typeof handlerTable>[M]>
>;

/** {@link ControlHandlers} with each method's own result type. */
export type TypedControlHandlers = {
  [M in ControlMethod]: (
    params: ControlParams<M>,
    ctx: RequestContext,
  ) => Promise<ControlResult<M>>;
};

/** Build progress reaches a waiting client at most this often. */
const SETUP_PROGRESS_MS = 1_000;

/**
 * Reports what happens to a group's work until the returned function is called: where it
 * waits (in line, or for the set-up, with a build's progress), then its run's activity.
 * Every listener is removed by the returned function.
 */
export function followProgress(
  core: Core,
  groupJid: string,
  progress: (update: ControlProgress) => void,
): () => void {
  let last = '';
  let lastSetupAt = 0;
  const say = (update: ControlProgress): void => {
    if (update.text === last) return;
    last = update.text;
    progress(update);
  };
  const setup = (problems: readonly SetupProblem[], throttle: boolean): void => {
    const building = problems.find((p) => p.kind === 'image-building');
    if (!building) return;
    const now = Date.now();
    if (throttle && now - lastSetupAt < SETUP_PROGRESS_MS) return;
    lastSetupAt = now;
    say({
      stage: 'setup',
      text: `waiting: ${building.message}${building.progress ? ` — ${building.progress}` : ''}`,
    });
  };

  const queue = core.queue.snapshot();
  const problems = core.setupProblems();
  const running = queue.running.find((r) => r.groupJid === groupJid);
  if (problems.length > 0) setup(problems, false);
  else if (running && !running.idle) {
    // A run that is still starting takes this message in its first turn; one that is under
    // way answers it in its next.
    if (core.runActivity(groupJid) === 'starting')
      say({ stage: 'starting', text: 'starting the agent container' });
    else say({ stage: 'queued', text: 'queued: the agent is finishing an earlier message' });
  } else if (queue.waiting.includes(groupJid)) {
    const ahead = queue.waiting.indexOf(groupJid);
    say({
      stage: 'queued',
      text: `queued: waiting for a free slot (${queue.maxConcurrency} agents at most${ahead > 0 ? `, ${ahead} ahead` : ''})`,
    });
  }

  const unsubscribe = [
    core.events.on('setup:changed', (e) => setup(e.problems, true)),
    core.events.on('run:activity', (e) => {
      if (e.groupJid !== groupJid) return;
      switch (e.activity) {
        case 'starting':
          say({ stage: 'starting', text: 'starting the agent container' });
          return;
        case 'thinking':
          say({ stage: 'thinking', text: 'thinking' });
          return;
        case 'tool':
          say({ stage: 'tool', text: `running a tool: ${(e.tools ?? []).join(', ')}` });
          return;
        default: {
          const unreachable: never = e.activity;
          return unreachable;
        }
      }
    }),
  ];
  return () => {
    for (const off of unsubscribe) off();
  };
}

/**
 * The one IPC contract between the tray window and the main process (DESIGN.md §2: it lives
 * with the preload, which is the only code on both sides of the bridge). The headless bridge
 * (`clawbar serve --http`) speaks the same contract over HTTP.
 *
 * Each channel is a `domain:action` name mapped to the zod schema of its one argument and the
 * type of its result. The main process validates with the schemas (`main/core/control/ui-api.ts`,
 * shared by the Electron registrar and the HTTP bridge); the preload derives `window.clawbar`
 * from the same channel list ({@link createClawbarApi}), so a channel added here shows up on
 * both sides or fails to compile.
 *
 * This file must import neither `electron` nor Node: the sandboxed preload bundles it.
 * The imports from `main/core` are types only and vanish at build time. It uses `zod/mini`,
 * which tree-shakes: the preload bundle stays small instead of carrying all of zod and its
 * locales (about 440 KB minified). Mini has no English messages built in, so every message a
 * caller can see is written here.
 */
import * as z from 'zod/mini';
import type { ChannelState } from '../main/core/channels/channel.js';
import type { WhatsAppDisconnect } from '../main/core/channels/whatsapp-control.js';
import type {
  ChatView,
  ControlResult,
  GroupStopView,
  GroupView,
  MessageView,
  TaskChangeView,
  TaskRunStarted,
  TaskRunsView,
  UnlinkView,
} from '../main/core/control/handlers.js';
import type { CoreStatus } from '../main/core/core.js';
import type { CoreEvents, TaskFinished } from '../main/core/events.js';
import type { TaskListing, TaskView } from '../main/core/scheduler/task-admin.js';
import { IPC, type IpcChannel } from './api.js';

export {
  createClawbarApi,
  IPC,
  ipcChannels,
  UI_EVENT_CHANNEL,
  type IpcChannel,
  type IpcInvoke,
  type UiSubscribe,
} from './api.js';
export type {
  ChannelState,
  ChatView,
  CoreStatus,
  GroupStopView,
  GroupView,
  MessageView,
  TaskChangeView,
  TaskListing,
  TaskRunStarted,
  TaskRunsView,
  TaskView,
  UnlinkView,
};

/** Carries a result type in the contract map; it holds no runtime value. */
interface ResultType<T> {
  readonly __result?: T;
}
const resultType = <T>(): ResultType<T> => ({});

type Issue = { code: string; keys?: string[] };

/**
 * A strict object whose wrong-type and unknown-key errors say what is expected. Fields are
 * checked by their own schemas, whose messages name the field.
 */
function args<Shape extends z.core.$ZodLooseShape>(shape: Shape, expected: string) {
  return z.strictObject(shape, {
    error: (issue: Issue) => {
      if (issue.code === 'invalid_type') return `expected ${expected}`;
      if (issue.code === 'unrecognized_keys')
        return `unknown key ${(issue.keys ?? []).map((key) => JSON.stringify(key)).join(', ')}`;
      return undefined;
    },
  });
}

/** A trimmed, non-empty string of at most `max` characters; messages name the field. */
function text(field: string, max: number, what = 'a string') {
  return z
    .string({ error: `${field} must be ${what}` })
    .check(
      z.trim(),
      z.minLength(1, `${field} must not be empty`),
      z.maxLength(max, `${field} must be at most ${max} characters`),
    );
}

function whole(field: string, min: number, max: number) {
  return z
    .number({ error: `${field} must be a number` })
    .check(
      z.int({ error: `${field} must be a whole number` }),
      z.minimum(min, `${field} must be at least ${min}`),
      z.maximum(max, `${field} must be at most ${max}`),
    );
}

function flag(field: string) {
  return z.boolean({ error: `${field} must be true or false` });
}

/** A channel that takes no argument. */
const NoArgs = z.undefined({ error: 'this call takes no argument' });

/** A group by name, folder or jid, as everywhere else in Clawbar (DESIGN.md §6). */
const groupRef = text('group', 256, 'a string (a name, folder or jid)');
const GroupRefArgs = args({ group: groupRef }, '{ group: "<name, folder or jid>" }');

/** A task by id, as `clawbar tasks list` shows it. */
const TaskRefArgs = args({ id: text('id', 64) }, '{ id: "<task id>" }');

const TasksListArgs = z.optional(
  args({ group: z.optional(groupRef) }, '{ group?: "<name, folder or jid>" } or nothing'),
);

const TasksRunsArgs = args(
  { id: text('id', 64), limit: z.optional(whole('limit', 1, 1000)) },
  '{ id: "<task id>", limit?: number }',
);

/** Mirrors `MAX_TASK_PROMPT_CHARS` in the store (a value import would pull the store in). */
const MAX_TASK_PROMPT_CHARS = 10_000;

/**
 * A new scheduled task: exactly one of `cron`, `every`, `at`. The core checks what each means
 * and the prompt's content, as for `clawbar tasks add`.
 */
const TasksCreateArgs = args(
  {
    group: groupRef,
    prompt: text('prompt', MAX_TASK_PROMPT_CHARS),
    cron: z.optional(text('cron', 200)),
    every: z.optional(text('every', 200)),
    at: z.optional(text('at', 200)),
    timezone: z.optional(text('timezone', 200)),
    contextMode: z.optional(
      z.enum(['group', 'isolated'], { error: 'contextMode must be "group" or "isolated"' }),
    ),
    postResult: z.optional(flag('postResult')),
  },
  '{ group, prompt, and one of cron, every, at }',
).check(
  z.refine((task) => [task.cron, task.every, task.at].filter((s) => s !== undefined).length === 1, {
    message: 'give exactly one schedule: cron, every or at',
  }),
);

/** A chat the channels know, by jid (`clawbar chats`), to answer in as a group. */
const ChatsEnableArgs = args(
  {
    jid: text('jid', 256),
    /** @default the chat's own name */
    name: z.optional(text('name', 256)),
    /** False: every message wakes the agent. @default true */
    requiresTrigger: z.optional(flag('requiresTrigger')),
  },
  '{ jid: "<chat jid>", name?: string, requiresTrigger?: boolean }',
);

const PairArgs = z.optional(
  args(
    { phone: z.optional(text('phone', 32)) },
    '{ phone?: "<number with country code>" } or nothing (pair by QR)',
  ),
);

const MessagesListArgs = args(
  { group: groupRef, limit: z.optional(whole('limit', 1, 1000)) },
  '{ group: "<name, folder or jid>", limit?: number }',
);

const MessagesSendArgs = args(
  { group: groupRef, text: text('text', 65_536) },
  '{ group: "<name, folder or jid>", text: string }',
);

/**
 * The settings the window may read and change, each optional: `settings:set` changes the keys
 * given and leaves the rest. The store behind them (electron-store in the app) keeps its own
 * schema and checks what each value means; this one only refuses keys and types it does not know.
 */
export const SettingsPatchArgs = args(
  {
    assistantName: z.optional(text('assistantName', 64)),
    trigger: z.optional(text('trigger', 64)),
    runtime: z.optional(
      z.enum(['docker', 'apple'], { error: 'runtime must be "docker" or "apple"' }),
    ),
    maxConcurrency: z.optional(whole('maxConcurrency', 1, 64)),
    idleTimeoutMs: z.optional(whole('idleTimeoutMs', 1_000, 86_400_000)),
    // The same keys and bounds as the desktop app's settings store (main/app/settings.ts).
    taskGraceMs: z.optional(whole('taskGraceMs', 0, 7 * 86_400_000)),
    launchAtLogin: z.optional(flag('launchAtLogin')),
    notifications: z.optional(flag('notifications')),
  },
  '{ <setting>: value } with known settings only',
);

/** The settings as the window sees them: every key the store has. */
export type UiSettings = z.output<typeof SettingsPatchArgs>;

/** `apiKey:set`: the key the user pasted. It goes one way: no channel ever returns a key. */
const ApiKeySetArgs = args(
  { key: text('key', 512, 'a string (an Anthropic API key, sk-ant-…)') },
  '{ key: "sk-ant-…" }',
);

/** Where the Anthropic API key comes from, for the Settings panel; never the key itself. */
export interface ApiKeyView {
  /**
   * `environment`: ANTHROPIC_API_KEY, which wins over a saved key and is changed where it is
   * set; `saved`: entered in Settings and in use; `unreadable`: a saved key that this user's
   * keyring cannot decrypt (enter it again); `none`.
   */
  source: 'environment' | 'saved' | 'unreadable' | 'none';
  /** Whether `apiKey:set` and `apiKey:clear` can work here (the desktop app, no environment key). */
  editable: boolean;
  /** Who holds the key: the desktop app, or headless `clawbar serve` (its environment only). */
  app: 'desktop' | 'serve';
  /**
   * How a key saved here is kept: the system keyring; `weak` (Linux without a keyring, where
   * Chromium's basic_text is no real protection); `unavailable` (it cannot be saved here).
   */
  protection: 'keyring' | 'weak' | 'unavailable';
}

/** WhatsApp's pairing state for the Connection panel. */
export interface PairingStateView {
  /** False when this Clawbar has no WhatsApp channel (the rest is then null). */
  enabled: boolean;
  /** The connection state now; a `qr` state carries the payload to draw. */
  state: ChannelState | null;
  lastDisconnect: WhatsAppDisconnect | null;
}

export const ipcContract = {
  [IPC.statusGet]: { args: NoArgs, result: resultType<ControlResult<'status'>>() },
  [IPC.groupsList]: { args: NoArgs, result: resultType<ControlResult<'groups.list'>>() },
  [IPC.groupsPause]: { args: GroupRefArgs, result: resultType<GroupView>() },
  [IPC.groupsResume]: { args: GroupRefArgs, result: resultType<GroupView>() },
  [IPC.groupsPauseAll]: { args: NoArgs, result: resultType<GroupView[]>() },
  [IPC.groupsResumeAll]: { args: NoArgs, result: resultType<GroupView[]>() },
  [IPC.groupsStop]: { args: GroupRefArgs, result: resultType<GroupStopView>() },
  [IPC.chatsList]: { args: NoArgs, result: resultType<ChatView[]>() },
  [IPC.chatsEnable]: { args: ChatsEnableArgs, result: resultType<GroupView>() },
  [IPC.tasksList]: { args: TasksListArgs, result: resultType<TaskListing>() },
  [IPC.tasksRuns]: { args: TasksRunsArgs, result: resultType<TaskRunsView>() },
  [IPC.tasksCreate]: { args: TasksCreateArgs, result: resultType<TaskView>() },
  [IPC.tasksPause]: { args: TaskRefArgs, result: resultType<TaskChangeView>() },
  [IPC.tasksResume]: { args: TaskRefArgs, result: resultType<TaskChangeView>() },
  [IPC.tasksRunNow]: { args: TaskRefArgs, result: resultType<TaskRunStarted>() },
  [IPC.tasksDelete]: { args: TaskRefArgs, result: resultType<TaskChangeView>() },
  [IPC.whatsappState]: { args: NoArgs, result: resultType<PairingStateView>() },
  [IPC.whatsappPair]: { args: PairArgs, result: resultType<PairingStateView>() },
  [IPC.whatsappUnlink]: { args: NoArgs, result: resultType<UnlinkView>() },
  [IPC.messagesList]: { args: MessagesListArgs, result: resultType<MessageView[]>() },
  [IPC.messagesSend]: { args: MessagesSendArgs, result: resultType<ControlResult<'send'>>() },
  [IPC.settingsGet]: { args: NoArgs, result: resultType<UiSettings>() },
  [IPC.settingsSet]: { args: SettingsPatchArgs, result: resultType<UiSettings>() },
  [IPC.apiKeyStatus]: { args: NoArgs, result: resultType<ApiKeyView>() },
  [IPC.apiKeySet]: { args: ApiKeySetArgs, result: resultType<ApiKeyView>() },
  [IPC.apiKeyClear]: { args: NoArgs, result: resultType<ApiKeyView>() },
  [IPC.activityRecent]: { args: NoArgs, result: resultType<ActivityRecord[]>() },
} as const satisfies { [C in IpcChannel]: { args: z.ZodMiniType; result: ResultType<unknown> } };

/** What a channel's argument looks like after parsing. */
export type IpcArgs<C extends IpcChannel> = z.output<(typeof ipcContract)[C]['args']>;

/** What a channel's handler returns (plain, structured-clonable data). */
export type IpcResult<C extends IpcChannel> =
  (typeof ipcContract)[C]['result'] extends ResultType<infer R> ? R : never;

/**
 * A channel with no argument is called with none (`clawbar.groups.list()`), one with an
 * optional argument with or without it (`clawbar.tasks.list()`).
 */
type CallParams<C extends IpcChannel> = [IpcArgs<C>] extends [undefined]
  ? []
  : undefined extends IpcArgs<C>
    ? [args?: Exclude<IpcArgs<C>, undefined>]
    : [args: IpcArgs<C>];

type Domain<C extends string> = C extends `${infer D}:${string}` ? D : never;

/**
 * A live event, main → renderer: the core's events the window shows, as small plain objects
 * (they cross by structured clone or as JSON). `type` is the core event's name; the last two
 * come from the transports themselves.
 */
export type UiEvent =
  | ({ type: 'group:changed' } & CoreEvents['group:changed'])
  | { type: 'run:started'; groupJid: string; runId: string }
  | ({ type: 'run:finished' } & CoreEvents['run:finished'])
  | ({ type: 'run:gave-up' } & CoreEvents['run:gave-up'])
  | ({ type: 'channel:state' } & CoreEvents['channel:state'])
  | ({ type: 'task:finished' } & TaskFinished)
  | ({ type: 'task:changed' } & CoreEvents['task:changed'])
  | ({ type: 'chat:seen' } & CoreEvents['chat:seen'])
  | ({ type: 'budget:reached' } & CoreEvents['budget:reached'])
  | ({ type: 'setup:changed' } & CoreEvents['setup:changed'])
  /** A message stored in a local-chat group (the "Chat with a local group" panel). */
  | { type: 'message:stored'; groupJid: string; message: MessageView }
  /**
   * A reply went out to a local-chat group (and is in its history now); only the chat and the
   * outcome cross, not the outbox item.
   */
  | { type: 'outbox:settled'; chatJid: string; outcome: 'sent' | 'failed' }
  /**
   * From the desktop shell, not the core: show this route, e.g. after a notification's click.
   * A route is a panel's id (`connection`) or `tasks/<id>`; the page checks it.
   */
  | { type: 'window:navigate'; route: string }
  /**
   * From the HTTP bridge, not the core: the event stream dropped and is back, so events may
   * have been missed; the page fetches everything again.
   */
  | { type: 'events:resumed' };

export type UiEventType = UiEvent['type'];

/** One line of recent activity, as the core kept it: the event and when it happened (epoch ms). */
export interface ActivityRecord {
  at: number;
  event: UiEvent;
}

/** `window.clawbar`: `groups:pause` becomes `clawbar.groups.pause({ group })`. */
export type ClawbarApiShape = {
  readonly [D in Domain<IpcChannel>]: {
    readonly [C in IpcChannel as C extends `${D}:${infer Action}` ? Action : never]: (
      ...args: CallParams<C>
    ) => Promise<IpcResult<C>>;
  };
} & {
  /** Calls `listener` with each live event until the returned function is called. */
  readonly onEvent: (listener: (event: UiEvent) => void) => () => void;
};

/** Row types the store hands out. Everything inside the core works with these, never raw rows. */

export type ChannelName = 'local' | 'whatsapp';

export interface Chat {
  jid: string;
  name: string;
  channel: ChannelName;
  isGroup: boolean;
  lastActivity: number | null;
}

export interface NewMessage {
  chatJid: string;
  /** The channel's message id; unique per chat. */
  id: string;
  sender: string;
  senderName: string;
  text: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  fromMe?: boolean;
  fromBot?: boolean;
  quotedId?: string | null;
  mediaRef?: string | null;
  /** For the assistant's own messages: the turn that sent it. */
  turnId?: string | null;
}

export interface StoredMessage extends Required<NewMessage> {
  /** Insertion order across all chats; cursors point at it. */
  seq: number;
}

export interface Group {
  jid: string;
  folder: string;
  name: string;
  /** e.g. `@Andy`; matched at the start of a message, case-insensitive. */
  trigger: string;
  requiresTrigger: boolean;
  isMain: boolean;
  paused: boolean;
  networkAllowed: boolean;
  /**
   * Who may wake the agent: normalized sender ids (phone jids like `15551234567@s.whatsapp.net`
   * or LID jids; for a local-chat group, sender names). null: anyone in the chat. Messages from
   * others are stored all the same, as context.
   */
  allowedSenders: string[] | null;
  /** The model the group's calls use; null for the configured default (`CLAWBAR_MODEL`). */
  model: string | null;
  /** Anthropic's server-side web search for the group's calls. On by default. */
  webSearch: boolean;
  /**
   * Anthropic's server-side web fetch. Off by default: a prompt-injected agent can put data
   * into a URL it fetches.
   */
  webFetch: boolean;
  /** Caps on the group's usage per local day; null for none. */
  dailyBudget: { tokens: number | null; usd: number | null };
  /**
   * Host folders the group asks to see in its container, as stored. Each is checked against
   * the mount allowlist file at every run; an entry that is not a request's shape is dropped.
   */
  extraMounts: ExtraMountRequest[];
  createdAt: number;
}

/** A host folder a group asks to have mounted in its container (checked at every run). */
export interface ExtraMountRequest {
  /** An absolute host path, or one starting with `~/`. */
  hostPath: string;
  /** Where it appears under `/workspace/extra/`; defaults to the folder's name. */
  containerPath?: string;
  /** Asks for write access; granted only where the allowlist permits. @default true (read-only) */
  readonly?: boolean;
}

/** What {@link Store} `updateGroupSettings` may change; fields left out stay as they are. */
export interface GroupSettingsChanges {
  model?: string | null;
  webSearch?: boolean;
  webFetch?: boolean;
  networkAllowed?: boolean;
  dailyBudget?: { tokens: number | null; usd: number | null };
  extraMounts?: ExtraMountRequest[];
}

export interface NewGroup {
  jid: string;
  folder: string;
  name: string;
  trigger: string;
  requiresTrigger: boolean;
  isMain: boolean;
  channel: ChannelName;
}

export type OutboxState = 'queued' | 'sent' | 'failed';

/** A reply (from a turn or send_message), or Clawbar's own notice about another item. */
export type OutboxKind = 'reply' | 'notice';

export interface OutboxItem {
  /** Stable across restarts: channels get it, so a resend after a crash can be made idempotent. */
  id: number;
  chatJid: string;
  text: string;
  turnId: string | null;
  kind: OutboxKind;
  state: OutboxState;
  /** Delivery attempts made (each call to a channel's `send`), across restarts. */
  attempts: number;
  lastError: string | null;
  /** Not to be tried again before this time (backoff); null means at once. */
  nextAttemptAt: number | null;
  createdAt: number;
  /** When it was given up, for a failed item. */
  failedAt: number | null;
  /** A file sent with it (the agent's send_file); `text` is then its caption, maybe empty. */
  attachment: OutboxAttachment | null;
}

/** How a channel presents a file: WhatsApp's image, audio and document messages. */
export type OutboxFileKind = 'image' | 'audio' | 'document';

/**
 * A file an outbox item carries: a copy staged on the host when the agent asked to send it
 * (agent/send-file.ts), outside every group folder, removed once the item is sent or failed.
 */
export interface OutboxAttachment {
  /** Absolute host path of the staged copy. */
  stagedPath: string;
  /** The name shown to the chat, cleaned of control characters and separators. */
  fileName: string;
  /** Sniffed from the file's first bytes, never taken from its extension. */
  mimetype: string;
  kind: OutboxFileKind;
  bytes: number;
}

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

/**
 * When a task is due, as stored in `tasks.spec` (JSON). The same shape as the scheduler's
 * `Schedule`, defined here too so that the store does not depend on the scheduler: the store
 * checks only the shape, the scheduler checks the meaning (a valid cron expression, a known
 * timezone, a time not in the past). Times are milliseconds since the epoch.
 */
export type TaskSchedule =
  | { kind: 'cron'; expr: string; timezone: string }
  | { kind: 'interval'; everyMs: number; anchor: number }
  | { kind: 'once'; at: number };

export type TaskKind = TaskSchedule['kind'];

/** `group`: the run continues the group's conversation. `isolated`: it starts a fresh one. */
export type TaskContextMode = 'group' | 'isolated';

/** `done`: a one-off task that has run; it is kept for its log, never fired again. */
export type TaskStatus = 'active' | 'paused' | 'done';

/**
 * `running` until the run ends (success, error, timeout); `skipped` and `missed` are due times
 * that did not run (the group was paused; the app was closed past the grace window).
 */
export type TaskRunStatus = 'running' | 'success' | 'error' | 'skipped' | 'missed' | 'timeout';

export interface Task {
  /** `t_` and 8 random lowercase letters and digits. */
  id: string;
  groupJid: string;
  prompt: string;
  schedule: TaskSchedule;
  /** The task's timezone: the cron's own, and the one its times are shown in. */
  timezone: string;
  contextMode: TaskContextMode;
  /** Whether the run's final result is posted to the chat (the agent may post meanwhile). */
  postResult: boolean;
  status: TaskStatus;
  /** Why the task was paused (by the user, or after too many failures); null when not paused. */
  pausedReason: string | null;
  /** The next due time; null when there is none (paused, done). */
  nextRun: number | null;
  /** When the last run started. */
  lastRun: number | null;
  lastStatus: TaskRunStatus | null;
  lastResult: string | null;
  lastError: string | null;
  /** Runs in a row that ended in error or timeout; a success resets it. */
  consecutiveFailures: number;
  /** Who made it: `cli`, or `agent:<group folder>` for a task scheduled by an agent. */
  createdBy: string;
  createdAt: number;
  updatedAt: number;
}

export interface NewTask {
  groupJid: string;
  prompt: string;
  schedule: TaskSchedule;
  /** For a cron task, must equal the schedule's own timezone. */
  timezone: string;
  contextMode: TaskContextMode;
  postResult: boolean;
  /** The first due time, computed by the scheduler; null for none. */
  nextRun: number | null;
  createdBy: string;
}

/** What the store's `updateTask` may change; fields left out stay as they are. */
export interface TaskChanges {
  prompt?: string;
  /** A new schedule. Pass `timezone` and `nextRun` with it: the store does not compute times. */
  schedule?: TaskSchedule;
  timezone?: string;
  contextMode?: TaskContextMode;
  postResult?: boolean;
  nextRun?: number | null;
}

export interface TaskRun {
  id: number;
  taskId: string;
  /** The due time this row stands for; unique per task. */
  dueAt: number;
  /**
   * When the run's turn began in its container: after any wait in the queue and the container's
   * start, which `startedAt - dueAt` shows. null for a skipped or missed due time.
   */
  startedAt: number | null;
  finishedAt: number | null;
  /** From `startedAt` to the end: how long the agent worked on the task. */
  durationMs: number | null;
  status: TaskRunStatus;
  resultSummary: string | null;
  /** Why the run failed, or, for a skipped or missed due time, why it did not run. */
  error: string | null;
  inputTokens: number | null;
  outputTokens: number | null;
}

/** How a claimed run ended, for the store's `finishRun`. */
export interface TaskRunOutcome {
  status: 'success' | 'error' | 'timeout';
  finishedAt: number;
  resultSummary?: string | null;
  error?: string | null;
  usage?: { inputTokens: number; outputTokens: number } | null;
}

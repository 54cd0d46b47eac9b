/**
 * The core's event bus. Stored messages, finished turns and run outcomes are announced
 * here; the control server, the tray and tests listen. Nothing polls.
 */
import { EventEmitter } from 'node:events';
import type { ChannelName, ChannelState } from './channels/channel.js';
import type { TaskChange } from './scheduler/task-admin.js';
import type { SetupProblem } from './setup.js';
import type { OutboxItem, StoredMessage, TaskRunStatus } from './store/index.js';

/** See the `run:activity` event. */
export type RunActivity = 'starting' | 'thinking' | 'tool';

/** How a due time of a task ended, as the `task:finished` event tells it. */
export type TaskFinishedStatus = Exclude<TaskRunStatus, 'running'>;

/** The `task:finished` event: one per due time, whatever became of it. */
export interface TaskFinished {
  taskId: string;
  groupJid: string;
  status: TaskFinishedStatus;
  /** The due time, epoch ms. */
  dueAt: number;
  /** One line: the start of the result, or why it failed, was skipped or missed. */
  summary: string;
  durationMs: number | null;
  /** Failures in a row, this one included (0 after a success). */
  consecutiveFailures: number;
  /** This failure made the chat be told the task keeps failing, or paused the task. */
  alert: 'failing' | 'paused' | null;
}

export interface CoreEvents {
  'message:stored': { message: StoredMessage; groupJid: string | null; triggered: boolean };
  /** A turn was committed (or closed with a notice). `throughSeq` is null for a task's turn. */
  'turn:finished': { groupJid: string; turnId: string; throughSeq: number | null };
  'run:started': { groupJid: string; runId: string; container: string };
  /**
   * What a run is doing: starting its container, waiting for the model, or about to run the
   * tools the model asked for (their names). For progress lines, not for bookkeeping.
   */
  'run:activity': {
    groupJid: string;
    runId: string;
    activity: RunActivity;
    tools?: string[];
  };
  'run:finished': { groupJid: string; runId: string; ok: boolean; error?: string };
  'run:gave-up': { groupJid: string; error: string; attempts: number };
  /** A group was added, removed, paused or resumed, or its settings changed, from any client. */
  'group:changed': {
    groupJid: string;
    change: 'added' | 'removed' | 'paused' | 'resumed' | 'settings';
  };
  /** A channel's connection changed state (connecting, qr, pairing code, open, closed). */
  'channel:state': { channel: ChannelName; state: ChannelState };
  /** The assistant started or stopped "typing" in a chat (a turn for it runs). */
  'chat:typing': { chatJid: string; typing: boolean };
  /** An outbox item was delivered, or failed for good. */
  'outbox:settled': { item: OutboxItem; outcome: 'sent' | 'failed' };
  /**
   * Whether agents can run changed: a set-up problem (no key, no engine, no image, an image
   * being built, with its progress) appeared, changed or was fixed. Work is held while any is open.
   */
  'setup:changed': { ready: boolean; problems: SetupProblem[] };
  /**
   * A scheduled task's due time ended: it ran (success, error, timeout), or it did not
   * (skipped, missed). One per due time; the tray's notifications are built on it.
   */
  'task:finished': TaskFinished;
  /** A task was added, changed, paused, resumed or removed (the CLI, the window, an agent). */
  'task:changed': TaskChange;
  /**
   * A channel told of a chat not known before, or by a new name: the window's list of chats
   * that could be enabled as groups follows it.
   */
  'chat:seen': { jid: string; channel: ChannelName };
  /**
   * A group reached its daily budget (budget.ts): its runs stop until local midnight
   * (`resetsAt`). Once per group and local day, when the chat is told.
   */
  'budget:reached': {
    groupJid: string;
    /** The cap reached, in words: `200,000 tokens`, `$1.50`. */
    limit: string;
    /** What was used of it today, in words. */
    used: string;
    /** The local day, `YYYY-MM-DD`. */
    day: string;
    /** The next local midnight, epoch ms. */
    resetsAt: number;
  };
}

type Listener<K extends keyof CoreEvents> = (payload: CoreEvents[K]) => void;

/**
 * A typed wrapper over EventEmitter, so a misspelt event name is a compile error. A listener
 * that throws is reported to `onListenerError` and never reaches the emitter: announcing an
 * event cannot break the code that announced it (a run settling, a delivery being recorded).
 */
export class CoreEventBus {
  private readonly emitter = new EventEmitter();

  constructor(
    private readonly onListenerError: (event: keyof CoreEvents, err: unknown) => void = () =>
      undefined,
  ) {
    // The control server adds one listener per waiting `send --wait`.
    this.emitter.setMaxListeners(1000);
  }

  emit<K extends keyof CoreEvents>(event: K, payload: CoreEvents[K]): void {
    this.emitter.emit(event, payload);
  }

  /** How many listeners are subscribed, over every event: for leak checks. */
  listenerCount(): number {
    return this.emitter
      .eventNames()
      .reduce((sum, name) => sum + this.emitter.listenerCount(name), 0);
  }

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof CoreEvents>(event: K, listener: Listener<K>): () => void {
    const guarded = (payload: CoreEvents[K]): void => {
      try {
        listener(payload);
      } catch (err) {
        this.onListenerError(event, err);
      }
    };
    this.emitter.on(event, guarded);
    return () => this.emitter.off(event, guarded);
  }
}

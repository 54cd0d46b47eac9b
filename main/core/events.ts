/**
 * The core's event bus. Stored messages, finished turns and run outcomes are announced
 * here; the control server, the tray and tests listen. Nothing polls.
 */
import { EventEmitter } from 'node:events';
import type { ChannelName, ChannelState } from './channels/channel.js';
import type { SetupProblem } from './setup.js';
import type { OutboxItem, StoredMessage } from './store/index.js';

/** See the `run:activity` event. */
export type RunActivity = 'starting' | 'thinking' | 'tool';

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
  /** A group was added, removed, paused or resumed, from any client. */
  'group:changed': { groupJid: string; change: 'added' | 'removed' | 'paused' | 'resumed' };
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

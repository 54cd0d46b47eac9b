/**
 * The core's event bus. Stored messages, finished turns and run outcomes are announced
 * here; the control server, the tray and tests listen. Nothing polls.
 */
import { EventEmitter } from 'node:events';
import type { StoredMessage } from './store/index.js';

export interface CoreEvents {
  'message:stored': { message: StoredMessage; groupJid: string | null; triggered: boolean };
  'turn:finished': { groupJid: string; turnId: string; throughSeq: number };
  'run:started': { groupJid: string; runId: string; container: string };
  'run:finished': { groupJid: string; runId: string; ok: boolean; error?: string };
  'run:gave-up': { groupJid: string; error: string; attempts: number };
  /** A group was added, removed, paused or resumed, from any client. */
  'group:changed': { groupJid: string; change: 'added' | 'removed' | 'paused' | 'resumed' };
}

type Listener<K extends keyof CoreEvents> = (payload: CoreEvents[K]) => void;

/** A typed wrapper over EventEmitter, so a misspelt event name is a compile error. */
export class CoreEventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // The control server adds one listener per waiting `send --wait`.
    this.emitter.setMaxListeners(1000);
  }

  emit<K extends keyof CoreEvents>(event: K, payload: CoreEvents[K]): void {
    this.emitter.emit(event, payload);
  }

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof CoreEvents>(event: K, listener: Listener<K>): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }
}

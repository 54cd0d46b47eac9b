/**
 * What the Activity panel lists, kept by the core from its start: runs started and finished,
 * runs given up, tasks finished, budgets reached, set-up and channel changes, each with when it
 * happened. A window opened later (the tray window after a restart of the page, a browser on
 * `serve --http`, a stream that dropped) fetches it with `activity:recent` instead of starting
 * from nothing. Kept in memory only, newest last, at most {@link RECENT_ACTIVITY_LIMIT}: the
 * durable records are the run logs and each task's run log.
 */
import type { CoreEventBus } from '../events.js';
import type { ActivityRecord, UiEventType } from '../../../preload/ipc-contract.js';
import { subscribeUiEvents } from './ui-events.js';

/** How many events are kept. */
export const RECENT_ACTIVITY_LIMIT = 200;

/** The events that are activity; chat messages, task edits and the like are not. */
const ACTIVITY_TYPES: ReadonlySet<UiEventType> = new Set<UiEventType>([
  'run:started',
  'run:finished',
  'run:gave-up',
  'task:finished',
  'budget:reached',
  'setup:changed',
  'channel:state',
]);

export class RecentActivity {
  private readonly records: ActivityRecord[] = [];
  private readonly unsubscribe: () => void;

  constructor(
    events: CoreEventBus,
    private readonly now: () => number = Date.now,
    private readonly limit = RECENT_ACTIVITY_LIMIT,
  ) {
    this.unsubscribe = subscribeUiEvents(events, (event) => {
      if (!ACTIVITY_TYPES.has(event.type)) return;
      this.records.push({ at: this.now(), event });
      if (this.records.length > this.limit) this.records.shift();
    });
  }

  /** The kept events, newest first. */
  list(): ActivityRecord[] {
    return [...this.records].reverse();
  }

  /** Stops listening (at shutdown). */
  close(): void {
    this.unsubscribe();
  }
}

/**
 * Activity: the recent runs and errors, newest first: what the core kept since it started
 * (`activity:recent`) and the replies that could not be delivered (from `status:get`), then
 * each live event as it comes.
 */
import type { UiEvent } from '../../preload/ipc-contract.js';
import { h } from '../dom.js';
import { formatLocalTime } from '../view-model.js';
import type { Panel, PanelContext } from './panel.js';

/** How many entries the list keeps. @default 50 */
export const ACTIVITY_LIMIT = 50;

/** One line of the activity list. */
export interface ActivityEntry {
  at: number;
  text: string;
  error: boolean;
}

/** The activity line for an event, or null for events the list does not show. */
export function activityEntry(
  event: UiEvent,
  groupName: (jid: string) => string,
  at: number,
): ActivityEntry | null {
  switch (event.type) {
    case 'run:started':
      return { at, error: false, text: `${groupName(event.groupJid)}: run started` };
    case 'run:finished':
      return event.ok
        ? { at, error: false, text: `${groupName(event.groupJid)}: run finished` }
        : {
            at,
            error: true,
            text: `${groupName(event.groupJid)}: run failed: ${event.error ?? 'unknown error'}`,
          };
    case 'run:gave-up':
      return {
        at,
        error: true,
        text: `${groupName(event.groupJid)}: gave up after ${event.attempts} attempts: ${event.error}`,
      };
    case 'task:finished':
      return {
        at,
        error: event.status !== 'success',
        text: `${groupName(event.groupJid)}: task ${event.taskId} ${event.status}: ${event.summary}`,
      };
    case 'budget:reached':
      return {
        at,
        error: true,
        text: `${groupName(event.groupJid)}: daily budget reached (${event.used} of ${event.limit})`,
      };
    case 'setup:changed':
      return event.ready
        ? { at, error: false, text: 'Agents can run again' }
        : {
            at,
            error: true,
            text: `Agents cannot run: ${event.problems.map((p) => p.message).join('; ')}`,
          };
    case 'channel:state':
      if (event.state.state === 'closed' || event.state.state === 'needs-pairing')
        return { at, error: true, text: `${event.channel}: ${event.state.reason}` };
      if (event.state.state === 'open')
        return { at, error: false, text: `${event.channel}: connected` };
      return null;
    case 'group:changed':
    case 'message:stored':
    case 'task:changed':
    case 'chat:seen':
    case 'outbox:settled':
    case 'window:navigate':
    case 'events:resumed':
      return null;
    default: {
      const never: never = event;
      return never;
    }
  }
}

export function createActivityPanel({ api, showError }: PanelContext): Panel {
  const entries: ActivityEntry[] = [];
  const names = new Map<string, string>();
  const list = h('ol', {
    class: 'activity',
    'aria-label': 'Recent activity',
    'aria-live': 'polite',
  });
  const element = h('div', {}, h('h2', {}, 'Activity'), list);

  function render(): void {
    list.replaceChildren(
      ...entries.map((entry) =>
        h(
          'li',
          { class: entry.error ? 'error' : '' },
          h('time', { datetime: new Date(entry.at).toISOString() }, formatLocalTime(entry.at)),
          ' ',
          entry.text,
        ),
      ),
    );
    if (entries.length === 0)
      list.append(
        h('li', { class: 'empty' }, 'Nothing yet: runs and errors show here as they happen.'),
      );
  }

  function add(entry: ActivityEntry): void {
    entries.unshift(entry);
    entries.sort((a, b) => b.at - a.at);
    entries.length = Math.min(entries.length, ACTIVITY_LIMIT);
    render();
  }

  return {
    id: 'activity',
    title: 'Activity',
    element,
    /**
     * Fetches the list again as the core kept it (on start, on focus, and after the event
     * stream was down), with the replies that could not be delivered; live events add to it
     * meanwhile.
     */
    async refresh() {
      const [groups, status, recent] = await Promise.all([
        api.groups.list(),
        api.status.get(),
        api.activity.recent(),
      ]);
      for (const group of groups) names.set(group.jid, group.name);
      const groupName = (jid: string): string => names.get(jid) ?? jid;
      entries.length = 0;
      for (const record of recent) {
        const entry = activityEntry(record.event, groupName, record.at);
        if (entry) entries.push(entry);
      }
      for (const failure of status.outbox.recentFailures)
        entries.push({
          at: failure.at,
          error: true,
          text: `A reply to ${groupName(failure.chatJid)} was not delivered: ${failure.error ?? 'unknown error'}`,
        });
      entries.sort((a, b) => b.at - a.at);
      entries.length = Math.min(entries.length, ACTIVITY_LIMIT);
      render();
    },
    onEvent(event) {
      // A new or renamed group: its name, not its jid, in the lines to come.
      if (event.type === 'group:changed') void this.refresh().catch(showError);
      const entry = activityEntry(event, (jid) => names.get(jid) ?? jid, Date.now());
      if (entry) add(entry);
    },
  };
}

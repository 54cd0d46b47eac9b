/**
 * Desktop notifications, for what the person at the computer should know without opening the
 * window: a scheduled job finished (with its result) or failed, WhatsApp needs pairing again or
 * was taken over by another computer, the container engine is not running, no API key is set
 * (a first start), a group reached its daily budget, or a group's runs were given up after
 * every retry (DESIGN.md §5).
 *
 * The rules are the pure {@link notificationFor}; {@link startNotifications} wires them to the
 * core's events, respects the notifications setting, and shows a lasting condition (an engine
 * down, WhatsApp unlinked) once per spell, not once per event. Electron's `Notification` is
 * injected, so this is tested with `test/fakes/electron.ts`.
 */
import type { ChannelName, ChannelState } from '../core/channels/channel.js';
import type { Core } from '../core/core.js';
import type { CoreEvents, TaskFinished } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import type { SetupProblem } from '../core/setup.js';

/** What clicking a notification does. */
export type NotificationAction =
  /** Open the tray window, showing this route (`tasks/<id>`) if given. */
  { kind: 'open-window'; route?: string };

export interface NotificationContent {
  title: string;
  body: string;
  action: NotificationAction | null;
  /**
   * A lasting condition this notification reports (`engine`, `no-key`, `whatsapp`): it is shown once,
   * and again only after {@link endedSpells} says the condition ended.
   */
  spell?: string;
}

/** A core event with the names the rules need, resolved by the wiring. */
export type NotifiableEvent =
  | { kind: 'task:finished'; task: TaskFinished; groupName: string }
  | { kind: 'run:gave-up'; groupName: string; error: string; attempts: number }
  | {
      kind: 'channel:state';
      channel: ChannelName;
      state: ChannelState;
      /** The channel's state before this one, if any was seen. */
      previous: ChannelState | null;
    }
  | { kind: 'setup:changed'; problems: readonly SetupProblem[] }
  | ({ kind: 'budget:reached'; groupName: string } & Omit<
      CoreEvents['budget:reached'],
      'groupJid'
    >);

/** The settings the rules read. */
export interface NotificationSettings {
  /** Off: nothing is shown. @default true */
  notifications: boolean;
  /** For the budget's reset time. @default the system's */
  timezone?: string;
}

const MAX_BODY = 240;
const REPLACED_CODE = 440;

function clip(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= MAX_BODY ? oneLine : `${oneLine.slice(0, MAX_BODY - 1)}…`;
}

/** The notification an event deserves, or null. Pure: the same event and settings, the same answer. */
export function notificationFor(
  event: NotifiableEvent,
  settings: NotificationSettings,
): NotificationContent | null {
  if (!settings.notifications) return null;
  switch (event.kind) {
    case 'task:finished':
      return taskNotification(event.task, event.groupName);
    case 'run:gave-up':
      return {
        title: `Clawbar: ${event.groupName} could not be answered`,
        body: clip(`The agent failed ${event.attempts} times: ${event.error}`),
        action: { kind: 'open-window' },
      };
    case 'channel:state':
      return channelNotification(event.channel, event.state, event.previous);
    case 'setup:changed': {
      // The engine first: with it down nothing else can even be checked.
      const engine = event.problems.find((p) => p.kind === 'engine');
      if (engine)
        return {
          title: 'Clawbar: the container engine is not running',
          body: clip(engine.fix ? `${engine.message}. ${engine.fix}` : engine.message),
          action: { kind: 'open-window' },
          spell: 'engine',
        };
      // A first start: nothing else tells a new user where the key goes.
      if (event.problems.some((p) => p.kind === 'no-key'))
        return {
          title: 'Clawbar needs your Anthropic API key',
          body: 'Add it in Settings. Messages wait until then, and nothing is lost.',
          action: { kind: 'open-window', route: 'settings' },
          spell: 'no-key',
        };
      return null;
    }
    case 'budget:reached': {
      const resets = new Date(event.resetsAt).toLocaleTimeString('en-GB', {
        hour: '2-digit',
        minute: '2-digit',
        ...(settings.timezone ? { timeZone: settings.timezone } : {}),
      });
      return {
        title: `Clawbar: ${event.groupName} reached its daily budget`,
        body: clip(`Used ${event.used} of ${event.limit}. Runs stop until ${resets}.`),
        action: { kind: 'open-window' },
      };
    }
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

function taskNotification(task: TaskFinished, groupName: string): NotificationContent | null {
  const action: NotificationAction = { kind: 'open-window', route: `tasks/${task.taskId}` };
  switch (task.status) {
    case 'success':
      return {
        title: `Clawbar: ${groupName} finished a scheduled job`,
        body: clip(task.summary || 'Done, with no reply.'),
        action,
      };
    case 'error':
    case 'timeout': {
      const why = task.status === 'timeout' ? 'timed out' : 'failed';
      const alert =
        task.alert === 'paused'
          ? ' It failed too often and was paused.'
          : task.alert === 'failing'
            ? ` It has failed ${task.consecutiveFailures} times in a row.`
            : '';
      return {
        title: `Clawbar: a scheduled job in ${groupName} ${why}`,
        body: clip(`${task.summary}${alert}`),
        action,
      };
    }
    // Not run at all: the chat history and the window say so; a notification would be noise.
    case 'skipped':
    case 'missed':
      return null;
    default: {
      const unreachable: never = task.status;
      return unreachable;
    }
  }
}

function channelNotification(
  channel: ChannelName,
  state: ChannelState,
  previous: ChannelState | null,
): NotificationContent | null {
  if (channel !== 'whatsapp') return null;
  if (state.state === 'closed' && state.code === REPLACED_CODE && !state.retrying) {
    return {
      title: 'Clawbar: WhatsApp was opened on another computer',
      body: 'Clawbar stopped using WhatsApp here. Pair again from the Clawbar window to use it.',
      action: { kind: 'open-window', route: 'connection' },
      spell: 'whatsapp',
    };
  }
  if (state.state !== 'needs-pairing') return null;
  // A phone that was never linked (or that the user unlinked) is not news; a lost link is.
  const lostLink = state.code !== undefined || previous?.state === 'open';
  if (!lostLink) return null;
  return {
    title: 'Clawbar: WhatsApp needs pairing',
    body: clip(`${state.reason}. Pair again from the Clawbar window.`),
    action: { kind: 'open-window', route: 'connection' },
    spell: 'whatsapp',
  };
}

/** The lasting conditions an event shows to be over, so they may be notified again. */
export function endedSpells(event: NotifiableEvent): string[] {
  if (event.kind === 'setup:changed')
    return (['engine', 'no-key'] as const).filter(
      (kind) => !event.problems.some((p) => p.kind === kind),
    );
  if (
    event.kind === 'channel:state' &&
    event.channel === 'whatsapp' &&
    event.state.state === 'open'
  )
    return ['whatsapp'];
  return [];
}

/** The part of Electron's `Notification` used here. */
export interface NotificationLike {
  show(): void;
  on(event: 'click', listener: () => void): unknown;
}

export interface NotificationClass {
  new (options: { title: string; body: string }): NotificationLike;
  isSupported(): boolean;
}

export interface NotificationDeps {
  Notification: NotificationClass;
  core: Pick<Core, 'events' | 'groups' | 'setupProblems'>;
  /** Read at each event, so a change in Settings applies at once. */
  settings(): NotificationSettings;
  /** Carries out a clicked notification's action (opens the window). */
  onAction(action: NotificationAction): void;
  log: Logger;
}

/**
 * Shows notifications for the core's events until the returned function is called. Shown
 * notifications are kept referenced until clicked or stopped: a notification object that is
 * garbage-collected loses its click handler (Electron docs, Notification).
 */
export function startNotifications(deps: NotificationDeps): () => void {
  const log = deps.log.child({ mod: 'notifications' });
  const { core } = deps;
  const openSpells = new Set<string>();
  const channelStates = new Map<ChannelName, ChannelState>();
  const live = new Set<NotificationLike>();
  // The group may have been removed meanwhile; then its jid names it.
  const nameOf = (jid: string) => core.groups.list().find((g) => g.jid === jid)?.name ?? jid;

  const handle = (event: NotifiableEvent): void => {
    for (const spell of endedSpells(event)) openSpells.delete(spell);
    const content = notificationFor(event, deps.settings());
    if (!content) return;
    if (content.spell) {
      if (openSpells.has(content.spell)) return;
      openSpells.add(content.spell);
    }
    if (!deps.Notification.isSupported()) {
      log.info({ title: content.title }, 'desktop notifications are not supported here');
      return;
    }
    const shown = new deps.Notification({ title: content.title, body: content.body });
    const { action } = content;
    live.add(shown);
    shown.on('click', () => {
      live.delete(shown);
      if (action) deps.onAction(action);
    });
    shown.show();
  };

  const unsubscribe = [
    core.events.on('task:finished', (task) =>
      handle({ kind: 'task:finished', task, groupName: nameOf(task.groupJid) }),
    ),
    core.events.on('run:gave-up', ({ groupJid, error, attempts }) =>
      handle({ kind: 'run:gave-up', groupName: nameOf(groupJid), error, attempts }),
    ),
    core.events.on('channel:state', ({ channel, state }) => {
      const previous = channelStates.get(channel) ?? null;
      channelStates.set(channel, state);
      handle({ kind: 'channel:state', channel, state, previous });
    }),
    core.events.on('setup:changed', ({ problems }) => handle({ kind: 'setup:changed', problems })),
    core.events.on('budget:reached', ({ groupJid, ...rest }) =>
      handle({ kind: 'budget:reached', groupName: nameOf(groupJid), ...rest }),
    ),
  ];
  // What is wrong already at start (no key on a first start, no engine) is news too: its
  // set-up event came before this listened.
  const atStart = core.setupProblems();
  if (atStart.length > 0) handle({ kind: 'setup:changed', problems: atStart });
  return () => {
    for (const off of unsubscribe) off();
    live.clear();
  };
}

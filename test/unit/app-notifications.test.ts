import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  endedSpells,
  notificationFor,
  startNotifications,
  type NotifiableEvent,
  type NotificationAction,
} from '../../main/app/notifications.js';
import type { TaskFinished } from '../../main/core/events.js';
import { silentLogger } from '../../main/core/logger.js';
import { Notification, resetElectronFake } from '../fakes/electron.js';
import { processCore, startUnitCore, type UnitCore } from '../helpers/unit-core.js';

const on = { notifications: true };

function task(overrides: Partial<TaskFinished> = {}): TaskFinished {
  return {
    taskId: 'task-1',
    groupJid: 'local:family',
    status: 'success',
    dueAt: 0,
    summary: 'Weather today: sunny, 21°C',
    durationMs: 1200,
    consecutiveFailures: 0,
    alert: null,
    ...overrides,
  };
}

const finished = (t: TaskFinished): NotifiableEvent => ({
  kind: 'task:finished',
  task: t,
  groupName: 'Family',
});
const engineDown = {
  kind: 'setup:changed' as const,
  problems: [
    { kind: 'engine' as const, message: 'the Docker engine is not reachable', fix: 'start Docker' },
  ],
};

describe('the notification rules', () => {
  it('a finished job shows its result, and a click opens the window on the task', () => {
    expect(notificationFor(finished(task()), on)).toEqual({
      title: 'Clawbar: Family finished a scheduled job',
      body: 'Weather today: sunny, 21°C',
      action: { kind: 'open-window', route: 'tasks/task-1' },
    });
  });

  it('a failed or timed-out job says so, with its alert', () => {
    expect(
      notificationFor(
        finished(
          task({
            status: 'error',
            summary: 'tool failed',
            alert: 'failing',
            consecutiveFailures: 3,
          }),
        ),
        on,
      ),
    ).toMatchObject({
      title: 'Clawbar: a scheduled job in Family failed',
      body: 'tool failed It has failed 3 times in a row.',
    });
    expect(
      notificationFor(
        finished(task({ status: 'timeout', summary: 'no output', alert: 'paused' })),
        on,
      ),
    ).toMatchObject({
      title: 'Clawbar: a scheduled job in Family timed out',
      body: 'no output It failed too often and was paused.',
    });
  });

  it('a skipped or missed job shows nothing', () => {
    expect(notificationFor(finished(task({ status: 'skipped' })), on)).toBeNull();
    expect(notificationFor(finished(task({ status: 'missed' })), on)).toBeNull();
  });

  it('WhatsApp: a lost link or a takeover is news; never having paired is not', () => {
    const whatsapp = (state: NotifiableEvent & { kind: 'channel:state' }) =>
      notificationFor(state, on);
    expect(
      whatsapp({
        kind: 'channel:state',
        channel: 'whatsapp',
        state: { state: 'needs-pairing', reason: 'logged out from the phone', code: 401 },
        previous: null,
      }),
    ).toMatchObject({ title: 'Clawbar: WhatsApp needs pairing', spell: 'whatsapp' });
    expect(
      whatsapp({
        kind: 'channel:state',
        channel: 'whatsapp',
        state: { state: 'needs-pairing', reason: 'credentials unreadable' },
        previous: { state: 'open' },
      }),
    ).not.toBeNull();
    expect(
      whatsapp({
        kind: 'channel:state',
        channel: 'whatsapp',
        state: { state: 'needs-pairing', reason: 'no phone is linked' },
        previous: null,
      }),
    ).toBeNull();
    expect(
      whatsapp({
        kind: 'channel:state',
        channel: 'whatsapp',
        state: { state: 'closed', reason: 'replaced', code: 440, retrying: false },
        previous: { state: 'open' },
      }),
    ).toMatchObject({ title: 'Clawbar: WhatsApp was opened on another computer' });
    expect(
      whatsapp({
        kind: 'channel:state',
        channel: 'whatsapp',
        state: { state: 'closed', reason: 'lost', code: 428, retrying: true },
        previous: { state: 'open' },
      }),
    ).toBeNull();
  });

  it('the container engine not running is news; an image being built is not', () => {
    expect(notificationFor(engineDown, on)).toEqual({
      title: 'Clawbar: the container engine is not running',
      body: 'the Docker engine is not reachable. start Docker',
      action: { kind: 'open-window' },
      spell: 'engine',
    });
    expect(
      notificationFor(
        { kind: 'setup:changed', problems: [{ kind: 'image-building', message: 'b', fix: null }] },
        on,
      ),
    ).toBeNull();
    expect(endedSpells({ kind: 'setup:changed', problems: [] })).toEqual(['engine', 'no-key']);
    expect(endedSpells(engineDown)).toEqual(['no-key']);
  });

  it('no API key sends the user to Settings, unless the engine is down, which comes first', () => {
    const noKey = { kind: 'no-key' as const, message: 'no Anthropic API key is set', fix: 'x' };
    expect(notificationFor({ kind: 'setup:changed', problems: [noKey] }, on)).toEqual({
      title: 'Clawbar needs your Anthropic API key',
      body: 'Add it in Settings. Messages wait until then, and nothing is lost.',
      action: { kind: 'open-window', route: 'settings' },
      spell: 'no-key',
    });
    expect(
      notificationFor({ kind: 'setup:changed', problems: [...engineDown.problems, noKey] }, on),
    ).toMatchObject({ spell: 'engine' });
    expect(endedSpells({ kind: 'setup:changed', problems: [noKey] })).toEqual(['engine']);
  });

  it('a reached budget names the group, the use and when it resets', () => {
    const content = notificationFor(
      {
        kind: 'budget:reached',
        groupName: 'Work',
        limit: '$1.50',
        used: '$1.52',
        day: '2025-01-01',
        resetsAt: Date.UTC(2025, 0, 2, 0, 0),
      },
      { notifications: true, timezone: 'UTC' },
    );
    expect(content).toMatchObject({
      title: 'Clawbar: Work reached its daily budget',
      body: 'Used $1.52 of $1.50. Runs stop until 00:00.',
    });
  });

  it('nothing at all when notifications are off', () => {
    const off = { notifications: false };
    expect(notificationFor(finished(task()), off)).toBeNull();
    expect(notificationFor(engineDown, off)).toBeNull();
    expect(
      notificationFor({ kind: 'run:gave-up', groupName: 'Family', error: 'x', attempts: 2 }, off),
    ).toBeNull();
  });

  it('clips a long body to one line', () => {
    const content = notificationFor(finished(task({ summary: 'line\n'.repeat(200) })), on);
    expect(content?.body.length).toBeLessThanOrEqual(240);
    expect(content?.body).not.toMatch(/\n/);
  });
});

describe('the notification wiring', () => {
  let unit: UnitCore;
  let enabled: boolean;
  let actions: NotificationAction[];
  let stop: () => void;
  let startShown: Array<{ title: string; body: string }>;

  beforeEach(async () => {
    resetElectronFake();
    unit = await startUnitCore();
    unit.core.addGroup({ name: 'Family' });
    enabled = true;
    actions = [];
    stop = startNotifications({
      Notification,
      core: unit.core,
      settings: () => ({ notifications: enabled }),
      onAction: (action) => actions.push(action),
      log: silentLogger(),
    });
    // This core's engine is "unavailable" from its start, which is news at once; the tests
    // below look at what comes after.
    startShown = Notification.shown.splice(0);
    Notification.instances.splice(0);
  });

  afterEach(async () => {
    stop();
    await unit.close();
  });

  it('shows a finished job under the group’s name; clicking it opens the task', () => {
    const family = unit.core.groups.list()[0]!;
    unit.core.events.emit('task:finished', task({ groupJid: family.jid }));
    expect(Notification.shown).toEqual([
      { title: 'Clawbar: Family finished a scheduled job', body: 'Weather today: sunny, 21°C' },
    ]);
    Notification.instances[0]!.click();
    expect(actions).toEqual([{ kind: 'open-window', route: 'tasks/task-1' }]);
  });

  it('shows the engine being down once per spell, not on every set-up change', () => {
    // Down already when the wiring started: shown then, with the core's own reason.
    expect(startShown).toEqual([
      { title: 'Clawbar: the container engine is not running', body: expect.any(String) },
    ]);
    const problems = engineDown.problems;
    unit.core.events.emit('setup:changed', { ready: false, problems });
    unit.core.events.emit('setup:changed', { ready: false, problems });
    expect(Notification.shown).toHaveLength(0);
    unit.core.events.emit('setup:changed', { ready: true, problems: [] });
    unit.core.events.emit('setup:changed', { ready: false, problems });
    unit.core.events.emit('setup:changed', { ready: false, problems });
    expect(Notification.shown).toHaveLength(1);
  });

  it('shows WhatsApp needing pairing once until it is open again', () => {
    const lost = { state: 'needs-pairing' as const, reason: 'logged out', code: 401 };
    unit.core.events.emit('channel:state', { channel: 'whatsapp', state: lost });
    unit.core.events.emit('channel:state', { channel: 'whatsapp', state: lost });
    expect(Notification.shown).toHaveLength(1);
    unit.core.events.emit('channel:state', { channel: 'whatsapp', state: { state: 'open' } });
    unit.core.events.emit('channel:state', { channel: 'whatsapp', state: lost });
    expect(Notification.shown).toHaveLength(2);
  });

  it('reads the setting at each event, and stops listening when stopped', () => {
    enabled = false;
    unit.core.events.emit('budget:reached', {
      groupJid: 'local:x',
      limit: '1 token',
      used: '2 tokens',
      day: '2025-01-01',
      resetsAt: 0,
    });
    expect(Notification.shown).toHaveLength(0);
    enabled = true;
    const before = unit.core.events.listenerCount();
    stop();
    expect(unit.core.events.listenerCount()).toBe(before - 5);
    unit.core.events.emit('run:gave-up', { groupJid: 'local:x', error: 'x', attempts: 1 });
    expect(Notification.shown).toHaveLength(0);
  });
});

describe('the first start with no API key', () => {
  it('is news at once, a click opens Settings, and it is news again only after a key came and went', async () => {
    resetElectronFake();
    const made = processCore({
      prefix: 'clawbar-notify-key-',
      // Nothing listens there: no call is made without a key.
      api: { url: 'http://127.0.0.1:9', apiKey: '' },
    });
    await made.core.start();
    const actions: NotificationAction[] = [];
    const stop = startNotifications({
      Notification,
      core: made.core,
      settings: () => ({ notifications: true }),
      onAction: (action) => actions.push(action),
      log: silentLogger(),
    });
    try {
      expect(Notification.shown).toEqual([
        {
          title: 'Clawbar needs your Anthropic API key',
          body: 'Add it in Settings. Messages wait until then, and nothing is lost.',
        },
      ]);
      Notification.instances[0]!.click();
      expect(actions).toEqual([{ kind: 'open-window', route: 'settings' }]);
      made.core.setApiKey('sk-ant-api03-notification-test-key');
      expect(Notification.shown).toHaveLength(1);
      made.core.setApiKey(undefined);
      expect(Notification.shown).toHaveLength(2);
    } finally {
      stop();
      await made.close();
    }
  });
});

import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { forwardEvents } from '../../main/app/events-bridge.js';
import { createUiApi, type UiApi } from '../../main/core/control/ui-api.js';
import { subscribeUiEvents } from '../../main/core/control/ui-events.js';
import { CoreEventBus } from '../../main/core/events.js';
import { silentLogger } from '../../main/core/logger.js';
import type { Group, OutboxItem } from '../../main/core/store/index.js';
import {
  createClawbarApi,
  IPC,
  UI_EVENT_CHANNEL,
  type UiEvent,
  type UiSettings,
} from '../../preload/ipc-contract.js';
import { startUnitCore, type UnitCore } from '../helpers/unit-core.js';

let unit: UnitCore;
let family: Group;
let api: UiApi;

beforeEach(async () => {
  unit = await startUnitCore();
  family = unit.core.addGroup({ name: 'Family' });
  api = createUiApi({ core: unit.core, serving: true, log: silentLogger() });
});

afterEach(async () => {
  await unit.close();
});

describe('the shared UI dispatch (IPC and HTTP)', () => {
  it('refuses a channel the contract does not have, naming it, before the core', async () => {
    const pause = vi.spyOn(unit.core, 'pauseGroup');
    await expect(api.call('groups:remove', [{ group: 'Family' }])).rejects.toThrow(
      'unknown channel "groups:remove"',
    );
    await expect(api.call('constructor', [])).rejects.toThrow(/unknown channel/);
    expect(pause).not.toHaveBeenCalled();
    expect(unit.store.getGroup(family.jid)).toBeDefined();
  });

  it('pauses and resumes every group at once, answering with the groups it changed', async () => {
    const work = unit.core.addGroup({ name: 'Work' });
    unit.core.pauseGroup(work.jid);
    const paused = (await api.call(IPC.groupsPauseAll, [])) as Array<{ jid: string }>;
    expect(paused.map((g) => g.jid)).toEqual([family.jid]);
    expect(unit.core.groups.list().every((g) => g.paused)).toBe(true);
    const resumed = (await api.call(IPC.groupsResumeAll, [])) as Array<{ jid: string }>;
    expect(resumed.map((g) => g.jid).sort()).toEqual([family.jid, work.jid].sort());
    expect(unit.core.groups.list().some((g) => g.paused)).toBe(false);
  });

  it('lists groups with their usage today, as `clawbar groups list` does', async () => {
    const groups = (await api.call(IPC.groupsList, [])) as Array<Record<string, unknown>>;
    expect(groups).toHaveLength(1);
    expect(groups[0]).toMatchObject({ jid: family.jid, usageToday: expect.any(Object) });
  });

  it('creates, pauses, lists and deletes a task through the same core calls as the CLI', async () => {
    const task = (await api.call(IPC.tasksCreate, [
      { group: 'Family', prompt: 'water the plants', every: '1h' },
    ])) as { id: string };
    expect(unit.store.listTasks().map((t) => t.id)).toEqual([task.id]);
    await api.call(IPC.tasksPause, [{ id: task.id }]);
    expect(unit.store.getTask(task.id)?.status).toBe('paused');
    const listing = (await api.call(IPC.tasksList, [])) as { tasks: Array<{ id: string }> };
    expect(listing.tasks.map((t) => t.id)).toEqual([task.id]);
    await expect(api.call(IPC.tasksRuns, [{ id: task.id }])).resolves.toMatchObject({
      id: task.id,
      runs: [],
    });
    await api.call(IPC.tasksDelete, [{ id: task.id }]);
    expect(unit.store.listTasks()).toEqual([]);
  });

  it("passes the core's own check of a task's schedule through", async () => {
    await expect(
      api.call(IPC.tasksCreate, [{ group: 'Family', prompt: 'x', every: 'now and then' }]),
    ).rejects.toThrow(/interval "now and then" is not a duration/);
    expect(unit.store.listTasks()).toEqual([]);
  });

  it('sends to a local group and reads its messages back', async () => {
    const sent = (await api.call(IPC.messagesSend, [{ group: 'Family', text: '@Andy hello' }])) as {
      stored: { text: string; from: string };
      triggered: boolean;
    };
    expect(sent.stored).toMatchObject({ text: '@Andy hello', from: 'you' });
    expect(sent.triggered).toBe(true);
    const messages = (await api.call(IPC.messagesList, [{ group: 'Family' }])) as Array<{
      text: string;
    }>;
    // The unit core has no container runtime: its notice follows the message.
    expect(messages[0]?.text).toBe('@Andy hello');
  });

  it('enables a known chat as a group, and refuses a chat nobody has seen', async () => {
    await expect(api.call(IPC.chatsEnable, [{ jid: '12036304@g.us' }])).rejects.toThrow(
      /no chat with jid "12036304@g.us" is known/,
    );
    expect(unit.core.groups.list()).toHaveLength(1);
  });

  it('says WhatsApp is not enabled, and refuses to pair without it', async () => {
    await expect(api.call(IPC.whatsappState, [])).resolves.toEqual({
      enabled: false,
      state: null,
      lastDisconnect: null,
    });
    await expect(api.call(IPC.whatsappPair, [{ phone: '+15551234567' }])).rejects.toThrow(
      /no WhatsApp channel/,
    );
  });

  it('in headless serve, says the key comes from the environment and refuses to change it', async () => {
    // unit.core's broker throws on every call but has no key to speak of: none configured.
    expect(await api.call(IPC.apiKeyStatus, [])).toEqual({
      source: unit.core.keyConfigured() ? 'environment' : 'none',
      editable: false,
      app: 'serve',
      protection: 'unavailable',
    });
    for (const [channel, args] of [
      [IPC.apiKeySet, [{ key: 'sk-ant-api03-abcdefghijklmnop' }]],
      [IPC.apiKeyClear, []],
    ] as const)
      await expect(api.call(channel, args)).rejects.toThrow(
        /comes from ANTHROPIC_API_KEY in its environment; set it there and restart serve/,
      );
    // A call's shape is checked first, and the message never echoes the value.
    const bad = await api.call(IPC.apiKeySet, [{ key: 'sk-ant-x', extra: 1 }]).catch((e) => e);
    expect(String(bad)).toMatch(/apiKey:set: unknown key "extra"/);
    expect(String(bad)).not.toContain('sk-ant-x');
  });

  it('refuses settings without a store, and passes a checked patch to one', async () => {
    await expect(api.call(IPC.settingsGet, [])).rejects.toThrow(
      /settings are kept by the desktop app/,
    );
    let stored: UiSettings = { assistantName: 'Andy', notifications: true };
    const set = vi.fn((patch: UiSettings) => (stored = { ...stored, ...patch }));
    const withStore = createUiApi({
      core: unit.core,
      serving: true,
      settings: { get: () => stored, set },
      log: silentLogger(),
    });
    await expect(withStore.call(IPC.settingsSet, [{ notifications: false }])).resolves.toEqual({
      assistantName: 'Andy',
      notifications: false,
    });
    await expect(withStore.call(IPC.settingsSet, [{ notifications: 'no' }])).rejects.toThrow(
      /notifications must be true or false/,
    );
    expect(set).toHaveBeenCalledTimes(1);
  });
});

/** A stand-in for Electron's WebContents with what the forwarder uses. */
class FakeContents extends EventEmitter {
  readonly sent: UiEvent[] = [];
  destroyed = false;
  send(channel: string, payload: UiEvent): void {
    expect(channel).toBe(UI_EVENT_CHANNEL);
    this.sent.push(structuredClone(payload));
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit('destroyed');
  }
}

/** A window's contents, with the core's events forwarded to it. */
function forwardedWindow(): FakeContents {
  const contents = new FakeContents();
  forwardEvents({
    events: unit.core.events,
    target: contents,
    isOwnWindow: () => true,
    log: silentLogger(),
  });
  return contents;
}

describe('live events to the window', () => {
  it('forwards group changes and local messages as plain UI events', () => {
    const contents = forwardedWindow();
    unit.core.pauseGroup('Family');
    unit.core.postLocal('Family', 'you', 'just a note');
    expect(contents.sent).toEqual([
      { type: 'group:changed', groupJid: family.jid, change: 'paused' },
      {
        type: 'message:stored',
        groupJid: family.jid,
        message: expect.objectContaining({ text: 'just a note', from: 'you' }),
      },
    ]);
  });

  it('forwards task changes, whoever made them', () => {
    const contents = forwardedWindow();
    const task = unit.core.tasks.add({
      group: family,
      prompt: 'water the plants',
      every: '2h',
      createdBy: 'cli',
    });
    unit.core.tasks.pause(task.id);
    unit.core.tasks.remove(task.id);
    expect(contents.sent).toEqual([
      { type: 'task:changed', kind: 'added', taskId: task.id },
      { type: 'task:changed', kind: 'paused', taskId: task.id },
      { type: 'task:changed', kind: 'removed', taskId: task.id },
    ]);
  });

  it("tells the window of a local chat's delivered reply by chat and outcome only", () => {
    const bus = new CoreEventBus();
    const seen: UiEvent[] = [];
    const off = subscribeUiEvents(bus, (event) => seen.push(event));
    const item = (chatJid: string) =>
      ({ id: 7, chatJid, text: 'a secret reply', turnId: 't1' }) as unknown as OutboxItem;
    bus.emit('outbox:settled', { item: item(family.jid), outcome: 'sent' });
    // WhatsApp chats stay on the phone.
    bus.emit('outbox:settled', { item: item('120363000000000001@g.us'), outcome: 'sent' });
    off();
    bus.emit('outbox:settled', { item: item(family.jid), outcome: 'failed' });
    expect(seen).toEqual([{ type: 'outbox:settled', chatJid: family.jid, outcome: 'sent' }]);
  });

  it('removes every listener when the window is destroyed, so windows reopened do not leak', () => {
    const before = unit.core.events.listenerCount();
    for (let i = 0; i < 3; i++) {
      const contents = new FakeContents();
      forwardEvents({
        events: unit.core.events,
        target: contents,
        isOwnWindow: () => true,
        log: silentLogger(),
      });
      expect(unit.core.events.listenerCount()).toBeGreaterThan(before);
      contents.destroy();
      expect(unit.core.events.listenerCount()).toBe(before);
    }
    const kept = new FakeContents();
    const stop = forwardEvents({
      events: unit.core.events,
      target: kept,
      isOwnWindow: () => true,
      log: silentLogger(),
    });
    stop();
    expect(unit.core.events.listenerCount()).toBe(before);
  });

  it('sends nothing to a window that is not our own', () => {
    const stranger = new FakeContents();
    forwardEvents({
      events: unit.core.events,
      target: stranger,
      isOwnWindow: () => false,
      log: silentLogger(),
    });
    unit.core.pauseGroup('Family');
    expect(stranger.sent).toEqual([]);
  });

  it('window.clawbar.onEvent subscribes through the transport and unsubscribes', () => {
    const listeners = new Set<(event: UiEvent) => void>();
    const clawbar = createClawbarApi(
      async () => undefined,
      (listener) => {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    );
    const seen: UiEvent[] = [];
    const off = clawbar.onEvent((event) => seen.push(event));
    for (const listener of listeners)
      listener({ type: 'group:changed', groupJid: family.jid, change: 'resumed' });
    off();
    expect(listeners.size).toBe(0);
    expect(seen).toEqual([{ type: 'group:changed', groupJid: family.jid, change: 'resumed' }]);
  });
});

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { registerIpc } from '../../main/app/ipc.js';
import { APP_INDEX_URL } from '../../main/app/security.js';
import { createTrayWindow, shellPaths, trayWindowOptions } from '../../main/app/window.js';
import { silentLogger } from '../../main/core/logger.js';
import { openStore, type Group } from '../../main/core/store/index.js';
import { IPC, ipcChannels, ipcContract, type IpcChannel } from '../../preload/ipc-contract.js';
import {
  BrowserWindow,
  contextBridge,
  ipcMain,
  ipcRenderer,
  resetElectronFake,
  WebContents,
} from '../fakes/electron.js';
import { startUnitCore, type UnitCore } from '../helpers/unit-core.js';

// Only the preload imports `electron` itself; it gets the same fake the other tests inject.
vi.mock('electron', () => import('../fakes/electron.js'));

const paths = { preload: '/app/dist/preload/index.cjs', html: '/app/dist/renderer/index.html' };

let unit: UnitCore;
let family: Group;
let ownWindow: WebContents;

beforeEach(async () => {
  resetElectronFake();
  unit = await startUnitCore();
  family = unit.core.addGroup({ name: 'Family' });
  const window = createTrayWindow({ BrowserWindow, paths, log: silentLogger() });
  registerIpc({ ipcMain, isOwnWindow: window.isOwnWindow, core: unit.core, log: silentLogger() });
  window.open();
  ownWindow = BrowserWindow.instances[0]!.webContents;
});

afterEach(async () => {
  await unit.close();
});

describe('the IPC registrar', () => {
  it('registers a handler for every contract channel and for no other channel', () => {
    expect([...ipcMain.handlers.keys()].sort()).toEqual([...ipcChannels].sort());
    expect(Object.keys(ipcContract).sort()).toEqual([...ipcChannels].sort());
    expect(ipcChannels).toEqual([
      'status:get',
      'groups:list',
      'groups:pause',
      'groups:resume',
      'groups:pauseAll',
      'groups:resumeAll',
      'groups:stop',
      'chats:list',
      'chats:enable',
      'tasks:list',
      'tasks:runs',
      'tasks:create',
      'tasks:pause',
      'tasks:resume',
      'tasks:runNow',
      'tasks:delete',
      'whatsapp:state',
      'whatsapp:pair',
      'whatsapp:unlink',
      'messages:list',
      'messages:send',
      'settings:get',
      'settings:set',
      'apiKey:status',
      'apiKey:set',
      'apiKey:clear',
      'activity:recent',
    ]);
  });

  it('ignores IPC from a foreign sender: every channel rejects and the core is not called', async () => {
    const pause = vi.spyOn(unit.core, 'pauseGroup');
    const list = vi.spyOn(unit.core.groups, 'list');
    const status = vi.spyOn(unit.core, 'status');
    const stranger = new BrowserWindow({}).webContents;
    const orphan = new WebContents(); // e.g. a webview or a page with no window
    const pauseAll = vi.spyOn(unit.core.groups, 'setPaused');
    const args: Record<IpcChannel, unknown> = {
      [IPC.statusGet]: undefined,
      [IPC.groupsList]: undefined,
      [IPC.groupsPause]: { group: 'Family' },
      [IPC.groupsResume]: { group: 'Family' },
      [IPC.groupsPauseAll]: undefined,
      [IPC.groupsResumeAll]: undefined,
      [IPC.groupsStop]: { group: 'Family' },
      [IPC.chatsList]: undefined,
      [IPC.chatsEnable]: { jid: family.jid },
      [IPC.tasksList]: undefined,
      [IPC.tasksRuns]: { id: 'x' },
      [IPC.tasksCreate]: { group: 'Family', prompt: 'hi', every: '1h' },
      [IPC.tasksPause]: { id: 'x' },
      [IPC.tasksResume]: { id: 'x' },
      [IPC.tasksRunNow]: { id: 'x' },
      [IPC.tasksDelete]: { id: 'x' },
      [IPC.whatsappState]: undefined,
      [IPC.whatsappPair]: undefined,
      [IPC.whatsappUnlink]: undefined,
      [IPC.messagesList]: { group: 'Family' },
      [IPC.messagesSend]: { group: 'Family', text: '@Andy hi' },
      [IPC.settingsGet]: undefined,
      [IPC.settingsSet]: { notifications: false },
      [IPC.apiKeyStatus]: undefined,
      [IPC.apiKeySet]: { key: 'sk-ant-api03-from-a-stranger' },
      [IPC.apiKeyClear]: undefined,
      [IPC.activityRecent]: undefined,
    };
    for (const sender of [stranger, orphan]) {
      for (const channel of ipcChannels) {
        await expect(ipcMain.invoke(channel, sender, args[channel])).rejects.toThrow(
          `${channel} refused: the caller is not Clawbar's own window`,
        );
      }
    }
    expect(pause).not.toHaveBeenCalled();
    expect(pauseAll).not.toHaveBeenCalled();
    expect(list).not.toHaveBeenCalled();
    expect(status).not.toHaveBeenCalled();
    expect(unit.store.getGroup(family.jid)?.paused).toBe(false);
    expect(unit.store.listTasks()).toEqual([]);
    expect(unit.core.messages(family.jid, 10)).toEqual([]);
  });

  it('refuses the old window once it is closed', async () => {
    BrowserWindow.instances[0]!.close();
    await expect(ipcMain.invoke(IPC.groupsList, ownWindow, undefined)).rejects.toThrow(
      /not Clawbar's own window/,
    );
  });

  it.each([
    [
      'no argument',
      IPC.groupsPause,
      [undefined],
      /^groups:pause: expected \{ group: "<name, folder or jid>" \}$/,
    ],
    [
      'a number for the group',
      IPC.groupsPause,
      [{ group: 42 }],
      /^groups:pause: group: group must be a string/,
    ],
    [
      'an empty group',
      IPC.groupsResume,
      [{ group: '   ' }],
      /^groups:resume: group: group must not be empty/,
    ],
    [
      'an overlong group',
      IPC.groupsPause,
      [{ group: 'x'.repeat(257) }],
      /^groups:pause: group: group must be at most 256 characters$/,
    ],
    [
      'an unknown key',
      IPC.groupsPause,
      [{ group: 'Family', as: 'admin' }],
      /^groups:pause: unknown key "as"$/,
    ],
    [
      'a string instead of an object',
      IPC.groupsPause,
      ['Family'],
      /^groups:pause: expected \{ group/,
    ],
    [
      'an argument where none is taken',
      IPC.groupsList,
      [{ all: true }],
      /^groups:list: this call takes no argument/,
    ],
    [
      'a task with two schedules',
      IPC.tasksCreate,
      [{ group: 'Family', prompt: 'hi', every: '1h', cron: '* * * * *' }],
      /^tasks:create: give exactly one schedule: cron, every or at$/,
    ],
    [
      'a fractional limit',
      IPC.messagesList,
      [{ group: 'Family', limit: 2.5 }],
      /^messages:list: limit: limit must be a whole number$/,
    ],
    [
      'an unknown setting',
      IPC.settingsSet,
      [{ apiKey: 'sk-ant-xyz' }],
      /^settings:set: unknown key "apiKey"$/,
    ],
    [
      'a setting of the wrong type',
      IPC.settingsSet,
      [{ maxConcurrency: 'lots' }],
      /^settings:set: maxConcurrency: maxConcurrency must be a number$/,
    ],
    [
      'two arguments',
      IPC.groupsPause,
      [{ group: 'Family' }, { group: 'Work' }],
      /^groups:pause: takes at most one argument, got 2/,
    ],
  ] as const)(
    'rejects bad arguments (%s) with a clear error, before the core',
    async (_case, channel, args, message) => {
      const pause = vi.spyOn(unit.core, 'pauseGroup');
      const resume = vi.spyOn(unit.core, 'resumeGroup');
      await expect(ipcMain.invoke(channel, ownWindow, ...args)).rejects.toThrow(message);
      expect(pause).not.toHaveBeenCalled();
      expect(resume).not.toHaveBeenCalled();
      expect(unit.core.messages(family.jid, 10)).toEqual([]);
    },
  );

  it('groups:pause pauses a real group in a real Core, persisted in the SQLite file', async () => {
    const result = await ipcMain.invoke(IPC.groupsPause, ownWindow, { group: 'Family' });
    expect(result).toEqual({
      name: 'Family',
      folder: 'family',
      jid: family.jid,
      channel: 'local',
      trigger: '@Andy',
      main: false,
      paused: true,
      network: false,
      webFetch: false,
    });
    // A second connection to the same file sees the change: it was committed, not cached.
    const reader = openStore(unit.dbPath);
    try {
      expect(reader.getGroup(family.jid)?.paused).toBe(true);
    } finally {
      reader.close();
    }
  });

  it('groups:resume resumes the group, found by folder or jid as well as by name', async () => {
    unit.core.pauseGroup(family.jid);
    const result = await ipcMain.invoke(IPC.groupsResume, ownWindow, { group: 'family' });
    expect(result).toMatchObject({ jid: family.jid, paused: false });
    expect(unit.store.getGroup(family.jid)?.paused).toBe(false);
  });

  it("passes the core's own message through for an unknown group", async () => {
    await expect(ipcMain.invoke(IPC.groupsPause, ownWindow, { group: 'Nobody' })).rejects.toThrow(
      /no group named "Nobody"/,
    );
  });

  it('groups:list and status:get return plain data that survives structured clone', async () => {
    unit.core.addGroup({ name: 'Work' });
    const groups = await ipcMain.invoke(IPC.groupsList, ownWindow, undefined);
    expect(structuredClone(groups)).toEqual(groups);
    expect((groups as Array<{ name: string }>).map((g) => g.name).sort()).toEqual([
      'Family',
      'Work',
    ]);

    const status = await ipcMain.invoke(IPC.statusGet, ownWindow, undefined);
    expect(structuredClone(status)).toEqual(status);
    expect(status).toMatchObject({
      runtime: { ok: false, reason: 'test', fix: 'none', kind: 'docker' },
      groups: 2,
      // The unit core's broker stands for one with a key (its calls throw).
      keyConfigured: true,
      setup: { ready: false, problems: [expect.objectContaining({ kind: 'engine' })] },
    });
  });

  it('unregisters every handler when asked', () => {
    ipcMain.handlers.clear();
    const off = registerIpc({
      ipcMain,
      isOwnWindow: () => true,
      core: unit.core,
      log: silentLogger(),
    });
    expect(ipcMain.handlers.size).toBe(ipcChannels.length);
    off();
    expect(ipcMain.handlers.size).toBe(0);
  });
});

describe('the tray window', () => {
  it('is sandboxed, context-isolated, without Node, and loads our page with our preload', () => {
    const options = BrowserWindow.instances[0]!.options;
    expect(options).toEqual(trayWindowOptions(paths));
    expect(options.webPreferences).toMatchObject({
      preload: paths.preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
    });
    // The page comes through the app's own scheme (security.ts), not from a file:// URL.
    expect(BrowserWindow.instances[0]!.loadedUrl).toBe(APP_INDEX_URL);
  });

  it('cannot navigate away or open other windows, so only our page can call IPC', () => {
    expect(ownWindow.navigate('https://example.com/')).toBe(true);
    expect(ownWindow.windowOpenHandler?.()).toEqual({ action: 'deny' });
  });

  it('is reused while open and created again after it is closed', async () => {
    const window = createTrayWindow({ BrowserWindow, paths, log: silentLogger() });
    const before = BrowserWindow.instances.length;
    window.open();
    window.open();
    expect(BrowserWindow.instances.length).toBe(before + 1);
    const first = BrowserWindow.instances.at(-1)!;
    expect(first.visible && first.focused).toBe(true);
    expect(window.isOwnWindow(first.webContents)).toBe(true);
    first.close();
    expect(window.isOwnWindow(first.webContents)).toBe(false);
    window.open();
    expect(BrowserWindow.instances.length).toBe(before + 2);
  });

  it('finds the built preload and page next to the compiled main process', () => {
    expect(shellPaths('file:///opt/Clawbar/resources/app.asar/dist/main/app/window.js')).toEqual({
      preload: '/opt/Clawbar/resources/app.asar/dist/preload/index.cjs',
      html: '/opt/Clawbar/resources/app.asar/dist/renderer/index.html',
    });
  });
});

describe('the preload', () => {
  it('exposes window.clawbar with one function per channel, and never ipcRenderer itself', async () => {
    await import('../../preload/index.js');
    const api = contextBridge.exposed.get('clawbar') as Record<string, Record<string, unknown>>;
    expect([...contextBridge.exposed.keys()]).toEqual(['clawbar']);
    expect(Object.keys(api).sort()).toEqual([
      'activity',
      'apiKey',
      'chats',
      'groups',
      'messages',
      'onEvent',
      'settings',
      'status',
      'tasks',
      'whatsapp',
    ]);
    expect(Object.keys(api.groups!).sort()).toEqual([
      'list',
      'pause',
      'pauseAll',
      'resume',
      'resumeAll',
      'stop',
    ]);
    expect(Object.keys(api.status!)).toEqual(['get']);
    expect(typeof api.onEvent).toBe('function');
    for (const domain of Object.values(api)) {
      if (typeof domain === 'function') continue;
      for (const fn of Object.values(domain)) expect(typeof fn).toBe('function');
    }
    expect(JSON.stringify(Object.keys(api))).not.toMatch(/ipc|invoke|send/i);
  });

  it('round-trips from window.clawbar through the registrar to the core', async () => {
    const { createClawbarApi } = await import('../../preload/ipc-contract.js');
    ipcRenderer.sender = ownWindow;
    const clawbar = createClawbarApi(
      (channel, args) => ipcRenderer.invoke(channel, args),
      () => () => undefined,
    );
    await expect(clawbar.groups.pause({ group: 'Family' })).resolves.toMatchObject({
      paused: true,
    });
    expect(unit.store.getGroup(family.jid)?.paused).toBe(true);
    await expect(clawbar.groups.list()).resolves.toHaveLength(1);
    // What the page sees of a rejected call: Electron's prefix, then our message.
    await expect(clawbar.groups.resume({ group: 7 as unknown as string })).rejects.toThrow(
      /^Error invoking remote method 'groups:resume': Error: groups:resume: group: group must be a string/,
    );
  });

  it('a page in another window gets a refusal through the same API', async () => {
    const { createClawbarApi } = await import('../../preload/ipc-contract.js');
    ipcRenderer.sender = new BrowserWindow({}).webContents;
    const clawbar = createClawbarApi(
      (channel, args) => ipcRenderer.invoke(channel, args),
      () => () => undefined,
    );
    await expect(clawbar.groups.pause({ group: 'Family' })).rejects.toThrow(
      /not Clawbar's own window/,
    );
    expect(unit.store.getGroup(family.jid)?.paused).toBe(false);
  });
});

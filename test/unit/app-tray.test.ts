import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startNotifications } from '../../main/app/notifications.js';
import {
  createTray,
  trayState,
  trayTooltip,
  type TrayController,
  type TrayFacts,
} from '../../main/app/tray.js';
import { drawTrayIcon, trayIconPng } from '../../main/app/assets/tray-icons.js';
import { silentLogger } from '../../main/core/logger.js';
import type { QueueSnapshot } from '../../main/core/queue/group-queue.js';
import type { Group } from '../../main/core/store/index.js';
import {
  Menu,
  nativeImage,
  Notification,
  resetElectronFake,
  Tray,
  type MenuItemTemplate,
} from '../fakes/electron.js';
import {
  brokenRuntime,
  startUnitCore,
  unavailableRuntime,
  type UnitCore,
} from '../helpers/unit-core.js';

let unit: UnitCore;
let family: Group;
let work: Group;
let controller: TrayController;
const opened = vi.fn();
const toggled = vi.fn();
const quit = vi.fn();
let loginEnabled = false;

function startTray(platform: NodeJS.Platform = 'linux'): Tray {
  controller = createTray({
    Tray,
    Menu,
    nativeImage,
    platform,
    core: unit.core,
    openWindow: opened,
    toggleWindow: toggled,
    launchAtLogin: {
      get: () => loginEnabled,
      set: (enabled) => void (loginEnabled = enabled),
    },
    quit,
    log: silentLogger(),
  });
  return Tray.instances.at(-1)!;
}

function items(tray: Tray): MenuItemTemplate[] {
  const menu = tray.menu;
  if (!menu) throw new Error('the tray has no menu');
  return menu.items;
}

function groupItem(tray: Tray, label: string): MenuItemTemplate {
  const item = items(tray).find((i) => i.label === label);
  if (!item)
    throw new Error(
      `no menu item "${label}" in ${JSON.stringify(items(tray).map((i) => i.label))}`,
    );
  return item;
}

function action(item: MenuItemTemplate, label: string): MenuItemTemplate {
  const found = item.submenu?.find((i) => i.label === label);
  if (!found) throw new Error(`no "${label}" under "${item.label}"`);
  return found;
}

beforeEach(async () => {
  resetElectronFake();
  opened.mockReset();
  toggled.mockReset();
  quit.mockReset();
  loginEnabled = false;
  // An engine that answers: no set-up problem, so the icon shows what the groups do.
  unit = await startUnitCore({ retry: { baseDelayMs: 1, maxRetries: 1 }, runtime: brokenRuntime });
  family = unit.core.addGroup({ name: 'Family' });
  work = unit.core.addGroup({ name: 'Work' });
  unit.core.pauseGroup(work.jid);
});

afterEach(async () => {
  controller?.destroy();
  await unit.close();
});

describe('the tray menu', () => {
  it('lists every group with Pause or Resume, under a status line', () => {
    const tray = startTray();
    expect(items(tray)[0]).toEqual({ label: 'ready', enabled: false });
    expect(tray.toolTip).toBe('Clawbar: ready');

    const familyItem = groupItem(tray, 'Family');
    expect(familyItem.submenu?.map((i) => i.label)).toEqual(['Answering', 'Pause']);
    const workItem = groupItem(tray, 'Work (paused)');
    expect(workItem.submenu?.map((i) => i.label)).toEqual(['Paused: messages wait', 'Resume']);
    expect(
      items(tray)
        .map((i) => i.label ?? i.type)
        .slice(-5),
    ).toEqual(['Open Clawbar…', 'Pause all', 'Launch at login', 'separator', 'Quit Clawbar']);
  });

  it('Pause all pauses every group, then offers Resume all, which resumes them', () => {
    const tray = startTray();
    groupItem(tray, 'Pause all').click?.();
    expect(unit.core.groups.list().every((g) => g.paused)).toBe(true);
    expect(tray.image).toBe(tray.images.at(-1));
    groupItem(tray, 'Resume all').click?.();
    expect(unit.core.groups.list().some((g) => g.paused)).toBe(false);
    expect(groupItem(tray, 'Pause all').enabled).toBe(true);
  });

  it('Launch at login is a checkbox that flips the setting', () => {
    const tray = startTray();
    const item = groupItem(tray, 'Launch at login');
    expect(item).toMatchObject({ type: 'checkbox', checked: false });
    item.click?.();
    expect(loginEnabled).toBe(true);
    expect(groupItem(tray, 'Launch at login').checked).toBe(true);
  });

  it('a click on the icon toggles the window under the icon', () => {
    const tray = startTray();
    tray.click();
    expect(toggled).toHaveBeenCalledWith(tray.bounds);
  });

  it('on macOS the menu pops up on a right click instead of swallowing the left click', () => {
    const tray = startTray('darwin');
    expect(tray.menus).toEqual([]);
    tray.emit('right-click');
    expect(tray.poppedUp).toHaveLength(1);
    expect(tray.poppedUp[0]?.items.at(-1)?.label).toBe('Quit Clawbar');
  });

  it('clicking Pause pauses the group in the store and rebuilds the menu', () => {
    const tray = startTray();
    const pause = action(groupItem(tray, 'Family'), 'Pause');
    const built = tray.menus.length;
    expect(unit.store.getGroup(family.jid)?.paused).toBe(false);
    pause.click?.();
    // The click's own effect: the store changed, and exactly one new menu shows it.
    expect(unit.store.getGroup(family.jid)?.paused).toBe(true);
    expect(tray.menus.length).toBe(built + 1);
    expect(action(groupItem(tray, 'Family (paused)'), 'Resume')).toBeDefined();
    expect(unit.store.getGroup(work.jid)?.paused).toBe(true);
  });

  it('clicking Resume resumes the group in the store and rebuilds the menu', () => {
    const tray = startTray();
    const resume = action(groupItem(tray, 'Work (paused)'), 'Resume');
    const built = tray.menus.length;
    expect(unit.store.getGroup(work.jid)?.paused).toBe(true);
    resume.click?.();
    expect(unit.store.getGroup(work.jid)?.paused).toBe(false);
    expect(tray.menus.length).toBe(built + 1);
    expect(action(groupItem(tray, 'Work'), 'Pause')).toBeDefined();
    expect(unit.store.getGroup(family.jid)?.paused).toBe(false);
  });

  it('a click on a group removed behind the tray’s back rebuilds the menu without it', () => {
    const tray = startTray();
    const pause = action(groupItem(tray, 'Family'), 'Pause');
    // Removed straight in the database: no event fires, so the menu still offers the group.
    expect(unit.store.removeGroup(family.jid)).toBe(true);
    const built = tray.menus.length;
    expect(groupItem(tray, 'Family')).toBeDefined();
    expect(() => pause.click?.()).not.toThrow();
    // Only the click can have rebuilt the menu.
    expect(tray.menus.length).toBe(built + 1);
    expect(items(tray).some((i) => i.label?.startsWith('Family'))).toBe(false);
    expect(groupItem(tray, 'Work (paused)')).toBeDefined();
    expect(unit.store.getGroup(family.jid)).toBeUndefined();
  });

  it('a click in a menu still open after the CLI removed its group rebuilds the menu again', () => {
    const tray = startTray();
    const pause = action(groupItem(tray, 'Family'), 'Pause');
    unit.core.removeGroup(family.jid);
    // The removal's own rebuild is counted before the click.
    const built = tray.menus.length;
    expect(items(tray).some((i) => i.label?.startsWith('Family'))).toBe(false);
    expect(() => pause.click?.()).not.toThrow();
    expect(tray.menus.length).toBe(built + 1);
    expect(items(tray).some((i) => i.label?.startsWith('Family'))).toBe(false);
  });

  it('says how to add a group when there is none', () => {
    unit.core.removeGroup(family.jid);
    unit.core.removeGroup(work.jid);
    const tray = startTray();
    expect(
      items(tray).some(
        (i) => i.label === 'No groups yet (clawbar groups add --name NAME)' && i.enabled === false,
      ),
    ).toBe(true);
  });

  it('rebuilds when the core announces a triggered message or a run, not an untriggered message', () => {
    const tray = startTray();
    let built = tray.menus.length;
    const expectRebuilds = (count: number) => {
      expect(tray.menus.length).toBe(built + count);
      built = tray.menus.length;
    };
    // Work is paused, so a triggered message waits there and starts no run.
    expect(unit.core.postLocal('Work', 'Alice', 'no trigger').triggered).toBe(false);
    expectRebuilds(0);
    expect(unit.core.postLocal('Work', 'Alice', '@Andy are you there?').triggered).toBe(true);
    expectRebuilds(1);
    unit.core.events.emit('run:started', { groupJid: family.jid, runId: 'r1', container: 'c1' });
    expectRebuilds(1);
    unit.core.events.emit('turn:finished', { groupJid: family.jid, turnId: 't1', throughSeq: 1 });
    expectRebuilds(1);
  });

  it('shows a group added or paused by another client (CLI, socket) at once', () => {
    const tray = startTray();
    unit.core.addGroup({ name: 'Book Club' });
    expect(action(groupItem(tray, 'Book Club'), 'Pause')).toBeDefined();
    unit.core.pauseGroup('Book Club');
    expect(action(groupItem(tray, 'Book Club (paused)'), 'Resume')).toBeDefined();
  });

  it('Open and Quit call the shell', () => {
    const tray = startTray();
    groupItem(tray, 'Open Clawbar…').click?.();
    expect(opened).toHaveBeenCalledOnce();
    expect(quit).not.toHaveBeenCalled();
    groupItem(tray, 'Quit Clawbar').click?.();
    expect(opened).toHaveBeenCalledOnce();
    expect(quit).toHaveBeenCalledOnce();
  });

  it('shows the state on the icon: paused when every group is, error after a give-up until seen', () => {
    const tray = startTray();
    const idleIcon = tray.image;
    expect(controller.facts().groups).toEqual({ total: 2, paused: 1 });
    unit.core.pauseGroup(family.jid);
    const pausedIcon = tray.image;
    expect(pausedIcon).not.toBe(idleIcon);
    expect(tray.toolTip).toBe('Clawbar: all 2 groups are paused');
    unit.core.events.emit('run:gave-up', { groupJid: family.jid, error: 'boom', attempts: 6 });
    expect(tray.toolTip).toBe('Clawbar: 1 group could not be answered');
    controller.acknowledge();
    expect(tray.toolTip).toBe('Clawbar: all 2 groups are paused');
    expect(tray.image.buffer.equals(pausedIcon.buffer)).toBe(true);
  });

  it('shows needs-pairing when WhatsApp says so, and a set-up problem as an error first', () => {
    const tray = startTray();
    unit.core.events.emit('channel:state', {
      channel: 'whatsapp',
      state: { state: 'needs-pairing', reason: 'logged out', code: 401 },
    });
    expect(tray.toolTip).toBe('Clawbar: WhatsApp needs pairing');
    unit.core.events.emit('channel:state', { channel: 'whatsapp', state: { state: 'open' } });
    expect(tray.toolTip).toBe('Clawbar: ready');
  });

  it('shows an engine that does not answer as an error, naming the fix', async () => {
    controller?.destroy();
    await unit.close();
    unit = await startUnitCore({ runtime: unavailableRuntime });
    const tray = startTray();
    expect(tray.toolTip).toBe('Clawbar: test (none)');
    expect(items(tray)[0]).toEqual({ label: 'test (none)', enabled: false });
  });

  it('uses a 2x template icon on macOS and a coloured one elsewhere', () => {
    const mac = startTray('darwin');
    expect(mac.image.isTemplateImage()).toBe(true);
    expect(mac.image.scaleFactor).toBe(2);
    expect(mac.image.buffer.subarray(1, 4).toString()).toBe('PNG');
    controller.destroy();
    const linux = startTray('linux');
    expect(linux.image.isTemplateImage()).toBe(false);
    expect(linux.image.buffer.equals(mac.image.buffer)).toBe(false);
  });

  it('stops listening and removes the icon when destroyed', () => {
    const tray = startTray();
    controller.destroy();
    const built = tray.menus.length;
    unit.core.events.emit('run:started', { groupJid: family.jid, runId: 'r1', container: 'c1' });
    unit.core.addGroup({ name: 'Book Club' });
    controller.rebuild();
    expect(tray.destroyed).toBe(true);
    expect(tray.menus.length).toBe(built);
  });
});

describe('the tray state and tooltip', () => {
  const idleQueue: QueueSnapshot = {
    maxConcurrency: 3,
    running: [],
    waiting: [],
    retrying: [],
    waitingForSetup: [],
  };
  const base: TrayFacts = {
    setupProblems: [],
    whatsapp: { state: 'open' },
    groups: { total: 2, paused: 0 },
    queue: idleQueue,
    recentGiveUps: 0,
  };
  const engineDown = {
    kind: 'engine' as const,
    message: 'the Docker engine is not reachable',
    fix: 'start Docker Desktop',
  };

  it('is idle when nothing happens, with a one-line tooltip', () => {
    expect(trayState(base)).toBe('idle');
    expect(trayTooltip(base)).toBe('Clawbar: ready');
    expect(trayTooltip({ ...base, groups: { total: 0, paused: 0 } })).toBe(
      'Clawbar: ready · no groups yet',
    );
  });

  it('is working while a run is busy or work waits, not for a warm idle container', () => {
    const busy = {
      ...base,
      queue: {
        ...idleQueue,
        running: [
          { groupJid: 'a', idle: false, work: 'messages' as const },
          { groupJid: 'b', idle: true, work: 'messages' as const },
        ],
        waiting: ['c'],
      },
    };
    expect(trayState(busy)).toBe('working');
    expect(trayTooltip(busy)).toBe('Clawbar: working · 1 running · 1 waiting');
    const warm = { ...base, queue: { ...idleQueue, running: [busy.queue.running[1]!] } };
    expect(trayState(warm)).toBe('idle');
  });

  it('is working while the agent image builds, with its progress', () => {
    const building: TrayFacts = {
      ...base,
      setupProblems: [
        { kind: 'image-building', message: 'building', fix: null, progress: 'step 3/7' },
      ],
    };
    expect(trayState(building)).toBe('working');
    expect(trayTooltip(building)).toBe('Clawbar: building the agent image: step 3/7');
  });

  it('is paused only when every group is', () => {
    expect(trayState({ ...base, groups: { total: 2, paused: 1 } })).toBe('idle');
    expect(trayState({ ...base, groups: { total: 2, paused: 2 } })).toBe('paused');
    expect(trayTooltip({ ...base, groups: { total: 1, paused: 1 } })).toBe(
      'Clawbar: the group is paused',
    );
  });

  it('needs pairing when WhatsApp is unlinked, shows a QR, or was replaced for good', () => {
    const needs = (whatsapp: TrayFacts['whatsapp']) => trayState({ ...base, whatsapp });
    expect(needs({ state: 'needs-pairing', reason: 'not linked' })).toBe('needs-pairing');
    expect(needs({ state: 'qr', qr: 'x' })).toBe('needs-pairing');
    expect(needs({ state: 'pairing-code', code: 'ABCD-1234' })).toBe('needs-pairing');
    expect(needs({ state: 'closed', reason: 'replaced', code: 440, retrying: false })).toBe(
      'needs-pairing',
    );
    expect(needs({ state: 'closed', reason: 'lost', code: 428, retrying: true })).toBe('idle');
    expect(needs({ state: 'connecting' })).toBe('idle');
    expect(needs(null)).toBe('idle');
    expect(
      trayTooltip({
        ...base,
        whatsapp: { state: 'closed', reason: 'replaced', code: 440, retrying: false },
      }),
    ).toBe('Clawbar: WhatsApp was opened on another computer: pair again to use it here');
  });

  it('is an error first: a set-up problem for the user, or a recent give-up', () => {
    const broken: TrayFacts = {
      ...base,
      whatsapp: { state: 'needs-pairing', reason: 'x' },
      groups: { total: 1, paused: 1 },
      setupProblems: [engineDown],
    };
    expect(trayState(broken)).toBe('error');
    expect(trayTooltip(broken)).toBe(
      'Clawbar: the Docker engine is not reachable (start Docker Desktop)',
    );
    expect(trayState({ ...base, recentGiveUps: 2 })).toBe('error');
    expect(trayTooltip({ ...base, recentGiveUps: 2 })).toBe(
      'Clawbar: 2 groups could not be answered',
    );
  });

  it('keeps the tooltip to one short line', () => {
    const long: TrayFacts = {
      ...base,
      setupProblems: [{ ...engineDown, message: 'a\nvery '.repeat(40) }],
    };
    const tooltip = trayTooltip(long);
    expect(tooltip).not.toMatch(/\n/);
    expect(tooltip.length).toBeLessThanOrEqual(100);
    expect(tooltip.endsWith('…')).toBe(true);
  });
});

describe('notifications', () => {
  it('a run given up after every retry shows a notification naming the group', async () => {
    await unit.close();
    unit = await startUnitCore({
      retry: { baseDelayMs: 1, maxRetries: 1 },
      runtime: brokenRuntime,
    });
    unit.core.addGroup({ name: 'Family' });
    startNotifications({
      Notification,
      core: unit.core,
      settings: () => ({ notifications: true }),
      onAction: () => undefined,
      log: silentLogger(),
    });
    // A real give-up: the engine answers but cannot start containers, so the run fails, is
    // retried once, and is given up. (An engine that does not answer is waited for instead.)
    unit.core.postLocal('Family', 'Alice', '@Andy are you there?');
    await vi.waitFor(() => expect(Notification.shown).toHaveLength(1), { timeout: 5_000 });
    expect(Notification.shown[0]?.title).toBe('Clawbar: Family could not be answered');
    expect(Notification.shown[0]?.body).toMatch(
      /^The agent failed 2 times: .*no containers in unit tests/,
    );
  });

  it('names the jid when the group is gone, and shows nothing where notifications are unsupported', () => {
    const off = startNotifications({
      Notification,
      core: unit.core,
      settings: () => ({ notifications: true }),
      onAction: () => undefined,
      log: silentLogger(),
    });
    unit.core.events.emit('run:gave-up', { groupJid: 'local:gone', error: 'boom', attempts: 6 });
    expect(Notification.shown).toEqual([
      {
        title: 'Clawbar: local:gone could not be answered',
        body: 'The agent failed 6 times: boom',
      },
    ]);
    Notification.supported = false;
    unit.core.events.emit('run:gave-up', { groupJid: family.jid, error: 'boom', attempts: 6 });
    expect(Notification.shown).toHaveLength(1);
    off();
  });
});

describe('the tray icons', () => {
  const states = ['idle', 'working', 'paused', 'needs-pairing', 'error'] as const;

  it('are valid 32×32 PNGs, a different picture for each state and style', () => {
    const seen = new Set<string>();
    for (const state of states) {
      for (const style of ['template', 'color'] as const) {
        const png = trayIconPng(state, style);
        expect(png.subarray(0, 8)).toEqual(
          Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        );
        expect(png.readUInt32BE(16)).toBe(32);
        expect(png.readUInt32BE(20)).toBe(32);
        seen.add(Buffer.from(drawTrayIcon(state, style)).toString('base64'));
      }
    }
    expect(seen.size).toBe(states.length * 2);
  });

  it('template icons are black with alpha only, so macOS can tint them', () => {
    for (const state of states) {
      const pixels = drawTrayIcon(state, 'template');
      let opaque = 0;
      for (let i = 0; i < pixels.length; i += 4) {
        expect(pixels[i]! + pixels[i + 1]! + pixels[i + 2]!).toBe(0);
        if (pixels[i + 3]! > 0) opaque++;
      }
      expect(opaque).toBeGreaterThan(50);
    }
  });
});

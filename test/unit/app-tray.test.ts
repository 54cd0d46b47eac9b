import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { notifyGiveUps } from '../../main/app/notifications.js';
import { createTray, statusLine, type TrayController } from '../../main/app/tray.js';
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
import { brokenRuntime, startUnitCore, type UnitCore } from '../helpers/unit-core.js';

let unit: UnitCore;
let family: Group;
let work: Group;
let controller: TrayController;
const opened = vi.fn();
const quit = vi.fn();

function startTray(platform: NodeJS.Platform = 'linux'): Tray {
  controller = createTray({
    Tray,
    Menu,
    nativeImage,
    platform,
    core: unit.core,
    openWindow: opened,
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
  quit.mockReset();
  unit = await startUnitCore({ retry: { baseDelayMs: 1, maxRetries: 1 } });
  family = unit.core.addGroup({ name: 'Family' });
  work = unit.core.addGroup({ name: 'Work' });
  unit.core.pauseGroup(work.jid);
});

afterEach(async () => {
  controller?.destroy();
  await unit.close();
});

describe('the tray menu', () => {
  it('lists every group with Pause or Resume, under a status line', async () => {
    const tray = startTray();
    // The health check is async; the menu is rebuilt when it answers.
    await vi.waitFor(() => expect(items(tray)[0]?.label).toBe('Docker unavailable: test'));
    expect(items(tray)[0]?.enabled).toBe(false);
    expect(tray.toolTip).toBe('Clawbar: Docker unavailable: test');

    const familyItem = groupItem(tray, 'Family');
    expect(familyItem.submenu?.map((i) => i.label)).toEqual(['Answering', 'Pause']);
    const workItem = groupItem(tray, 'Work (paused)');
    expect(workItem.submenu?.map((i) => i.label)).toEqual(['Paused: messages wait', 'Resume']);
    expect(
      items(tray)
        .map((i) => i.label ?? i.type)
        .slice(-2),
    ).toEqual(['Open Clawbar…', 'Quit Clawbar']);
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

describe('the status line', () => {
  const idle: QueueSnapshot = {
    maxConcurrency: 3,
    running: [],
    waiting: [],
    retrying: [],
    waitingForSetup: [],
  };
  const healthy = {
    runtime: { ok: true as const, version: '27.0', kind: 'docker' },
    image: { image: 'clawbar-agent:latest', present: true },
    keyConfigured: true,
  };

  it('names what is missing first, or how busy Clawbar is', () => {
    expect(statusLine(null, idle)).toBe('Checking…');
    expect(
      statusLine(
        {
          ...healthy,
          runtime: {
            ok: false,
            reason:
              'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is it running?',
            fix: 'start Docker',
            kind: 'docker',
          },
        },
        idle,
      ),
    ).toBe('Docker unavailable: Cannot connect to the Docker daemon at unix:///var/run/dock…');
    expect(
      statusLine({ ...healthy, image: { image: 'clawbar-agent:latest', present: false } }, idle),
    ).toBe('Agent image missing: run clawbar image build');
    // An image state nobody could ask about is not reported as missing.
    expect(
      statusLine({ ...healthy, image: { image: 'clawbar-agent:latest', present: null } }, idle),
    ).toBe('Ready');
    expect(statusLine({ ...healthy, keyConfigured: false }, idle)).toBe(
      'No Anthropic API key: set ANTHROPIC_API_KEY',
    );
    expect(statusLine(healthy, idle)).toBe('Ready');
    const busy: QueueSnapshot = {
      ...idle,
      running: [
        { groupJid: 'a', idle: false, work: 'messages' },
        { groupJid: 'b', idle: true, work: 'messages' },
      ],
      waiting: ['c'],
      retrying: ['d'],
      waitingForSetup: ['e'],
    };
    expect(statusLine(healthy, busy)).toBe('Ready · 1 running · 3 waiting');
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
    notifyGiveUps({ Notification, core: unit.core, log: silentLogger() });
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
    const off = notifyGiveUps({ Notification, core: unit.core, log: silentLogger() });
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

  it('the tray refreshes its status when a run is given up', async () => {
    const tray = startTray();
    await vi.waitFor(() => expect(items(tray)[0]?.label).toBe('Docker unavailable: test'));
    const status = vi.spyOn(unit.core, 'status');
    const built = tray.menus.length;
    unit.core.events.emit('run:gave-up', { groupJid: family.jid, error: 'boom', attempts: 6 });
    expect(status).toHaveBeenCalledOnce();
    // The menu is rebuilt once the fresh status has answered, not before.
    expect(tray.menus.length).toBe(built);
    await vi.waitFor(() => expect(tray.menus.length).toBe(built + 1));
  });
});

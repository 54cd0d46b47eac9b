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
import { startUnitCore, type UnitCore } from '../helpers/unit-core.js';

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
    const built = tray.menus.length;
    action(groupItem(tray, 'Family'), 'Pause').click?.();
    expect(unit.store.getGroup(family.jid)?.paused).toBe(true);
    expect(tray.menus.length).toBe(built + 1);
    expect(action(groupItem(tray, 'Family (paused)'), 'Resume')).toBeDefined();
  });

  it('clicking Resume resumes the group in the store and rebuilds the menu', () => {
    const tray = startTray();
    action(groupItem(tray, 'Work (paused)'), 'Resume').click?.();
    expect(unit.store.getGroup(work.jid)?.paused).toBe(false);
    expect(action(groupItem(tray, 'Work'), 'Pause')).toBeDefined();
  });

  it('a click on a group removed meanwhile (from the CLI) just rebuilds the menu without it', () => {
    const tray = startTray();
    const pause = action(groupItem(tray, 'Family'), 'Pause');
    unit.core.removeGroup(family.jid);
    expect(() => pause.click?.()).not.toThrow();
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

  it('rebuilds when the core announces a triggered message or a run', () => {
    const tray = startTray();
    const built = tray.menus.length;
    unit.core.postLocal('Work', 'Alice', 'no trigger, paused group');
    unit.core.events.emit('run:started', { groupJid: family.jid, runId: 'r1', container: 'c1' });
    unit.core.events.emit('turn:finished', { groupJid: family.jid, turnId: 't1', throughSeq: 1 });
    expect(tray.menus.length).toBe(built + 2);
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
    expect(tray.destroyed).toBe(true);
    expect(tray.menus.length).toBe(built);
  });
});

describe('the status line', () => {
  const idle: QueueSnapshot = { maxConcurrency: 3, running: [], waiting: [], retrying: [] };
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
    expect(statusLine({ ...healthy, keyConfigured: false }, idle)).toBe(
      'No Anthropic API key: set ANTHROPIC_API_KEY',
    );
    expect(statusLine(healthy, idle)).toBe('Ready');
    const busy: QueueSnapshot = {
      ...idle,
      running: [
        { groupJid: 'a', idle: false },
        { groupJid: 'b', idle: true },
      ],
      waiting: ['c'],
      retrying: ['d'],
    };
    expect(statusLine(healthy, busy)).toBe('Ready · 1 running · 2 waiting');
  });
});

describe('notifications', () => {
  it('a run given up after every retry shows a notification naming the group', async () => {
    notifyGiveUps({ Notification, core: unit.core, log: silentLogger() });
    // A real give-up: the runtime cannot start containers, so the run fails, is retried once, and is given up.
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
    unit.core.events.emit('run:gave-up', { groupJid: family.jid, error: 'boom', attempts: 6 });
    expect(status).toHaveBeenCalledOnce();
  });
});

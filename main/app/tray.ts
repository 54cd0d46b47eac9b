/**
 * The menu-bar (macOS) or system-tray (Linux) icon and its menu: a status line, one submenu per
 * group with Pause or Resume, a way to open the tray window, and Quit.
 *
 * The menu is rebuilt when the core announces something (a triggered message, a run starting,
 * finishing or giving up), never on a timer. Electron's `Tray`, `Menu` and `nativeImage` are
 * injected, so the menu's behaviour is tested with `test/fakes/electron.ts`.
 */
import type { Core, CoreStatus } from '../core/core.js';
import type { Logger } from '../core/logger.js';
import type { QueueSnapshot } from '../core/queue/group-queue.js';
import type { Group } from '../core/store/index.js';
import { TRAY_ICON_COLOR_PNG, TRAY_ICON_TEMPLATE_PNG } from './assets/tray-icon.js';

/**
 * One menu entry: the subset of Electron's `MenuItemConstructorOptions` the tray uses. `click`
 * takes no arguments, so tests can click an item without Electron's event objects.
 */
export interface TrayMenuItem {
  label?: string;
  type?: 'normal' | 'separator' | 'submenu';
  enabled?: boolean;
  toolTip?: string;
  submenu?: TrayMenuItem[];
  click?: () => void;
}

/** The part of Electron's `NativeImage` the tray uses. */
export interface TrayImage {
  setTemplateImage(option: boolean): void;
}

/** The part of Electron's `Tray` the tray uses. */
export interface TrayLike<M> {
  setContextMenu(menu: M | null): void;
  setToolTip(toolTip: string): void;
  destroy(): void;
}

/** The parts of the core the tray reads and drives. */
export type TrayCore = Pick<
  Core,
  'events' | 'groups' | 'queue' | 'pauseGroup' | 'resumeGroup' | 'status'
>;

export interface TrayDeps<Image extends TrayImage, M> {
  Tray: new (image: Image) => TrayLike<M>;
  Menu: { buildFromTemplate(template: TrayMenuItem[]): M };
  nativeImage: { createFromBuffer(buffer: Buffer, options?: { scaleFactor?: number }): Image };
  /** Chooses the icon: a template image on macOS. @default process.platform */
  platform?: NodeJS.Platform;
  core: TrayCore;
  /** Shows the tray window. */
  openWindow(): void;
  /** Quits the app (which shuts the core down first). */
  quit(): void;
  log: Logger;
}

export interface TrayController {
  /** Rebuilds the menu from the store and the last known status. */
  rebuild(): void;
  /** Asks the core for its health again (runtime, image, key), then rebuilds. */
  refreshStatus(): void;
  /** Stops listening to the core and removes the icon. */
  destroy(): void;
}

type Health = Pick<CoreStatus, 'runtime' | 'image' | 'keyConfigured'>;

export function createTray<Image extends TrayImage, M>(deps: TrayDeps<Image, M>): TrayController {
  const { core } = deps;
  const log = deps.log.child({ mod: 'tray' });
  const tray = new deps.Tray(trayIcon(deps.nativeImage, deps.platform ?? process.platform));
  let health: Health | null = null;
  let destroyed = false;
  let refreshing = false;
  let refreshAgain = false;

  const setPaused = (group: Group, paused: boolean) => {
    try {
      // The core announces the change ('group:changed'), which rebuilds the menu.
      if (paused) core.pauseGroup(group.jid);
      else core.resumeGroup(group.jid);
    } catch (err) {
      // The group may have been removed from the CLI since the menu was built.
      log.warn({ group: group.folder, err }, 'could not change the group from the tray');
      rebuild();
    }
  };

  function rebuild(): void {
    if (destroyed) return;
    const line = statusLine(health, core.queue.snapshot());
    const template = trayMenuTemplate({
      statusLine: line,
      groups: core.groups.list(),
      setPaused,
      openWindow: deps.openWindow,
      quit: deps.quit,
    });
    tray.setToolTip(`Clawbar: ${line}`);
    tray.setContextMenu(deps.Menu.buildFromTemplate(template));
  }

  // One health check at a time: docker is asked again once the running check has answered.
  function refreshStatus(): void {
    if (destroyed) return;
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    core
      .status()
      .then(
        (status) => {
          health = status;
        },
        (err: unknown) => log.warn({ err }, 'could not read the core status'),
      )
      .finally(() => {
        refreshing = false;
        rebuild();
        if (refreshAgain) {
          refreshAgain = false;
          refreshStatus();
        }
      });
  }

  const unsubscribe = [
    core.events.on('message:stored', (e) => {
      if (e.triggered) rebuild();
    }),
    core.events.on('run:started', rebuild),
    core.events.on('group:changed', rebuild),
    core.events.on('turn:finished', rebuild),
    core.events.on('run:finished', refreshStatus),
    core.events.on('run:gave-up', refreshStatus),
    core.events.on('setup:changed', refreshStatus),
  ];

  rebuild();
  refreshStatus();

  return {
    rebuild,
    refreshStatus,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      for (const off of unsubscribe) off();
      tray.destroy();
    },
  };
}

export interface TrayMenuInput {
  statusLine: string;
  groups: Group[];
  setPaused(group: Group, paused: boolean): void;
  openWindow(): void;
  quit(): void;
}

/** The menu, as plain data. */
export function trayMenuTemplate(input: TrayMenuInput): TrayMenuItem[] {
  const groupItems: TrayMenuItem[] =
    input.groups.length === 0
      ? [{ label: 'No groups yet (clawbar groups add --name NAME)', enabled: false }]
      : input.groups.map((group) => ({
          label: group.paused ? `${group.name} (paused)` : group.name,
          type: 'submenu',
          submenu: [
            { label: group.paused ? 'Paused: messages wait' : 'Answering', enabled: false },
            group.paused
              ? { label: 'Resume', click: () => input.setPaused(group, false) }
              : { label: 'Pause', click: () => input.setPaused(group, true) },
          ],
        }));
  return [
    { label: input.statusLine, enabled: false },
    { type: 'separator' },
    ...groupItems,
    { type: 'separator' },
    { label: 'Open Clawbar…', click: input.openWindow },
    { label: 'Quit Clawbar', click: input.quit },
  ];
}

const MAX_REASON = 60;

/** One line saying whether Clawbar can answer, and if not, what is missing first. */
export function statusLine(health: Health | null, queue: QueueSnapshot): string {
  if (!health) return 'Checking…';
  if (!health.runtime.ok) {
    const name = health.runtime.kind === 'apple' ? 'Apple Container' : 'Docker';
    return `${name} unavailable: ${shorten(health.runtime.reason, MAX_REASON)}`;
  }
  // The engine answers here, so the image state is known; null would mean it could not say.
  if (health.image.present === false) return 'Agent image missing: run clawbar image build';
  if (!health.keyConfigured) return 'No Anthropic API key: set ANTHROPIC_API_KEY';
  const running = queue.running.filter((run) => !run.idle).length;
  const waiting = queue.waiting.length + queue.retrying.length + queue.waitingForSetup.length;
  if (running === 0 && waiting === 0) return 'Ready';
  return `Ready · ${running} running · ${waiting} waiting`;
}

function shorten(text: string, max: number): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/**
 * The icon at 2× scale, so it is crisp on Retina screens and 16 pt tall. On macOS it is a
 * template image: the menu bar tints it for light and dark mode.
 */
function trayIcon<Image extends TrayImage>(
  nativeImage: TrayDeps<Image, unknown>['nativeImage'],
  platform: NodeJS.Platform,
): Image {
  const mac = platform === 'darwin';
  const image = nativeImage.createFromBuffer(
    Buffer.from(mac ? TRAY_ICON_TEMPLATE_PNG : TRAY_ICON_COLOR_PNG, 'base64'),
    {
      scaleFactor: 2,
    },
  );
  if (mac) image.setTemplateImage(true);
  return image;
}

/**
 * The menu-bar (macOS) or system-tray (Linux) icon, its tooltip and its menu.
 *
 * The icon shows one state, worked out from the core's facts by the pure {@link trayState}:
 * idle, working, paused, needs pairing, or error. The tooltip is one line ({@link trayTooltip}).
 * The menu has a status line, one submenu per group (Pause or Resume), Open, Pause all or
 * Resume all, Launch at login, and Quit. A click on the icon toggles the tray window.
 *
 * Everything is updated when the core announces something (a triggered message, a run, a
 * group change, a channel or set-up change), never on a timer; the listeners are removed on
 * destroy. Electron's `Tray`, `Menu` and `nativeImage` are injected, so this is tested with
 * `test/fakes/electron.ts`.
 */
import type { ChannelState } from '../core/channels/channel.js';
import type { Core } from '../core/core.js';
import type { Logger } from '../core/logger.js';
import type { QueueSnapshot } from '../core/queue/group-queue.js';
import { needsTheUser, type SetupProblem } from '../core/setup.js';
import type { Group } from '../core/store/index.js';
import { trayIconPng, type TrayIconState } from './assets/tray-icons.js';

/** What the icon shows. */
export type TrayState = TrayIconState;

/** The facts the icon and tooltip are worked out from; plain data, gathered by the controller. */
export interface TrayFacts {
  /** `core.setupProblems()`: no key, no engine, no image, or an image being built. */
  setupProblems: readonly SetupProblem[];
  /** The WhatsApp channel's last state; null when there is no WhatsApp channel or none is known yet. */
  whatsapp: ChannelState | null;
  groups: { total: number; paused: number };
  queue: QueueSnapshot;
  /** Groups whose runs were given up since the user last opened the window. */
  recentGiveUps: number;
}

/** WhatsApp closed for good because another WhatsApp Web session took over (status 440). */
const REPLACED_CODE = 440;

/** Why WhatsApp waits for a person, or null when it does not. */
function whatsappNeedsPerson(state: ChannelState | null): string | null {
  if (!state) return null;
  switch (state.state) {
    case 'needs-pairing':
      return 'WhatsApp needs pairing';
    case 'qr':
      return 'WhatsApp: scan the QR code to pair';
    case 'pairing-code':
      return `WhatsApp: enter the code ${state.code} on your phone`;
    case 'closed':
      return state.code === REPLACED_CODE && !state.retrying
        ? 'WhatsApp was opened on another computer: pair again to use it here'
        : null;
    case 'connecting':
    case 'open':
      return null;
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}

/**
 * The icon's state, most urgent first: a problem only the user can fix (error), WhatsApp
 * waiting for a phone (needs pairing), an agent at work or an image being built (working),
 * every group paused (paused), else idle.
 */
export function trayState(facts: TrayFacts): TrayState {
  if (needsTheUser(facts.setupProblems).length > 0 || facts.recentGiveUps > 0) return 'error';
  if (whatsappNeedsPerson(facts.whatsapp)) return 'needs-pairing';
  if (busy(facts.queue) || facts.setupProblems.some((p) => p.kind === 'image-building'))
    return 'working';
  if (facts.groups.total > 0 && facts.groups.paused === facts.groups.total) return 'paused';
  return 'idle';
}

function busy(queue: QueueSnapshot): boolean {
  return queue.running.some((run) => !run.idle) || queue.waiting.length + queue.retrying.length > 0;
}

const MAX_TOOLTIP = 100;

/** One line for the tooltip and the menu's status line, naming what matters most now. */
export function trayTooltip(facts: TrayFacts): string {
  return `Clawbar: ${shorten(describe(facts), MAX_TOOLTIP - 'Clawbar: '.length)}`;
}

function describe(facts: TrayFacts): string {
  const state = trayState(facts);
  switch (state) {
    case 'error': {
      const problem = needsTheUser(facts.setupProblems)[0];
      if (problem) return problem.fix ? `${problem.message} (${problem.fix})` : problem.message;
      const n = facts.recentGiveUps;
      return `${n} ${n === 1 ? 'group' : 'groups'} could not be answered`;
    }
    case 'needs-pairing':
      return whatsappNeedsPerson(facts.whatsapp) ?? 'WhatsApp needs pairing';
    case 'working': {
      const building = facts.setupProblems.find((p) => p.kind === 'image-building');
      if (building && !busy(facts.queue))
        return `building the agent image${building.progress ? `: ${building.progress}` : ''}`;
      const running = facts.queue.running.filter((run) => !run.idle).length;
      const waiting =
        facts.queue.waiting.length +
        facts.queue.retrying.length +
        facts.queue.waitingForSetup.length;
      return waiting > 0
        ? `working · ${running} running · ${waiting} waiting`
        : `working · ${running} running`;
    }
    case 'paused':
      return facts.groups.total === 1
        ? 'the group is paused'
        : `all ${facts.groups.total} groups are paused`;
    case 'idle':
      return facts.groups.total === 0 ? 'ready · no groups yet' : 'ready';
    default: {
      const unreachable: never = state;
      return unreachable;
    }
  }
}

function shorten(text: string, max: number): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/**
 * One menu entry: the subset of Electron's `MenuItemConstructorOptions` the tray uses. `click`
 * takes no arguments, so tests can click an item without Electron's event objects.
 */
export interface TrayMenuItem {
  label?: string;
  type?: 'normal' | 'separator' | 'submenu' | 'checkbox';
  enabled?: boolean;
  checked?: boolean;
  toolTip?: string;
  submenu?: TrayMenuItem[];
  click?: () => void;
}

/** The part of Electron's `NativeImage` the tray uses. */
export interface TrayImage {
  setTemplateImage(option: boolean): void;
}

/** Where the icon is on screen, to place the window under it. */
export interface Rectangle {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The part of Electron's `Tray` the tray uses. */
export interface TrayLike<M, Image> {
  setContextMenu(menu: M | null): void;
  setToolTip(toolTip: string): void;
  setImage(image: Image): void;
  getBounds(): Rectangle;
  popUpContextMenu(menu?: M): void;
  on(event: 'click', listener: (event: unknown, bounds: Rectangle) => void): unknown;
  on(event: 'right-click', listener: () => void): unknown;
  destroy(): void;
}

/** The parts of the core the tray reads and drives. */
export type TrayCore = Pick<
  Core,
  'events' | 'groups' | 'queue' | 'pauseGroup' | 'resumeGroup' | 'status' | 'setupProblems'
>;

export interface TrayDeps<Image extends TrayImage, M> {
  Tray: new (image: Image) => TrayLike<M, Image>;
  Menu: { buildFromTemplate(template: TrayMenuItem[]): M };
  nativeImage: { createFromBuffer(buffer: Buffer, options?: { scaleFactor?: number }): Image };
  /** Chooses the icon: a template image on macOS. @default process.platform */
  platform?: NodeJS.Platform;
  core: TrayCore;
  /** Shows the tray window. */
  openWindow(): void;
  /** Shows or hides the window under the icon (a click on the icon). */
  toggleWindow(trayBounds: Rectangle): void;
  /** Whether the app starts at login, and how to change it (the settings and the system). */
  launchAtLogin: { get(): boolean; set(enabled: boolean): void };
  /** Quits the app (which shuts the core down first). */
  quit(): void;
  log: Logger;
}

export interface TrayController {
  /** Recomputes the icon, tooltip and menu from the core's facts. */
  rebuild(): void;
  /** The user has seen the window: clears the give-ups the icon was showing as an error. */
  acknowledge(): void;
  /** The facts the icon shows now (for tests and the window). */
  facts(): TrayFacts;
  /** Stops listening to the core and removes the icon. */
  destroy(): void;
}

export function createTray<Image extends TrayImage, M>(deps: TrayDeps<Image, M>): TrayController {
  const { core } = deps;
  const log = deps.log.child({ mod: 'tray' });
  const platform = deps.platform ?? process.platform;
  let shownState: TrayState = 'idle';
  const tray = new deps.Tray(trayIcon(deps.nativeImage, platform, shownState));
  let whatsapp: ChannelState | null = null;
  let whatsappSeen = false;
  const givenUp = new Set<string>();
  let destroyed = false;
  let menu: M | null = null;

  const guarded = (what: string, action: () => void) => {
    try {
      // The core announces the change ('group:changed'), which rebuilds the menu.
      action();
    } catch (err) {
      // The group may have been removed from the CLI since the menu was built.
      log.warn({ err }, `could not ${what} from the tray`);
      rebuild();
    }
  };

  const setPaused = (group: Group, paused: boolean) =>
    guarded(paused ? 'pause the group' : 'resume the group', () =>
      paused ? core.pauseGroup(group.jid) : core.resumeGroup(group.jid),
    );

  const setAllPaused = (paused: boolean) => {
    for (const group of core.groups.list()) if (group.paused !== paused) setPaused(group, paused);
  };

  function facts(): TrayFacts {
    const groups = core.groups.list();
    return {
      setupProblems: core.setupProblems(),
      whatsapp,
      groups: { total: groups.length, paused: groups.filter((g) => g.paused).length },
      queue: core.queue.snapshot(),
      recentGiveUps: givenUp.size,
    };
  }

  function rebuild(): void {
    if (destroyed) return;
    const now = facts();
    const state = trayState(now);
    if (state !== shownState) {
      shownState = state;
      tray.setImage(trayIcon(deps.nativeImage, platform, state));
    }
    const tooltip = trayTooltip(now);
    tray.setToolTip(tooltip);
    const template = trayMenuTemplate({
      statusLine: tooltip.replace(/^Clawbar: /, ''),
      groups: core.groups.list(),
      launchAtLogin: deps.launchAtLogin.get(),
      setPaused,
      setAllPaused,
      setLaunchAtLogin: (enabled) =>
        guarded('change launch at login', () => {
          deps.launchAtLogin.set(enabled);
          rebuild();
        }),
      openWindow: deps.openWindow,
      quit: deps.quit,
    });
    menu = deps.Menu.buildFromTemplate(template);
    // On macOS a context menu set on the icon swallows the left click, so there the click
    // toggles the window and the right click pops the menu up (as the menubar package does).
    // Linux tray hosts (AppIndicator) show only a set menu and send no clicks.
    if (platform !== 'darwin') tray.setContextMenu(menu);
  }

  tray.on('click', (_event, bounds) => deps.toggleWindow(bounds ?? tray.getBounds()));
  tray.on('right-click', () => {
    if (menu && platform === 'darwin') tray.popUpContextMenu(menu);
  });

  const unsubscribe = [
    core.events.on('message:stored', (e) => {
      if (e.triggered) rebuild();
    }),
    core.events.on('run:started', rebuild),
    core.events.on('run:finished', rebuild),
    core.events.on('turn:finished', rebuild),
    core.events.on('group:changed', (e) => {
      if (e.change === 'removed') givenUp.delete(e.groupJid);
      rebuild();
    }),
    core.events.on('setup:changed', rebuild),
    core.events.on('run:gave-up', (e) => {
      givenUp.add(e.groupJid);
      rebuild();
    }),
    core.events.on('channel:state', (e) => {
      if (e.channel !== 'whatsapp') return;
      whatsapp = e.state;
      whatsappSeen = true;
      rebuild();
    }),
  ];

  rebuild();
  // The channels' states before the tray existed come from one status read; events after it win.
  core
    .status()
    .then(
      (status) => {
        const state = status.channels.find((c) => c.name === 'whatsapp')?.state;
        if (state && !whatsappSeen) whatsapp = state;
      },
      (err: unknown) => log.warn({ err }, 'could not read the core status'),
    )
    .finally(rebuild);

  return {
    rebuild,
    facts,
    acknowledge() {
      if (givenUp.size === 0) return;
      givenUp.clear();
      rebuild();
    },
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
  launchAtLogin: boolean;
  setPaused(group: Group, paused: boolean): void;
  setAllPaused(paused: boolean): void;
  setLaunchAtLogin(enabled: boolean): void;
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
  const allPaused = input.groups.length > 0 && input.groups.every((g) => g.paused);
  return [
    { label: input.statusLine, enabled: false },
    { type: 'separator' },
    ...groupItems,
    { type: 'separator' },
    { label: 'Open Clawbar…', click: input.openWindow },
    allPaused
      ? { label: 'Resume all', click: () => input.setAllPaused(false) }
      : {
          label: 'Pause all',
          enabled: input.groups.length > 0,
          click: () => input.setAllPaused(true),
        },
    {
      label: 'Launch at login',
      type: 'checkbox',
      checked: input.launchAtLogin,
      click: () => input.setLaunchAtLogin(!input.launchAtLogin),
    },
    { type: 'separator' },
    { label: 'Quit Clawbar', click: input.quit },
  ];
}

/**
 * The icon for a state at 2× scale, so it is crisp on Retina screens and 16 pt tall. On macOS
 * it is a template image: the menu bar tints it for light and dark mode.
 */
function trayIcon<Image extends TrayImage>(
  nativeImage: TrayDeps<Image, unknown>['nativeImage'],
  platform: NodeJS.Platform,
  state: TrayState,
): Image {
  const mac = platform === 'darwin';
  const image = nativeImage.createFromBuffer(trayIconPng(state, mac ? 'template' : 'color'), {
    scaleFactor: 2,
  });
  if (mac) image.setTemplateImage(true);
  return image;
}

/**
 * The tray window: one small frameless window showing the renderer, served as
 * `app://clawbar/index.html` (security.ts). A click on the tray icon toggles it, placed under
 * the icon by {@link windowPosition}; it hides when it loses focus, and closing it leaves the
 * app running in the tray.
 *
 * It is locked down: context isolation, the renderer sandbox, no Node, no navigation and no
 * pop-ups (security.ts), so the only page that can ever run in it is ours, and the IPC gate
 * can trust "this is our window" (`isOwnWindow`).
 *
 * Electron's `BrowserWindow` and `screen` are injected, so this is tested with
 * `test/fakes/electron.ts`.
 */
import { fileURLToPath } from 'node:url';
import type { BrowserWindowConstructorOptions } from 'electron';
import type { Logger } from '../core/logger.js';
import { UI_EVENT_CHANNEL, type UiEvent } from '../../preload/ipc-contract.js';
import { APP_INDEX_URL, guardWebContents, type GuardedContents } from './security.js';

/** A rectangle on screen, in Electron's device-independent pixels. */
export interface Rectangle {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The tray window's size. */
export const WINDOW_SIZE = { width: 380, height: 520 } as const;

export interface WindowPositionInput {
  /** The tray icon; all zero where the tray host does not say (some Linux panels). */
  trayBounds: Rectangle;
  windowSize: { width: number; height: number };
  /** The display's area without the taskbar, menu bar or dock. */
  workArea: Rectangle;
  /** The whole display. */
  displayBounds: Rectangle;
  platform: NodeJS.Platform;
}

export type TaskbarSide = 'top' | 'bottom' | 'left' | 'right';

/**
 * Which edge the taskbar is on: the side where the work area stops short of the display.
 * With none (an auto-hiding panel), the side of the screen the tray icon is nearest; macOS's
 * menu bar is always at the top.
 */
export function taskbarSide(input: Omit<WindowPositionInput, 'windowSize'>): TaskbarSide {
  const { workArea: work, displayBounds: display, trayBounds: tray } = input;
  if (input.platform === 'darwin') return 'top';
  if (work.y > display.y) return 'top';
  if (work.y + work.height < display.y + display.height) return 'bottom';
  if (work.x > display.x) return 'left';
  if (work.x + work.width < display.x + display.width) return 'right';
  if (!hasBounds(tray)) return 'top';
  const fromTop = tray.y - display.y;
  const fromBottom = display.y + display.height - (tray.y + tray.height);
  const fromLeft = tray.x - display.x;
  const fromRight = display.x + display.width - (tray.x + tray.width);
  const nearest = Math.min(fromTop, fromBottom, fromLeft, fromRight);
  if (nearest === fromTop) return 'top';
  if (nearest === fromBottom) return 'bottom';
  return nearest === fromLeft ? 'left' : 'right';
}

function hasBounds(r: Rectangle): boolean {
  return r.width > 0 && r.height > 0;
}

/**
 * Where the window's top-left corner goes: against the taskbar, centred on the tray icon
 * along it, and clamped inside the work area (so an icon at a screen edge does not push the
 * window off screen). With no tray bounds, the work area's corner on the taskbar's side and
 * the right. Whole pixels: Electron rejects fractional positions (menubar issue 233).
 */
export function windowPosition(input: WindowPositionInput): { x: number; y: number } {
  const { trayBounds: tray, windowSize: size, workArea: work } = input;
  const side = taskbarSide(input);
  const known = hasBounds(tray);
  const centreX = known ? tray.x + tray.width / 2 - size.width / 2 : Infinity;
  const centreY = known ? tray.y + tray.height / 2 - size.height / 2 : Infinity;
  let x: number;
  let y: number;
  switch (side) {
    case 'top':
      x = centreX;
      y = work.y;
      break;
    case 'bottom':
      x = centreX;
      y = work.y + work.height - size.height;
      break;
    case 'left':
      x = work.x;
      y = centreY;
      break;
    case 'right':
      x = work.x + work.width - size.width;
      y = centreY;
      break;
    default: {
      const unreachable: never = side;
      throw new Error(`unknown taskbar side ${String(unreachable)}`);
    }
  }
  return {
    x: Math.round(clamp(x, work.x, work.x + work.width - size.width)),
    y: Math.round(clamp(y, work.y, work.y + work.height - size.height)),
  };
}

function clamp(value: number, min: number, max: number): number {
  // A window larger than the work area keeps its top-left corner on screen.
  return Math.max(min, Math.min(value, max));
}

/** The part of Electron's `BrowserWindow` used here. */
export interface WindowLike {
  loadURL(url: string): Promise<void>;
  show(): void;
  hide(): void;
  focus(): void;
  isVisible(): boolean;
  isDestroyed(): boolean;
  setPosition(x: number, y: number): void;
  on(event: 'closed' | 'blur', listener: () => void): unknown;
  readonly webContents: GuardedContents & { send(channel: string, ...args: unknown[]): void };
}

export interface WindowClass<Sender, W extends WindowLike> {
  new (options: BrowserWindowConstructorOptions): W;
  fromWebContents(webContents: Sender): W | null;
}

/** The part of Electron's `screen` used here. */
export interface ScreenLike {
  getDisplayNearestPoint(point: { x: number; y: number }): {
    bounds: Rectangle;
    workArea: Rectangle;
  };
  getCursorScreenPoint(): { x: number; y: number };
}

export interface TrayWindowDeps<Sender, W extends WindowLike> {
  BrowserWindow: WindowClass<Sender, W>;
  /** Places the window under the icon; without it the window opens where the system puts it. */
  screen?: ScreenLike;
  /** Electron's `shell.openExternal`, for allowlisted links. @default every link refused */
  openExternal?: (url: string) => Promise<void>;
  /** @default {@link shellPaths}() */
  paths?: ShellPaths;
  /** @default process.platform */
  platform?: NodeJS.Platform;
  /** @default Date.now */
  now?: () => number;
  /** The window was shown (the tray clears what the user has now seen). */
  onShown?: () => void;
  log: Logger;
}

export interface TrayWindow<Sender> {
  /**
   * Shows the window under the tray icon (when its bounds are given) or where it last was,
   * creating it if needed, and brings it to the front. `route` (`tasks/<id>`) asks the page
   * to show one thing.
   */
  open(trayBounds?: Rectangle, route?: string): void;
  /** A click on the tray icon: hides a shown window, else opens it under the icon. */
  toggle(trayBounds: Rectangle): void;
  hide(): void;
  /** The IPC gate: true only for the web contents of this window. */
  isOwnWindow(sender: Sender): boolean;
}

export interface ShellPaths {
  /** The bundled preload: `dist/preload/index.cjs`. */
  preload: string;
  /** The page: `dist/renderer/index.html`; its folder is served as `app://clawbar/`. */
  html: string;
}

/**
 * Where the built preload and page are, relative to this module once compiled
 * (`dist/main/app/window.js`), which also holds inside the packaged app's asar.
 */
export function shellPaths(moduleUrl: string = import.meta.url): ShellPaths {
  return {
    preload: fileURLToPath(new URL('../../preload/index.cjs', moduleUrl)),
    html: fileURLToPath(new URL('../../renderer/index.html', moduleUrl)),
  };
}

/** The window's settings; exported so a test can check the security-relevant ones. */
export function trayWindowOptions(
  paths: Pick<ShellPaths, 'preload'>,
): BrowserWindowConstructorOptions {
  return {
    ...WINDOW_SIZE,
    show: false,
    frame: false,
    resizable: false,
    movable: false,
    minimizable: false,
    maximizable: false,
    fullscreenable: false,
    skipTaskbar: true,
    title: 'Clawbar',
    webPreferences: {
      preload: paths.preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      spellcheck: false,
    },
  };
}

async function refuseLinks(url: string): Promise<void> {
  throw new Error(`opening links is not set up here: ${url}`);
}

/**
 * A click on the icon of a shown window first blurs it (which hides it), then arrives as a
 * click: within this long after a hide on blur, the click means "close", not "open again".
 */
const CLICK_AFTER_BLUR_MS = 300;

export function createTrayWindow<Sender, W extends WindowLike>(
  deps: TrayWindowDeps<Sender, W>,
): TrayWindow<Sender> {
  const log = deps.log.child({ mod: 'window' });
  const paths = deps.paths ?? shellPaths();
  const platform = deps.platform ?? process.platform;
  const now = deps.now ?? Date.now;
  let window: W | null = null;
  let hiddenOnBlurAt = -Infinity;

  const create = (route: string | undefined): W => {
    const created = new deps.BrowserWindow(trayWindowOptions(paths));
    // Nothing but our page may load here: the IPC gate relies on it.
    guardWebContents(created.webContents, { openExternal: deps.openExternal ?? refuseLinks, log });
    created.on('blur', () => {
      if (created.isDestroyed() || !created.isVisible()) return;
      hiddenOnBlurAt = now();
      created.hide();
    });
    created.on('closed', () => {
      if (window === created) window = null;
    });
    const url = route ? `${APP_INDEX_URL}#${encodeURI(route)}` : APP_INDEX_URL;
    created
      .loadURL(url)
      .catch((err: unknown) => log.error({ err, url }, 'could not load the tray window'));
    return created;
  };

  const place = (target: W, trayBounds: Rectangle) => {
    if (!deps.screen) return;
    const anchor = hasBounds(trayBounds)
      ? trayBounds
      : { ...deps.screen.getCursorScreenPoint(), width: 0, height: 0 };
    const display = deps.screen.getDisplayNearestPoint({ x: anchor.x, y: anchor.y });
    const { x, y } = windowPosition({
      trayBounds,
      windowSize: WINDOW_SIZE,
      workArea: display.workArea,
      displayBounds: display.bounds,
      platform,
    });
    target.setPosition(x, y);
  };

  const open = (trayBounds?: Rectangle, route?: string): void => {
    const fresh = !window || window.isDestroyed();
    if (!window || window.isDestroyed()) window = create(route);
    // An open page gets the route as a live event (the contract's `window:navigate`); a new
    // one reads it from its URL's hash.
    else if (route) {
      const navigate: UiEvent = { type: 'window:navigate', route };
      window.webContents.send(UI_EVENT_CHANNEL, navigate);
    }
    if (trayBounds) place(window, trayBounds);
    else if (fresh) place(window, { x: 0, y: 0, width: 0, height: 0 });
    window.show();
    window.focus();
    deps.onShown?.();
  };

  return {
    open,
    toggle(trayBounds) {
      if (window && !window.isDestroyed() && window.isVisible()) {
        window.hide();
        return;
      }
      if (now() - hiddenOnBlurAt < CLICK_AFTER_BLUR_MS) return;
      open(trayBounds);
    },
    hide() {
      if (window && !window.isDestroyed()) window.hide();
    },
    isOwnWindow(sender) {
      if (!window || window.isDestroyed()) return false;
      return deps.BrowserWindow.fromWebContents(sender) === window;
    },
  };
}

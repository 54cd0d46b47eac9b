/**
 * The tray window: one small window showing the renderer (`renderer/index.html`), created when
 * first opened and again after it is closed. It is locked down: context isolation, the
 * renderer sandbox, no Node, no navigation and no pop-ups, so the only page that can ever run
 * in it is ours, and the IPC gate can trust "this is our window" (`isOwnWindow`).
 *
 * Electron's `BrowserWindow` is injected, so the gate is tested with `test/fakes/electron.ts`.
 */
import { fileURLToPath } from 'node:url';
import type { BrowserWindowConstructorOptions } from 'electron';
import type { Logger } from '../core/logger.js';

/** The part of Electron's `BrowserWindow` used here. */
export interface WindowLike {
  loadFile(filePath: string): Promise<void>;
  show(): void;
  focus(): void;
  isDestroyed(): boolean;
  on(event: 'closed', listener: () => void): unknown;
  readonly webContents: {
    setWindowOpenHandler(handler: () => { action: 'deny' }): void;
    on(event: 'will-navigate', listener: (event: { preventDefault(): void }) => void): unknown;
  };
}

export interface WindowClass<Sender, W extends WindowLike> {
  new (options: BrowserWindowConstructorOptions): W;
  fromWebContents(webContents: Sender): W | null;
}

export interface TrayWindowDeps<Sender, W extends WindowLike> {
  BrowserWindow: WindowClass<Sender, W>;
  /** @default {@link shellPaths}() */
  paths?: ShellPaths;
  log: Logger;
}

export interface TrayWindow<Sender> {
  /** Shows the window, creating it if needed, and brings it to the front. */
  open(): void;
  /** The IPC gate: true only for the web contents of this window. */
  isOwnWindow(sender: Sender): boolean;
}

export interface ShellPaths {
  /** The bundled preload: `dist/preload/index.cjs`. */
  preload: string;
  /** The page: `dist/renderer/index.html`. */
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
export function trayWindowOptions(paths: ShellPaths): BrowserWindowConstructorOptions {
  return {
    width: 380,
    height: 520,
    show: false,
    resizable: false,
    fullscreenable: false,
    title: 'Clawbar',
    webPreferences: {
      preload: paths.preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false,
    },
  };
}

export function createTrayWindow<Sender, W extends WindowLike>(
  deps: TrayWindowDeps<Sender, W>,
): TrayWindow<Sender> {
  const log = deps.log.child({ mod: 'window' });
  const paths = deps.paths ?? shellPaths();
  let window: W | null = null;

  const create = (): W => {
    const created = new deps.BrowserWindow(trayWindowOptions(paths));
    // Nothing but our page may load here: the IPC gate relies on it.
    created.webContents.on('will-navigate', (event) => event.preventDefault());
    created.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
    created.on('closed', () => {
      if (window === created) window = null;
    });
    created
      .loadFile(paths.html)
      .catch((err: unknown) =>
        log.error({ err, html: paths.html }, 'could not load the tray window'),
      );
    return created;
  };

  return {
    open() {
      if (!window || window.isDestroyed()) window = create();
      window.show();
      window.focus();
    },
    isOwnWindow(sender) {
      if (!window || window.isDestroyed()) return false;
      return deps.BrowserWindow.fromWebContents(sender) === window;
    },
  };
}

/**
 * The one hand-written stand-in for the `electron` module (STYLE.md, Tests). It has only the
 * parts Clawbar uses, and it records what is done with them so tests can assert on it.
 *
 * Two ways in: `main/app` functions take these objects as dependencies (pass `ipcMain`, `Tray`…
 * directly), and code that imports `electron` itself (the preload) gets this module through
 * `vi.mock('electron', () => import('../fakes/electron.js'))`. Call {@link resetElectronFake}
 * in `beforeEach`: the state lives in module-level singletons, like Electron's.
 *
 * Like real IPC, `ipcRenderer.invoke` structured-clones arguments and results, and a rejected
 * handler reaches the caller as a new Error carrying only the message.
 */
import { EventEmitter } from 'node:events';
import type { BrowserWindowConstructorOptions } from 'electron';

// ── web contents and windows ─────────────────────────────────────────────

let nextWebContentsId = 1;

export class WebContents extends EventEmitter {
  readonly id = nextWebContentsId++;
  windowOpenHandler: (() => { action: 'deny' | 'allow' }) | null = null;

  setWindowOpenHandler(handler: () => { action: 'deny' | 'allow' }): void {
    this.windowOpenHandler = handler;
  }

  /** Emits `will-navigate` as Electron does; true when a listener prevented it. */
  navigate(url: string): boolean {
    let prevented = false;
    this.emit('will-navigate', { preventDefault: () => (prevented = true), url }, url);
    return prevented;
  }
}

export class BrowserWindow extends EventEmitter {
  static instances: BrowserWindow[] = [];

  readonly webContents = new WebContents();
  loadedFile: string | null = null;
  visible = false;
  focused = false;
  private destroyed = false;

  constructor(readonly options: BrowserWindowConstructorOptions) {
    super();
    BrowserWindow.instances.push(this);
  }

  static fromWebContents(webContents: WebContents): BrowserWindow | null {
    return (
      BrowserWindow.instances.find((w) => !w.destroyed && w.webContents === webContents) ?? null
    );
  }

  async loadFile(filePath: string): Promise<void> {
    this.loadedFile = filePath;
  }

  show(): void {
    this.visible = true;
  }

  focus(): void {
    this.focused = true;
  }

  isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Closes and destroys the window, as the user clicking its close button would. */
  close(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.visible = false;
    this.emit('closed');
  }
}

// ── IPC ──────────────────────────────────────────────────────────────────

type InvokeListener = (event: { sender: WebContents }, ...args: unknown[]) => unknown;

class IpcMain {
  readonly handlers = new Map<string, InvokeListener>();

  handle(channel: string, listener: InvokeListener): void {
    // Electron throws on a second handler for one channel; so does the fake.
    if (this.handlers.has(channel))
      throw new Error(`Attempted to register a second handler for '${channel}'`);
    this.handlers.set(channel, listener);
  }

  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }

  /** Calls a channel's handler as if `sender` had invoked it; rejects with the handler's own error. */
  async invoke(channel: string, sender: WebContents, ...args: unknown[]): Promise<unknown> {
    const listener = this.handlers.get(channel);
    if (!listener) throw new Error(`No handler registered for '${channel}'`);
    return listener({ sender }, ...args);
  }
}

class IpcRenderer {
  /** Whose page this renderer is; set it to the window under test. */
  sender: WebContents | null = null;

  async invoke(channel: string, ...args: unknown[]): Promise<unknown> {
    if (!this.sender)
      throw new Error('fake ipcRenderer: set ipcRenderer.sender to a window’s webContents first');
    const listener = ipcMain.handlers.get(channel);
    if (!listener)
      throw new Error(
        `Error invoking remote method '${channel}': Error: No handler registered for '${channel}'`,
      );
    try {
      return structuredClone(await listener({ sender: this.sender }, ...structuredClone(args)));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // Real Electron carries only the message across; the cause is here for test failures.
      throw new Error(`Error invoking remote method '${channel}': Error: ${message}`, {
        cause: err,
      });
    }
  }
}

export const ipcMain = new IpcMain();
export const ipcRenderer = new IpcRenderer();

class ContextBridge {
  readonly exposed = new Map<string, unknown>();

  exposeInMainWorld(apiKey: string, api: unknown): void {
    this.exposed.set(apiKey, api);
  }
}

export const contextBridge = new ContextBridge();

// ── tray, menus, images, notifications ──────────────────────────────────

export interface MenuItemTemplate {
  label?: string;
  type?: string;
  enabled?: boolean;
  submenu?: MenuItemTemplate[];
  click?: () => void;
}

export class Menu {
  constructor(readonly items: MenuItemTemplate[]) {}

  static buildFromTemplate(template: MenuItemTemplate[]): Menu {
    return new Menu(template);
  }
}

export class NativeImage {
  isTemplate = false;

  constructor(
    readonly buffer: Buffer,
    readonly scaleFactor: number,
  ) {}

  setTemplateImage(option: boolean): void {
    this.isTemplate = option;
  }

  isTemplateImage(): boolean {
    return this.isTemplate;
  }
}

export const nativeImage = {
  createFromBuffer(buffer: Buffer, options?: { scaleFactor?: number }): NativeImage {
    return new NativeImage(buffer, options?.scaleFactor ?? 1);
  },
};

export class Tray {
  static instances: Tray[] = [];

  /** Every menu set, oldest first; the last one is what the user sees. */
  readonly menus: Array<Menu | null> = [];
  toolTip = '';
  destroyed = false;

  constructor(readonly image: NativeImage) {
    Tray.instances.push(this);
  }

  setContextMenu(menu: Menu | null): void {
    this.menus.push(menu);
  }

  setToolTip(toolTip: string): void {
    this.toolTip = toolTip;
  }

  destroy(): void {
    this.destroyed = true;
  }

  get menu(): Menu | null {
    return this.menus.at(-1) ?? null;
  }
}

export class Notification {
  static supported = true;
  static shown: Array<{ title: string; body: string }> = [];

  constructor(readonly options: { title: string; body: string }) {}

  static isSupported(): boolean {
    return Notification.supported;
  }

  show(): void {
    Notification.shown.push(this.options);
  }
}

// ── app and dialog ──────────────────────────────────────────────────────

class App extends EventEmitter {
  hasLock = true;
  quitCalls = 0;
  /** Set once a quit was not prevented by any `before-quit` listener. */
  quitted = false;
  exitCode: number | null = null;
  readonly paths = new Map<string, string>();
  readonly dock = { hidden: false, hide: () => void (this.dock.hidden = true) };

  reset(): void {
    this.removeAllListeners();
    this.hasLock = true;
    this.quitCalls = 0;
    this.quitted = false;
    this.exitCode = null;
    this.paths.clear();
    this.dock.hidden = false;
  }

  whenReady(): Promise<void> {
    return Promise.resolve();
  }

  requestSingleInstanceLock(): boolean {
    return this.hasLock;
  }

  setPath(name: string, value: string): void {
    this.paths.set(name, value);
  }

  /** Like Electron: `before-quit` first; a listener may prevent the quit. */
  quit(): void {
    this.quitCalls++;
    let prevented = false;
    this.emit('before-quit', { preventDefault: () => (prevented = true) });
    if (!prevented) this.quitted = true;
  }

  exit(exitCode = 0): void {
    this.exitCode = exitCode;
  }
}

export const app = new App();

export const dialog = {
  errors: [] as Array<{ title: string; content: string }>,
  showErrorBox(title: string, content: string): void {
    this.errors.push({ title, content });
  },
};

/** Fresh state for the next test: no handlers, windows, trays, notifications or listeners. */
export function resetElectronFake(): void {
  ipcMain.handlers.clear();
  ipcRenderer.sender = null;
  contextBridge.exposed.clear();
  app.reset();
  dialog.errors.length = 0;
  BrowserWindow.instances = [];
  Tray.instances = [];
  Notification.shown = [];
  Notification.supported = true;
}

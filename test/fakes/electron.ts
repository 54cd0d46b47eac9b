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
  /** `details` is optional here so a test may ask "what about any window?" with no URL. */
  windowOpenHandler: ((details?: { url: string }) => { action: 'deny' | 'allow' }) | null = null;
  /** Every message sent to the page (`webContents.send`), oldest first. */
  readonly sent: Array<{ channel: string; args: unknown[] }> = [];

  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' | 'allow' }): void {
    this.windowOpenHandler = handler as (details?: { url: string }) => { action: 'deny' | 'allow' };
  }

  send(channel: string, ...args: unknown[]): void {
    this.sent.push({ channel, args });
  }

  /** Emits `will-navigate` as Electron does; true when a listener prevented it. */
  navigate(url: string): boolean {
    return this.emitPreventable('will-navigate', url);
  }

  /** Emits `will-redirect`; true when a listener prevented it. */
  redirect(url: string): boolean {
    return this.emitPreventable('will-redirect', url);
  }

  /** A page asking for a new window (`window.open`, a target=_blank link): the handler's answer. */
  openWindow(url: string): { action: 'deny' | 'allow' } {
    // Electron's default, with no handler, is to allow.
    return this.windowOpenHandler?.({ url }) ?? { action: 'allow' };
  }

  private emitPreventable(event: string, url: string): boolean {
    let prevented = false;
    this.emit(event, { preventDefault: () => (prevented = true), url }, url);
    return prevented;
  }
}

export class BrowserWindow extends EventEmitter {
  static instances: BrowserWindow[] = [];

  readonly webContents = new WebContents();
  loadedFile: string | null = null;
  loadedUrl: string | null = null;
  visible = false;
  focused = false;
  position: [number, number] | null = null;
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

  async loadURL(url: string): Promise<void> {
    this.loadedUrl = url;
  }

  show(): void {
    this.visible = true;
  }

  hide(): void {
    this.visible = false;
  }

  isVisible(): boolean {
    return this.visible;
  }

  setPosition(x: number, y: number): void {
    // Electron throws on fractions (menubar issue 233); so does the fake.
    if (!Number.isInteger(x) || !Number.isInteger(y))
      throw new TypeError(`setPosition needs whole pixels, got ${x}, ${y}`);
    this.position = [x, y];
  }

  /** The window loses focus, as when the user clicks elsewhere. */
  blur(): void {
    this.focused = false;
    this.emit('blur');
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
  checked?: boolean;
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

export interface Rectangle {
  x: number;
  y: number;
  width: number;
  height: number;
}

export class Tray extends EventEmitter {
  static instances: Tray[] = [];

  /** Every menu set, oldest first; the last one is what the user sees. */
  readonly menus: Array<Menu | null> = [];
  /** Every image shown, the first (from the constructor) included. */
  readonly images: NativeImage[] = [];
  /** Menus popped up by hand (macOS right click). */
  readonly poppedUp: Menu[] = [];
  toolTip = '';
  destroyed = false;
  bounds: Rectangle = { x: 1200, y: 0, width: 22, height: 24 };

  constructor(image: NativeImage) {
    super();
    this.images.push(image);
    Tray.instances.push(this);
  }

  /** The image shown now. */
  get image(): NativeImage {
    return this.images.at(-1)!;
  }

  setImage(image: NativeImage): void {
    this.images.push(image);
  }

  getBounds(): Rectangle {
    return this.bounds;
  }

  popUpContextMenu(menu?: Menu): void {
    if (menu) this.poppedUp.push(menu);
  }

  /** A left click on the icon, as Electron reports it. */
  click(): void {
    this.emit('click', {}, this.bounds, { x: this.bounds.x, y: this.bounds.y });
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

export class Notification extends EventEmitter {
  static supported = true;
  static shown: Array<{ title: string; body: string }> = [];
  /** The shown notifications themselves, to click them. */
  static instances: Notification[] = [];

  constructor(readonly options: { title: string; body: string }) {
    super();
  }

  static isSupported(): boolean {
    return Notification.supported;
  }

  show(): void {
    Notification.shown.push(this.options);
    Notification.instances.push(this);
  }

  /** The user clicks the notification. */
  click(): void {
    this.emit('click', {});
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
  loginItem = { openAtLogin: false };

  reset(): void {
    this.removeAllListeners();
    this.hasLock = true;
    this.quitCalls = 0;
    this.quitted = false;
    this.exitCode = null;
    this.paths.clear();
    this.dock.hidden = false;
    this.loginItem = { openAtLogin: false };
  }

  setLoginItemSettings(settings: { openAtLogin: boolean }): void {
    this.loginItem = { openAtLogin: settings.openAtLogin };
  }

  getLoginItemSettings(): { openAtLogin: boolean } {
    return { ...this.loginItem };
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

// ── power, screen, shell, protocol, session, safeStorage ─────────────────

/** Emit `resume` to simulate the machine waking. */
export const powerMonitor = new EventEmitter();

export interface Display {
  bounds: Rectangle;
  workArea: Rectangle;
}

export const screen = {
  /** One 1440×900 display with a 24 px menu bar at the top. */
  display: {
    bounds: { x: 0, y: 0, width: 1440, height: 900 },
    workArea: { x: 0, y: 24, width: 1440, height: 876 },
  } as Display,
  cursor: { x: 700, y: 400 },
  getDisplayNearestPoint(_point: { x: number; y: number }): Display {
    return this.display;
  },
  getCursorScreenPoint(): { x: number; y: number } {
    return this.cursor;
  },
};

export const shell = {
  opened: [] as string[],
  async openExternal(url: string): Promise<void> {
    this.opened.push(url);
  },
};

export const protocol = {
  handlers: new Map<string, (request: Request) => Response | Promise<Response>>(),
  privileged: [] as unknown[],
  registerSchemesAsPrivileged(schemes: unknown[]): void {
    this.privileged.push(...schemes);
  },
  handle(scheme: string, handler: (request: Request) => Response | Promise<Response>): void {
    if (this.handlers.has(scheme)) throw new Error(`scheme ${scheme} is already handled`);
    this.handlers.set(scheme, handler);
  },
};

type HeadersListener = (
  details: { url: string; responseHeaders?: Record<string, string[]> },
  callback: (response: { responseHeaders?: Record<string, string[]> }) => void,
) => void;

export const session = {
  defaultSession: {
    webRequest: {
      listener: null as HeadersListener | null,
      onHeadersReceived(listener: HeadersListener): void {
        this.listener = listener;
      },
      /** Runs a response's headers through the listener, as Chromium would. */
      receive(url: string, headers: Record<string, string[]>): Record<string, string[]> {
        let out = headers;
        this.listener?.(
          { url, responseHeaders: headers },
          (r) => (out = r.responseHeaders ?? headers),
        );
        return out;
      },
    },
  },
};

/**
 * A stand-in for Chromium's OS crypt: "encrypts" by reversing and prefixing, which is enough
 * to see that the stored bytes are not the plain key and that decryption undoes it.
 */
export const safeStorage = {
  available: true,
  backend: 'gnome_libsecret' as
    'basic_text' | 'gnome_libsecret' | 'kwallet' | 'kwallet5' | 'kwallet6' | 'unknown',
  isEncryptionAvailable(): boolean {
    return this.available;
  },
  encryptString(plainText: string): Buffer {
    if (!this.available) throw new Error('Encryption is not available.');
    return Buffer.from(`enc:${[...plainText].reverse().join('')}`);
  },
  decryptString(encrypted: Buffer): string {
    const text = encrypted.toString();
    if (!text.startsWith('enc:'))
      throw new Error(
        'Error while decrypting the ciphertext provided to safeStorage.decryptString.',
      );
    return [...text.slice(4)].reverse().join('');
  },
  getSelectedStorageBackend() {
    return this.backend;
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
  Notification.instances = [];
  Notification.supported = true;
  powerMonitor.removeAllListeners();
  screen.display = {
    bounds: { x: 0, y: 0, width: 1440, height: 900 },
    workArea: { x: 0, y: 24, width: 1440, height: 876 },
  };
  screen.cursor = { x: 700, y: 400 };
  shell.opened = [];
  protocol.handlers.clear();
  protocol.privileged = [];
  session.defaultSession.webRequest.listener = null;
  safeStorage.available = true;
  safeStorage.backend = 'gnome_libsecret';
}

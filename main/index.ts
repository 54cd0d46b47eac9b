/**
 * The Electron entry: starts the core, then the shell around it, in this order.
 *
 *  1. Keep Chromium's data in `$CLAWBAR_HOME/electron`, claim the one-instance lock for it,
 *     and register the `app://` scheme (both must happen before `ready`).
 *  2. Wait for Electron to be ready.
 *  3. Read the settings (electron-store, validated) and the API key (safeStorage).
 *  4. Boot the core with them (database, configuration, runtime, model broker); from here on,
 *     quitting shuts it down cleanly first.
 *  5. Serve the control socket, so the CLI reaches this app as it reaches `clawbar serve`.
 *  6. Start the core: folders, orphaned containers, channels, recovery of unanswered messages,
 *     the scheduler (re-armed when the machine wakes).
 *  7. Lock the web side down: the CSP on every response, `app://` serving `dist/renderer`.
 *  8. Register the IPC handlers, gated to the tray window.
 *  9. Create the tray icon and its menu, desktop notifications, and launch at login.
 * 10. Hide the Dock icon on macOS.
 *
 * This file only wires Electron into functions of `main/app` and the core's `bootCore`; their
 * behaviour is tested with `test/fakes/electron.ts`. It is the one main-process file that
 * imports `electron` at runtime.
 */
import path from 'node:path';
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  Menu,
  nativeImage,
  Notification,
  powerMonitor,
  protocol,
  safeStorage,
  screen,
  session,
  shell as electronShell,
  Tray,
  type NativeImage,
  type WebContents,
} from 'electron';
import ElectronStore from 'electron-store';
import { forwardEvents } from './app/events-bridge.js';
import { registerIpc } from './app/ipc.js';
import {
  claimSingleInstance,
  failStartup,
  hideDockIcon,
  keepChromiumDataIn,
  keepRunningWithoutWindows,
  rearmTasksOnWake,
  shutdownOnQuit,
  startControlSocket,
} from './app/lifecycle.js';
import { launchesAtLogin, setLaunchAtLogin } from './app/login-item.js';
import { startNotifications } from './app/notifications.js';
import { apiKeyAccess, createApiKeyVault } from './app/secrets.js';
import {
  APP_SCHEME_PRIVILEGES,
  enforceCsp,
  isAllowedExternalUrl,
  serveAppProtocol,
} from './app/security.js';
import { bootEnv, settingsAccess } from './app/settings.js';
import { createTray, type TrayController } from './app/tray.js';
import { createTrayWindow, shellPaths, type TrayWindow } from './app/window.js';
import { bootCore } from './core/boot.js';
import { ensurePrivateHome, resolveHome } from './core/config.js';
import { createLogger } from './core/logger.js';
import { installProcessGuards } from './core/process-guards.js';

// Held for the life of the process: a Tray that is garbage-collected vanishes from the menu
// bar (Electron FAQ, "My app's tray disappeared after a few minutes").
let shell: { tray: TrayController; window: TrayWindow<WebContents> } | null = null;

/** What electron-store keeps: the settings (validated on read) and the encrypted key. */
type StoredFile = { settings?: unknown; anthropicApiKeyEncrypted?: unknown };

async function onReady(home: string): Promise<void> {
  await app.whenReady();

  // The log folder lives in the data directory: make it private before anything is written.
  ensurePrivateHome(home);
  const log = createLogger({ logDir: path.join(home, 'logs') });
  const file = new ElectronStore<StoredFile>({ name: 'settings' });
  const loginItem = { app };
  // Validated once here (a bad file stops the start with a clear error); each change from the
  // window or the tray is validated as a whole and written back. The login item follows it.
  const settings = settingsAccess(
    { get: () => file.get('settings'), set: (value) => file.set('settings', value) },
    (patch) => {
      if (patch.launchAtLogin !== undefined) setLaunchAtLogin(patch.launchAtLogin, loginItem);
    },
  );
  const notify = (title: string, body: string) => {
    if (settings.stored().notifications !== false && Notification.isSupported())
      new Notification({ title, body }).show();
  };
  const vault = createApiKeyVault({
    safeStorage,
    box: file,
    log,
    warn: (message) => notify('Clawbar: your API key is weakly protected', message),
  });
  const apiKey = await vault.load();

  const booted = bootCore({
    buildImage: true,
    env: bootEnv(settings.stored(), process.env, apiKey),
    keyFix: 'add your Anthropic API key in Clawbar’s Settings (open the tray window)',
    log,
  });
  const { core } = booted;
  installProcessGuards(log);
  const control = await startControlSocket(booted);
  const stopListening: Array<() => void> = [];
  shutdownOnQuit(
    app,
    async () => {
      for (const stop of stopListening) stop();
      shell?.tray.destroy();
      await booted.core.shutdown();
      await control.close();
      await booted.close(0);
    },
    log,
  );

  await core.start();
  stopListening.push(rearmTasksOnWake(powerMonitor, core.scheduler, log));
  if (!booted.config.apiKey)
    log.warn('no Anthropic API key (ANTHROPIC_API_KEY or Settings): the agent cannot answer');

  enforceCsp(session.defaultSession.webRequest);
  const paths = shellPaths();
  serveAppProtocol(protocol, path.dirname(paths.html));

  const openExternal = async (url: string) => {
    if (!isAllowedExternalUrl(url)) throw new Error(`not an allowed link: ${url}`);
    await electronShell.openExternal(url);
  };
  let tray: TrayController | null = null;
  const window = createTrayWindow({
    BrowserWindow,
    screen,
    openExternal,
    paths,
    log,
    onShown: () => tray?.acknowledge(),
  });
  registerIpc({
    ipcMain,
    isOwnWindow: window.isOwnWindow,
    core,
    log,
    // The window's Settings panel reads and changes the validated electron-store settings;
    // what the core reads at start (runtime, concurrency, …) takes effect at the next start.
    settings,
    // A key entered there is encrypted by safeStorage and used at once, with no restart.
    apiKey: apiKeyAccess({
      vault,
      safeStorage,
      environmentKey: process.env.ANTHROPIC_API_KEY,
      core,
    }),
  });
  // Live events go to each tray window as it is made; a closed window's listeners go with it.
  app.on('browser-window-created', (_event, created) => {
    forwardEvents({
      events: core.events,
      target: created.webContents,
      isOwnWindow: window.isOwnWindow,
      log,
    });
  });

  // The setting is the truth; the system's login item follows it at every start.
  const atLogin = settings.stored().launchAtLogin;
  if (atLogin !== undefined && atLogin !== launchesAtLogin(loginItem))
    setLaunchAtLogin(atLogin, loginItem);
  tray = createTray<NativeImage, Menu>({
    Tray,
    Menu,
    nativeImage,
    core,
    openWindow: () => window.open(),
    toggleWindow: (bounds) => window.toggle(bounds),
    launchAtLogin: {
      get: () => settings.stored().launchAtLogin ?? false,
      set: (enabled) => {
        settings.set({ launchAtLogin: enabled });
      },
    },
    quit: () => app.quit(),
    log,
  });
  shell = { tray, window };
  stopListening.push(
    startNotifications({
      Notification,
      core,
      settings: () => ({
        notifications: settings.stored().notifications ?? true,
        timezone: booted.config.timezone,
      }),
      onAction: (action) => window.open(undefined, action.route),
      log,
    }),
  );
  hideDockIcon(app);
  log.info({ home: booted.config.home }, 'Clawbar is running in the tray');
}

const home = resolveHome();
keepChromiumDataIn(app, home);
// A second launch (from Finder, a launcher) shows the running app's window instead.
if (claimSingleInstance(app, () => shell?.window.open())) {
  protocol.registerSchemesAsPrivileged(APP_SCHEME_PRIVILEGES);
  keepRunningWithoutWindows(app);
  onReady(home).catch((err: unknown) => failStartup(app, dialog, err));
} else {
  app.quit();
}

/**
 * The Electron entry: starts the core, then the shell around it, in this order.
 *
 *  1. Keep Chromium's data in `$CLAWBAR_HOME/electron` and claim the one-instance lock for it.
 *  2. Wait for Electron to be ready.
 *  3. Boot the core (database, configuration, runtime, model broker); from here on, quitting
 *     shuts it down cleanly first.
 *  4. Serve the control socket, so the CLI reaches this app as it reaches `clawbar serve`.
 *  5. Start the core: folders, orphaned containers, channels, recovery of unanswered messages,
 *     the scheduler (re-armed when the machine wakes).
 *  6. Register the IPC handlers, gated to the tray window.
 *  7. Create the tray icon and its menu, and desktop notifications.
 *  8. Hide the Dock icon on macOS.
 *
 * This file only wires Electron into functions of `main/app` and the core's `bootCore`; their
 * behaviour is tested with `test/fakes/electron.ts`. It is the one main-process file that
 * imports `electron` at runtime.
 */
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  Menu,
  nativeImage,
  Notification,
  powerMonitor,
  Tray,
  type WebContents,
} from 'electron';
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
import { notifyGiveUps } from './app/notifications.js';
import { createTray, type TrayController } from './app/tray.js';
import { createTrayWindow, type TrayWindow } from './app/window.js';
import { bootCore } from './core/boot.js';
import { resolveHome } from './core/config.js';
import { installProcessGuards } from './core/process-guards.js';

// Held for the life of the process: a Tray that is garbage-collected vanishes from the menu
// bar (Electron FAQ, "My app's tray disappeared after a few minutes").
let shell: { tray: TrayController; window: TrayWindow<WebContents> } | null = null;

async function onReady(): Promise<void> {
  await app.whenReady();

  const booted = bootCore({ buildImage: true });
  const { core, log } = booted;
  installProcessGuards(log);
  const control = await startControlSocket(booted);
  shutdownOnQuit(
    app,
    async () => {
      shell?.tray.destroy();
      await booted.core.shutdown();
      await control.close();
      await booted.close(0);
    },
    log,
  );

  await core.start();
  rearmTasksOnWake(powerMonitor, core.scheduler, log);
  if (!booted.config.apiKey)
    log.warn('ANTHROPIC_API_KEY is not set: the agent cannot answer until it is');

  const window = createTrayWindow({ BrowserWindow, log });
  registerIpc({ ipcMain, isOwnWindow: window.isOwnWindow, core, log });
  const tray = createTray({
    Tray,
    Menu,
    nativeImage,
    core,
    openWindow: window.open,
    quit: () => app.quit(),
    log,
  });
  shell = { tray, window };
  notifyGiveUps({ Notification, core, log });
  hideDockIcon(app);
  log.info({ home: booted.config.home }, 'Clawbar is running in the tray');
}

keepChromiumDataIn(app, resolveHome());
// A second launch (from Finder, a launcher) shows the running app's window instead.
if (claimSingleInstance(app, () => shell?.window.open())) {
  keepRunningWithoutWindows(app);
  onReady().catch((err: unknown) => failStartup(app, dialog, err));
} else {
  app.quit();
}

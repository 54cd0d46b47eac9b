/**
 * The app's life around the core: one instance per data directory, staying alive with no window
 * open (it lives in the tray), no Dock icon on macOS, the control socket for the CLI, and a
 * clean core shutdown before Electron quits. `main/index.ts` calls these in order.
 *
 * Electron's `app` and `dialog` are injected, so this is tested with `test/fakes/electron.ts`.
 */
import path from 'node:path';
import type { BootedCore } from '../core/boot.js';
import { controlHandlers } from '../core/control/handlers.js';
import { ControlServer } from '../core/control/server.js';
import type { Logger } from '../core/logger.js';

/** The parts of Electron's `app` used here. */
export interface AppLike {
  on(event: 'before-quit', listener: (event: { preventDefault(): void }) => void): unknown;
  on(event: 'window-all-closed', listener: () => void): unknown;
  on(event: 'second-instance', listener: () => void): unknown;
  quit(): void;
  exit(exitCode?: number): void;
  requestSingleInstanceLock(): boolean;
  setPath(name: 'userData', value: string): void;
  readonly dock?: { hide(): void } | undefined;
}

/** What `process` offers for signals; injected so tests need not send real ones. */
export interface SignalSource {
  once(event: 'SIGINT' | 'SIGTERM', listener: () => void): unknown;
}

/**
 * Keeps Chromium's profile (caches, local storage) in `<CLAWBAR_HOME>/electron`, beside the
 * data it belongs to. Electron keys the single-instance lock on this folder too, so two apps
 * on two data directories may run side by side, like two `clawbar serve`s, but never two on
 * one. Must run before `ready` and before {@link claimSingleInstance}.
 */
export function keepChromiumDataIn(app: AppLike, home: string): void {
  app.setPath('userData', path.join(home, 'electron'));
}

/**
 * True if this is the only app on this data directory. Otherwise the first one is asked to
 * show its window and this one should quit.
 */
export function claimSingleInstance(app: AppLike, onSecondInstance: () => void): boolean {
  if (!app.requestSingleInstanceLock()) return false;
  app.on('second-instance', onSecondInstance);
  return true;
}

/** Electron quits when the last window closes; a tray app keeps running. */
export function keepRunningWithoutWindows(app: AppLike): void {
  app.on('window-all-closed', () => {
    // Deliberately empty: subscribing replaces Electron's default of quitting.
  });
}

/** A menu-bar app has no Dock icon. The packaged app also sets `LSUIElement` (electron-builder.yml). */
export function hideDockIcon(app: AppLike, platform: NodeJS.Platform = process.platform): void {
  if (platform === 'darwin') app.dock?.hide();
}

/**
 * Runs `stop` once before the app quits, and quits only after it has finished: Electron does
 * not wait for async `before-quit` listeners, so the first quit is held back and repeated.
 * SIGINT and SIGTERM (Ctrl-C in a terminal, a session ending) take the same path.
 */
export function shutdownOnQuit(
  app: AppLike,
  stop: () => Promise<void>,
  log: Logger,
  signals: SignalSource = process,
): void {
  let state: 'running' | 'stopping' | 'stopped' = 'running';
  app.on('before-quit', (event) => {
    if (state === 'stopped') return;
    event.preventDefault();
    if (state === 'stopping') return;
    state = 'stopping';
    log.info('shutting down');
    stop()
      .catch((err: unknown) => log.error({ err }, 'unclean shutdown'))
      .finally(() => {
        state = 'stopped';
        app.quit();
      });
  });
  const quit = () => app.quit();
  signals.once('SIGINT', quit);
  signals.once('SIGTERM', quit);
}

/**
 * Serves the control socket, so `clawbar status`, `send --wait` and the other commands reach
 * this app as they would reach `clawbar serve`. Fails with `ServeAlreadyRunningError` if
 * `serve` already runs on this data directory: one orchestrator per database.
 */
export async function startControlSocket(booted: BootedCore): Promise<ControlServer> {
  const control = new ControlServer(
    booted.config.socketPath,
    controlHandlers({ core: booted.core, serving: true }),
    booted.log,
  );
  await control.listen();
  return control;
}

/** The parts of Electron's `dialog` used here. */
export interface DialogLike {
  showErrorBox(title: string, content: string): void;
}

/** Startup failed (a bad setting, a database from a newer Clawbar, serve already running): say so and exit. */
export function failStartup(app: AppLike, dialog: DialogLike, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`clawbar: could not start: ${message}\n`);
  dialog.showErrorBox('Clawbar could not start', message);
  app.exit(1);
}

/** The parts of Electron's `powerMonitor` used here. */
export interface PowerMonitorLike {
  on(event: 'resume', listener: () => void): unknown;
  off(event: 'resume', listener: () => void): unknown;
}

/**
 * Re-arms the scheduled tasks when the machine wakes from sleep. Timers count time awake only,
 * so a task due during the sleep would otherwise fire late; on wake it runs within the grace
 * window or is logged as missed (scheduler.ts). The scheduler's own clock check catches this
 * too, within seconds; the wake event makes it immediate. Returns the function that stops
 * listening.
 */
export function rearmTasksOnWake(
  powerMonitor: PowerMonitorLike,
  scheduler: { rearm(reason: string): void },
  log: Logger,
): () => void {
  const onResume = (): void => {
    try {
      scheduler.rearm('the machine woke from sleep');
    } catch (err) {
      log.error({ err }, 'could not re-arm scheduled tasks after a wake');
    }
  };
  powerMonitor.on('resume', onResume);
  return () => powerMonitor.off('resume', onResume);
}

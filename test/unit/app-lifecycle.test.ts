import { EventEmitter } from 'node:events';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import {
  claimSingleInstance,
  failStartup,
  hideDockIcon,
  keepChromiumDataIn,
  keepRunningWithoutWindows,
  rearmTasksOnWake,
  shutdownOnQuit,
} from '../../main/app/lifecycle.js';
import { silentLogger } from '../../main/core/logger.js';
import { app, dialog, resetElectronFake } from '../fakes/electron.js';

beforeEach(() => {
  resetElectronFake();
});

describe('quitting', () => {
  it('holds the first quit until the core has shut down, then quits once', async () => {
    let finish!: () => void;
    const stop = vi.fn(() => new Promise<void>((resolve) => (finish = resolve)));
    shutdownOnQuit(app, stop, silentLogger(), new EventEmitter());

    app.quit();
    expect(app.quitted).toBe(false);
    app.quit(); // a second Quit click while stopping neither stops twice nor quits early
    expect(stop).toHaveBeenCalledOnce();
    expect(app.quitted).toBe(false);

    finish();
    await vi.waitFor(() => expect(app.quitted).toBe(true));
    expect(stop).toHaveBeenCalledOnce();
  });

  it('still quits when the shutdown fails', async () => {
    shutdownOnQuit(
      app,
      () => Promise.reject(new Error('disk gone')),
      silentLogger(),
      new EventEmitter(),
    );
    app.quit();
    await vi.waitFor(() => expect(app.quitted).toBe(true));
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('%s takes the same clean path', async (signal) => {
    const signals = new EventEmitter();
    const stop = vi.fn(async () => undefined);
    shutdownOnQuit(app, stop, silentLogger(), signals);
    signals.emit(signal);
    await vi.waitFor(() => expect(app.quitted).toBe(true));
    expect(stop).toHaveBeenCalledOnce();
  });
});

describe('starting', () => {
  it('keeps Chromium data beside the Clawbar data, which also scopes the one-instance lock', () => {
    keepChromiumDataIn(app, '/data/clawbar');
    expect(app.paths.get('userData')).toBe('/data/clawbar/electron');
  });

  it('a second instance on the same data shows the first one’s window instead', () => {
    const show = vi.fn();
    expect(claimSingleInstance(app, show)).toBe(true);
    app.emit('second-instance');
    expect(show).toHaveBeenCalledOnce();
    app.hasLock = false;
    expect(claimSingleInstance(app, show)).toBe(false);
  });

  it('keeps running when the last window closes', () => {
    keepRunningWithoutWindows(app);
    expect(app.listenerCount('window-all-closed')).toBe(1);
  });

  it('hides the Dock icon on macOS only', () => {
    hideDockIcon(app, 'linux');
    expect(app.dock.hidden).toBe(false);
    hideDockIcon(app, 'darwin');
    expect(app.dock.hidden).toBe(true);
  });

  it('a failed start is shown to the user and exits non-zero', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      failStartup(app, dialog, new Error('the database is from a newer Clawbar'));
    } finally {
      stderr.mockRestore();
    }
    expect(dialog.errors).toEqual([
      { title: 'Clawbar could not start', content: 'the database is from a newer Clawbar' },
    ]);
    expect(app.exitCode).toBe(1);
  });
});

describe('sleep and wake', () => {
  it('re-arms the scheduled tasks when the machine wakes, until told to stop listening', () => {
    const powerMonitor = new EventEmitter();
    const reasons: string[] = [];
    const stop = rearmTasksOnWake(
      powerMonitor,
      { rearm: (reason) => reasons.push(reason) },
      silentLogger(),
    );
    powerMonitor.emit('resume');
    expect(reasons).toEqual(['the machine woke from sleep']);
    stop();
    powerMonitor.emit('resume');
    expect(reasons).toHaveLength(1);
    expect(powerMonitor.listenerCount('resume')).toBe(0);
  });

  it('a scheduler that throws on wake is logged, not thrown into Electron', () => {
    const powerMonitor = new EventEmitter();
    rearmTasksOnWake(
      powerMonitor,
      {
        rearm: () => {
          throw new Error('database is locked');
        },
      },
      silentLogger(),
    );
    expect(() => powerMonitor.emit('resume')).not.toThrow();
  });
});

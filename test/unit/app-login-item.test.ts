import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AUTOSTART_MARKER,
  AutostartConflictError,
  autostartDesktopEntry,
  autostartPath,
  launchesAtLogin,
  quoteExecArg,
  removeAutostartEntry,
  setLaunchAtLogin,
  writeAutostartEntry,
} from '../../main/app/login-item.js';
import { app, resetElectronFake } from '../fakes/electron.js';

let dir: string;
let file: string;

beforeEach(() => {
  resetElectronFake();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-autostart-'));
  file = path.join(dir, 'autostart', 'clawbar.desktop');
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the autostart entry', () => {
  it('is a desktop entry that starts the app and carries our marker', () => {
    const text = autostartDesktopEntry({ exec: '/opt/Clawbar/clawbar' });
    expect(text.split('\n')).toEqual([
      '[Desktop Entry]',
      'Type=Application',
      'Version=1.0',
      'Name=Clawbar',
      'Comment=A private Claude assistant in your tray',
      'Exec=/opt/Clawbar/clawbar',
      'Terminal=false',
      'X-GNOME-Autostart-enabled=true',
      AUTOSTART_MARKER,
      '',
    ]);
  });

  it('quotes paths with spaces and escapes what the spec reserves', () => {
    expect(quoteExecArg('/home/a b/Clawbar.AppImage')).toBe('"/home/a b/Clawbar.AppImage"');
    expect(quoteExecArg('/x/$HOME`"')).toBe('"/x/\\$HOME\\`\\""');
    expect(quoteExecArg('/x/100%')).toBe('/x/100%%');
    expect(() => quoteExecArg('/x\n/y')).toThrow(/line break/);
    // The string-value layer doubles each backslash of the quoting layer.
    expect(autostartDesktopEntry({ exec: '/a b/$x' })).toContain('Exec="/a b/\\\\$x"');
  });

  it('lives in XDG_CONFIG_HOME/autostart, or ~/.config/autostart', () => {
    expect(autostartPath({}, '/home/ada')).toBe('/home/ada/.config/autostart/clawbar.desktop');
    expect(autostartPath({ XDG_CONFIG_HOME: '/cfg' }, '/home/ada')).toBe(
      '/cfg/autostart/clawbar.desktop',
    );
    expect(autostartPath({ XDG_CONFIG_HOME: 'relative' }, '/home/ada')).toBe(
      '/home/ada/.config/autostart/clawbar.desktop',
    );
  });

  it('is written, rewritten and removed again', () => {
    writeAutostartEntry(file, 'one ' + AUTOSTART_MARKER);
    writeAutostartEntry(file, 'two ' + AUTOSTART_MARKER);
    expect(fs.readFileSync(file, 'utf8')).toBe('two ' + AUTOSTART_MARKER);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['clawbar.desktop']);
    expect(removeAutostartEntry(file)).toBe(true);
    expect(fs.existsSync(file)).toBe(false);
    expect(removeAutostartEntry(file)).toBe(false);
  });

  it('never writes through a symbolic link planted at its path, nor removes it', () => {
    const target = path.join(dir, 'target');
    fs.writeFileSync(target, 'precious');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.symlinkSync(target, file);
    expect(() => writeAutostartEntry(file, AUTOSTART_MARKER)).toThrow(AutostartConflictError);
    expect(() => removeAutostartEntry(file)).toThrow(/symbolic link/);
    expect(fs.readFileSync(target, 'utf8')).toBe('precious');
    expect(fs.lstatSync(file).isSymbolicLink()).toBe(true);
  });

  it('leaves a clawbar.desktop the user wrote alone', () => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '[Desktop Entry]\nExec=my-own-wrapper\n');
    expect(() => writeAutostartEntry(file, AUTOSTART_MARKER)).toThrow(/not written by Clawbar/);
    expect(() => removeAutostartEntry(file)).toThrow(AutostartConflictError);
    expect(fs.readFileSync(file, 'utf8')).toContain('my-own-wrapper');
  });
});

describe('launch at login', () => {
  it('on Linux writes and removes the autostart entry', () => {
    const deps = {
      app,
      platform: 'linux' as const,
      autostartFile: file,
      exec: { exec: '/x/clawbar' },
    };
    expect(launchesAtLogin(deps)).toBe(false);
    setLaunchAtLogin(true, deps);
    expect(fs.readFileSync(file, 'utf8')).toContain('Exec=/x/clawbar');
    expect(launchesAtLogin(deps)).toBe(true);
    setLaunchAtLogin(false, deps);
    expect(fs.existsSync(file)).toBe(false);
    expect(launchesAtLogin(deps)).toBe(false);
  });

  it('on macOS sets the login item and writes no file', () => {
    const deps = { app, platform: 'darwin' as const, autostartFile: file };
    setLaunchAtLogin(true, deps);
    expect(app.getLoginItemSettings().openAtLogin).toBe(true);
    expect(launchesAtLogin(deps)).toBe(true);
    setLaunchAtLogin(false, deps);
    expect(launchesAtLogin(deps)).toBe(false);
    expect(fs.existsSync(path.dirname(file))).toBe(false);
  });
});

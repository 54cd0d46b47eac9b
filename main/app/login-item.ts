/**
 * Launch at login. macOS: the app's login item (`app.setLoginItemSettings`). Linux: an
 * autostart entry, `~/.config/autostart/clawbar.desktop` (the freedesktop.org Desktop
 * Application Autostart spec), written by us and removed again when the setting is turned off.
 *
 * The file is written without following a symbolic link planted at its path, and only a file
 * that carries our marker is ever removed: a user's own `clawbar.desktop` is left alone.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A line every entry we write carries; only such a file is replaced or removed. */
export const AUTOSTART_MARKER = 'X-Clawbar-Autostart=true';

export interface DesktopEntryInput {
  /** The executable: the AppImage (`$APPIMAGE`) or the installed binary (`process.execPath`). */
  exec: string;
  /** Arguments after it, e.g. the app path in development. */
  args?: string[];
}

/**
 * Quotes one argument for a desktop entry's `Exec` key (the spec's quoting rule): an argument
 * with a reserved character goes in double quotes, where `"`, `` ` ``, `$` and `\` are
 * backslash-escaped; `%` is doubled everywhere (it starts field codes). Line breaks cannot be
 * represented, so they are refused.
 */
export function quoteExecArg(arg: string): string {
  if (/[\n\r\0]/.test(arg))
    throw new Error(`cannot start a path with a line break: ${JSON.stringify(arg)}`);
  const escaped = arg.replace(/["`$\\]/g, (c) => `\\${c}`).replace(/%/g, '%%');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? escaped : `"${escaped}"`;
}

/**
 * The autostart entry's text. The `Exec` value is quoted per argument, then escaped as a
 * string value (`\` becomes `\\`), which readers undo first: the spec's two layers.
 */
export function autostartDesktopEntry(input: DesktopEntryInput): string {
  const exec = [input.exec, ...(input.args ?? [])]
    .map(quoteExecArg)
    .join(' ')
    .replace(/\\/g, '\\\\');
  return [
    '[Desktop Entry]',
    'Type=Application',
    'Version=1.0',
    'Name=Clawbar',
    'Comment=A private Claude assistant in your tray',
    `Exec=${exec}`,
    'Terminal=false',
    'X-GNOME-Autostart-enabled=true',
    AUTOSTART_MARKER,
    '',
  ].join('\n');
}

/** `$XDG_CONFIG_HOME/autostart/clawbar.desktop`, or `~/.config/autostart/clawbar.desktop`. */
export function autostartPath(
  env: NodeJS.ProcessEnv = process.env,
  home: string = os.homedir(),
): string {
  const configHome = env.XDG_CONFIG_HOME?.trim();
  const base = configHome && path.isAbsolute(configHome) ? configHome : path.join(home, '.config');
  return path.join(base, 'autostart', 'clawbar.desktop');
}

/** The autostart path holds something we did not write (a link, a folder, the user's own entry). */
export class AutostartConflictError extends Error {
  constructor(file: string, what: string) {
    super(
      `${file} ${what}; Clawbar leaves it alone. Remove it to let Clawbar manage launch at login.`,
    );
    this.name = 'AutostartConflictError';
  }
}

/** What is at the path now, without following a link. */
function inspect(file: string): 'none' | 'ours' | 'foreign' | 'link' | 'not-a-file' {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    throw err;
  }
  if (stat.isSymbolicLink()) return 'link';
  if (!stat.isFile()) return 'not-a-file';
  return fs.readFileSync(file, 'utf8').includes(AUTOSTART_MARKER) ? 'ours' : 'foreign';
}

function refuseUnlessOurs(file: string, state: ReturnType<typeof inspect>): void {
  if (state === 'link') throw new AutostartConflictError(file, 'is a symbolic link');
  if (state === 'not-a-file') throw new AutostartConflictError(file, 'is not a regular file');
  if (state === 'foreign') throw new AutostartConflictError(file, 'was not written by Clawbar');
}

/**
 * Writes the entry atomically: to a new temporary file (`O_EXCL`, so no link is followed),
 * then renamed over the path, which replaces a link rather than writing through it.
 */
export function writeAutostartEntry(file: string, content: string): void {
  refuseUnlessOurs(file, inspect(file));
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const fd = fs.openSync(
    temp,
    fs.constants.O_WRONLY |
      fs.constants.O_CREAT |
      fs.constants.O_EXCL |
      (fs.constants.O_NOFOLLOW ?? 0),
    0o644,
  );
  try {
    fs.writeFileSync(fd, content);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
}

/** Removes our entry; returns false when there was none. Someone else's file is refused. */
export function removeAutostartEntry(file: string): boolean {
  const state = inspect(file);
  if (state === 'none') return false;
  refuseUnlessOurs(file, state);
  fs.unlinkSync(file);
  return true;
}

/** Whether our entry is in place. */
export function hasAutostartEntry(file: string): boolean {
  return inspect(file) === 'ours';
}

/** The parts of Electron's `app` used for the macOS login item. */
export interface LoginItemApp {
  setLoginItemSettings(settings: { openAtLogin: boolean; openAsHidden?: boolean }): void;
  getLoginItemSettings(): { openAtLogin: boolean };
}

export interface LoginItemDeps {
  app: LoginItemApp;
  /** @default process.platform */
  platform?: NodeJS.Platform;
  /** @default {@link autostartPath}() */
  autostartFile?: string;
  /** @default `$APPIMAGE` (the AppImage being run) or `process.execPath` */
  exec?: DesktopEntryInput;
}

/** Where the app is started from on Linux: the AppImage file itself when run from one. */
export function linuxExec(env: NodeJS.ProcessEnv = process.env): DesktopEntryInput {
  return { exec: env.APPIMAGE?.trim() || process.execPath };
}

/** Turns launch at login on or off for this platform. */
export function setLaunchAtLogin(enabled: boolean, deps: LoginItemDeps): void {
  const platform = deps.platform ?? process.platform;
  if (platform === 'darwin') {
    deps.app.setLoginItemSettings({ openAtLogin: enabled });
    return;
  }
  if (platform !== 'linux') return;
  const file = deps.autostartFile ?? autostartPath();
  if (enabled) writeAutostartEntry(file, autostartDesktopEntry(deps.exec ?? linuxExec()));
  else removeAutostartEntry(file);
}

/** Whether the app starts at login now, as the system sees it. */
export function launchesAtLogin(deps: LoginItemDeps): boolean {
  const platform = deps.platform ?? process.platform;
  if (platform === 'darwin') return deps.app.getLoginItemSettings().openAtLogin;
  if (platform !== 'linux') return false;
  return hasAutostartEntry(deps.autostartFile ?? autostartPath());
}

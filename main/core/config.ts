/**
 * Configuration: environment variables (public, DESIGN.md §6) over stored settings over
 * defaults. Parsed once at start; a bad value is a clear error, never a silent default.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { defaultRuntime, probeRuntimes } from './sandbox/runtime-choice.js';

export type RuntimeKind = 'docker' | 'apple';

export interface ClawbarConfig {
  /**
   * Data directory: database, groups/, logs/, control socket. (A `sessions/` folder left by an
   * older version is no longer used and is left alone: the transcript lives in the database.)
   */
  home: string;
  dbPath: string;
  groupsDir: string;
  /** Global memory, `groups/global`: every agent reads it; only main may write it. */
  globalDir: string;
  logsDir: string;
  socketPath: string;
  /** Held by the host only; never passed to a container. */
  apiKey: string | undefined;
  /** @default the SDK's (https://api.anthropic.com) */
  baseURL: string | undefined;
  /** @default 'claude-sonnet-4-6' */
  model: string;
  /** @default 'docker'; on macOS with no Docker and Apple's `container` installed, 'apple' */
  runtime: RuntimeKind;
  /** @default 'clawbar-agent:latest' */
  image: string;
  /** @default 3 */
  maxConcurrency: number;
  /** @default 'Andy' */
  assistantName: string;
  /** WhatsApp WebSocket URL override; undefined means the real service. */
  waUrl: string | undefined;
  /** Stop a warm container after this long without work. @default 300000 (5 min) */
  idleTimeoutMs: number;
  /** Kill a run that produced no output for this long. @default 900000 (15 min) */
  hardTimeoutMs: number;
  /** IANA time zone for schedules and prompts. @default the system's */
  timezone: string;
  /**
   * Disk a group may use (its folder; for main, global memory too), in bytes allocated. Past
   * it the group is paused and its chat told.
   * @default 2147483648 (2 GiB; CLAWBAR_GROUP_MAX_BYTES)
   */
  groupMaxBytes: number;
  /**
   * Free space the data directory must keep for runs to start, in bytes available to this
   * user. Below it, work waits until space is back. @default 536870912 (512 MiB;
   * CLAWBAR_MIN_FREE_BYTES)
   */
  minFreeBytes: number;
  /**
   * The most tokens any one model call may ask for: the host clamps every agent's request to
   * it, whatever the container asks. @default 8192 (CLAWBAR_MAX_TOKENS)
   */
  maxTokens: number;
  /**
   * How late a scheduled task's missed due time (the app closed, the machine asleep) may still
   * run once at start or wake; older ones are logged as missed. @default 3600000 (1 h;
   * CLAWBAR_TASK_GRACE_MS)
   */
  taskGraceMs: number;
}

export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

export const DEFAULTS = {
  model: 'claude-sonnet-4-6',
  runtime: 'docker' as RuntimeKind,
  image: 'clawbar-agent:latest',
  maxConcurrency: 3,
  assistantName: 'Andy',
  idleTimeoutMs: 5 * 60_000,
  hardTimeoutMs: 15 * 60_000,
  groupMaxBytes: 2 * 1024 ** 3,
  minFreeBytes: 512 * 1024 ** 2,
  taskGraceMs: 60 * 60_000,
  /** What the runner asks for; run-limits.ts's default equals it. */
  maxTokens: 8192,
};

/** The control socket's file name in the data directory (`clawbar serve` listens there). */
export const SOCKET_FILE = 'clawbar.sock';

/** Where the control socket of the Clawbar using `home` is. */
export function socketPathIn(home: string): string {
  return path.join(home, SOCKET_FILE);
}

/** The OS's per-user application-data directory for Clawbar. */
export function defaultHome(
  platform = process.platform,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const home = os.homedir();
  switch (platform) {
    case 'darwin':
      return path.join(home, 'Library', 'Application Support', 'Clawbar');
    case 'win32':
      return path.join(env.APPDATA ?? path.join(home, 'AppData', 'Roaming'), 'Clawbar');
    default:
      return path.join(env.XDG_DATA_HOME || path.join(home, '.local', 'share'), 'clawbar');
  }
}

/**
 * Where the data directory is, before anything is opened. An existing directory is named by
 * its real path: the mount policy refuses a data root reached through a symlink (macOS's
 * `/tmp` and `/var` are symlinks), which would fail every run.
 */
export function resolveHome(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.CLAWBAR_HOME?.trim();
  // The default follows the given environment (XDG_DATA_HOME, APPDATA), not this process's.
  const home = path.resolve(raw ? raw : defaultHome(process.platform, env));
  try {
    return fs.realpathSync.native(home);
  } catch {
    return home;
  }
}

/** Owner-only: the data directory holds the database, logs and control socket. */
export const PRIVATE_DIR_MODE = 0o700;

/** A directory {@link ensurePrivateHome} found too open and closed, for a log line. */
export interface TightenedDir {
  dir: string;
  /** Its mode before, e.g. 0o755. */
  was: number;
}

/**
 * Creates the data directory and its `logs/` as 0700, or makes existing ones 0700: another
 * user on the machine must not read the database, the logs or reach the control socket. The
 * mode is set with `chmod` after `mkdir`, so the umask cannot change it. Returns the directories
 * that were looser than 0700, so the caller can say so in the log once it has one.
 *
 * @throws {ConfigError} when a path is not a directory, or its mode cannot be changed
 */
export function ensurePrivateHome(home: string): TightenedDir[] {
  const tightened: TightenedDir[] = [];
  for (const dir of [home, path.join(home, 'logs')]) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === 'EEXIST' || code === 'ENOTDIR'
          ? 'it (or a folder above it) is a file'
          : (err as Error).message;
      throw new ConfigError(
        `cannot use ${dir} as Clawbar's data directory: ${why}; set CLAWBAR_HOME to a directory, or move the file away`,
        { cause: err },
      );
    }
    // lstat: `logs` is ours to fix, never a link's target (the home itself was realpath'd).
    const stat = dir === home ? fs.statSync(dir) : fs.lstatSync(dir);
    if (!stat.isDirectory()) {
      throw new ConfigError(`${dir} is not a directory; move it away so Clawbar can create it`);
    }
    const mode = stat.mode & 0o777;
    if (mode === PRIVATE_DIR_MODE) continue;
    try {
      fs.chmodSync(dir, PRIVATE_DIR_MODE);
    } catch (err) {
      throw new ConfigError(
        `cannot make ${dir} private (mode ${mode.toString(8)}, wanted 700): ${(err as Error).message}; run chmod 700 ${dir} as its owner`,
      );
    }
    if (mode & 0o077) tightened.push({ dir, was: mode });
  }
  return tightened;
}

function integer(name: string, raw: string, min: number, max: number): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

/**
 * Reads the configuration. `setting(key)` looks a value up in stored settings; the
 * environment variable of the same meaning wins over it.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  setting: (key: string) => string | undefined = () => undefined,
): ClawbarConfig {
  const home = resolveHome(env);
  const pick = (envName: string, settingKey: string): string | undefined => {
    const fromEnv = env[envName]?.trim();
    if (fromEnv) return fromEnv;
    const fromSetting = setting(settingKey)?.trim();
    return fromSetting || undefined;
  };

  // Unset: Docker, except on a Mac with no Docker and Apple's `container` installed.
  const runtime =
    pick('CLAWBAR_RUNTIME', 'runtime') ??
    (process.platform === 'darwin'
      ? defaultRuntime(process.platform, probeRuntimes(env))
      : DEFAULTS.runtime);
  if (runtime !== 'docker' && runtime !== 'apple') {
    throw new ConfigError(
      `CLAWBAR_RUNTIME must be "docker" or "apple", got ${JSON.stringify(runtime)}`,
    );
  }

  const assistantName = pick('CLAWBAR_ASSISTANT_NAME', 'assistantName') ?? DEFAULTS.assistantName;
  if (!/^[\p{L}\p{N}][\p{L}\p{N} _-]{0,31}$/u.test(assistantName)) {
    throw new ConfigError(
      `CLAWBAR_ASSISTANT_NAME must be 1-32 letters, digits, spaces, '_' or '-', starting with a letter or digit; got ${JSON.stringify(assistantName)}`,
    );
  }

  const baseURL = pick('ANTHROPIC_BASE_URL', 'anthropicBaseUrl');
  if (baseURL && !/^https?:\/\//.test(baseURL)) {
    throw new ConfigError(
      `ANTHROPIC_BASE_URL must be an http(s) URL, got ${JSON.stringify(baseURL)}`,
    );
  }
  const waUrl = pick('CLAWBAR_WA_URL', 'waUrl');
  if (waUrl && !/^wss?:\/\//.test(waUrl)) {
    throw new ConfigError(`CLAWBAR_WA_URL must be a ws(s) URL, got ${JSON.stringify(waUrl)}`);
  }

  const maxConcurrency = pick('CLAWBAR_MAX_CONCURRENCY', 'maxConcurrency');
  const idleTimeout = pick('CLAWBAR_IDLE_TIMEOUT_MS', 'idleTimeoutMs');
  const groupMaxBytes = pick('CLAWBAR_GROUP_MAX_BYTES', 'groupMaxBytes');
  const minFreeBytes = pick('CLAWBAR_MIN_FREE_BYTES', 'minFreeBytes');
  const maxTokens = pick('CLAWBAR_MAX_TOKENS', 'maxTokens');
  const taskGrace = pick('CLAWBAR_TASK_GRACE_MS', 'taskGraceMs');
  const timezone = pick('TZ', 'timezone') ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    throw new ConfigError(`TZ is not a known time zone: ${JSON.stringify(timezone)}`);
  }

  return {
    home,
    dbPath: path.join(home, 'clawbar.db'),
    groupsDir: path.join(home, 'groups'),
    globalDir: path.join(home, 'groups', 'global'),
    logsDir: path.join(home, 'logs'),
    socketPath: socketPathIn(home),
    apiKey: pick('ANTHROPIC_API_KEY', 'anthropicApiKey'),
    baseURL,
    model: pick('CLAWBAR_MODEL', 'model') ?? DEFAULTS.model,
    runtime,
    image: pick('CLAWBAR_IMAGE', 'image') ?? DEFAULTS.image,
    maxConcurrency: maxConcurrency
      ? integer('CLAWBAR_MAX_CONCURRENCY', maxConcurrency, 1, 64)
      : DEFAULTS.maxConcurrency,
    assistantName,
    waUrl,
    idleTimeoutMs: idleTimeout
      ? integer('CLAWBAR_IDLE_TIMEOUT_MS', idleTimeout, 1_000, 86_400_000)
      : DEFAULTS.idleTimeoutMs,
    hardTimeoutMs: DEFAULTS.hardTimeoutMs,
    timezone,
    // At least 1 MiB: a smaller budget would pause a group for its memory file alone.
    groupMaxBytes: groupMaxBytes
      ? integer('CLAWBAR_GROUP_MAX_BYTES', groupMaxBytes, 1024 ** 2, Number.MAX_SAFE_INTEGER)
      : DEFAULTS.groupMaxBytes,
    minFreeBytes: minFreeBytes
      ? integer('CLAWBAR_MIN_FREE_BYTES', minFreeBytes, 0, Number.MAX_SAFE_INTEGER)
      : DEFAULTS.minFreeBytes,
    maxTokens: maxTokens
      ? integer('CLAWBAR_MAX_TOKENS', maxTokens, 1, 128_000)
      : DEFAULTS.maxTokens,
    // Up to a week: a catch-up run older than that is more surprise than help.
    taskGraceMs: taskGrace
      ? integer('CLAWBAR_TASK_GRACE_MS', taskGrace, 0, 7 * 86_400_000)
      : DEFAULTS.taskGraceMs,
  };
}

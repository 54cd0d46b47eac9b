/**
 * Configuration: environment variables (public, DESIGN.md §6) over stored settings over
 * defaults. Parsed once at start; a bad value is a clear error, never a silent default.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type RuntimeKind = 'docker' | 'apple';

export interface ClawbarConfig {
  /** Data directory: database, groups/, sessions/, logs/, control socket. */
  home: string;
  dbPath: string;
  groupsDir: string;
  /** Global memory, `groups/global`: every agent reads it; only main may write it. */
  globalDir: string;
  sessionsDir: string;
  logsDir: string;
  socketPath: string;
  /** Held by the host only; never passed to a container. */
  apiKey: string | undefined;
  /** @default the SDK's (https://api.anthropic.com) */
  baseURL: string | undefined;
  /** @default 'claude-sonnet-4-6' */
  model: string;
  /** @default 'docker' */
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
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
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

  const runtime = pick('CLAWBAR_RUNTIME', 'runtime') ?? DEFAULTS.runtime;
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
    sessionsDir: path.join(home, 'sessions'),
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
  };
}

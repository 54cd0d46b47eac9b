/**
 * The app's settings, kept in electron-store (a JSON file in Chromium's data folder) and
 * validated here with one zod schema. The file is outside input: a hand edit or an older
 * version may have left anything in it, so it is parsed once at start and a bad value is a
 * clear error naming the field and the fix, never a silent default.
 *
 * How they reach the core: {@link bootEnv} turns them into the environment variables
 * `loadConfig` (main/core/config.ts) already reads, under the real environment, so the
 * documented order holds: environment over these settings over the database's settings over
 * defaults. The core itself stays Electron-free.
 */
import { z } from 'zod';
import { DEFAULTS } from '../core/config.js';
import { CoreInputError } from '../core/errors.js';

/** Same rule as `CLAWBAR_ASSISTANT_NAME` in config.ts, so a saved name always boots. */
const ASSISTANT_NAME = /^[\p{L}\p{N}][\p{L}\p{N} _-]{0,31}$/u;

/**
 * What may be stored: every key optional, so a setting the user never chose stays unset and
 * does not hide a value from the environment or the database (see {@link bootEnv}).
 */
export const storedSettingsSchema = z
  .object({
    /** The name the assistant answers to and signs with. @default 'Andy' */
    assistantName: z
      .string()
      .trim()
      .regex(
        ASSISTANT_NAME,
        "1-32 letters, digits, spaces, '_' or '-', starting with a letter or digit",
      ),
    /** The trigger new groups get. @default `@` and the assistant's name */
    trigger: z
      .string()
      .trim()
      .min(2, 'at least 2 characters, such as @Andy')
      .max(40, 'at most 40 characters')
      .regex(/^\S+$/u, 'one word with no spaces, such as @Andy'),
    /** The container runtime. @default 'docker' (on a Mac without Docker, 'apple') */
    runtime: z.enum(['docker', 'apple']),
    /** How many groups' agents may run at once. @default 3 */
    maxConcurrency: z.number().int().min(1).max(64),
    /** Stop a warm container after this long without work, in ms. @default 300000 */
    idleTimeoutMs: z.number().int().min(1_000).max(86_400_000),
    /** How late a missed scheduled task may still run at start or wake, in ms. @default 3600000 */
    taskGraceMs: z
      .number()
      .int()
      .min(0)
      .max(7 * 86_400_000),
    /** Start Clawbar when the user logs in. @default false */
    launchAtLogin: z.boolean(),
    /** Show desktop notifications (jobs, pairing, the engine, budgets). @default true */
    notifications: z.boolean(),
  })
  .partial()
  // An unknown key is most likely a typo of a real one; saying so beats ignoring it.
  .strict();

/** Settings as stored: only what the user chose. */
export type StoredSettings = z.infer<typeof storedSettingsSchema>;

/** Settings with every default filled in (`runtime` and `trigger` stay optional: see their docs). */
export type AppSettings = StoredSettings & Required<Omit<StoredSettings, 'runtime' | 'trigger'>>;

const DEFAULT_SETTINGS = {
  assistantName: DEFAULTS.assistantName,
  maxConcurrency: DEFAULTS.maxConcurrency,
  idleTimeoutMs: DEFAULTS.idleTimeoutMs,
  taskGraceMs: DEFAULTS.taskGraceMs,
  launchAtLogin: false,
  notifications: true,
} as const satisfies AppSettings;

/**
 * The settings file (or a change from the window) holds a value Clawbar cannot use. A person's
 * input, so the window's API answers it as a bad request with this message (not as a failure).
 */
export class SettingsError extends CoreInputError {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

/** Every setting at its default. */
export function defaultSettings(): AppSettings {
  return { ...DEFAULT_SETTINGS };
}

/**
 * Parses stored settings, keeping only what was stored. `undefined` or `null` (no file yet) is
 * none. Throws {@link SettingsError} listing every bad field and its rule.
 */
export function parseStoredSettings(raw: unknown, source = 'the settings file'): StoredSettings {
  const parsed = storedSettingsSchema.safeParse(raw ?? {});
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const field = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys')
      return `unknown setting${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    return field ? `${field}: ${issue.message}` : issue.message;
  });
  throw new SettingsError(
    `${source} has invalid settings: ${problems.join('; ')}. Fix or remove them in Settings (or in the file) and start Clawbar again.`,
  );
}

/** Parses stored settings and fills in the defaults of what was not stored. */
export function parseSettings(raw: unknown, source = 'the settings file'): AppSettings {
  return { ...DEFAULT_SETTINGS, ...parseStoredSettings(raw, source) };
}

/**
 * Applies a change (from the Settings panel) to the current settings and validates the result
 * as a whole, so a bad field leaves the stored settings untouched.
 */
export function updateSettings(current: StoredSettings, patch: unknown): StoredSettings {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch))
    throw new SettingsError('a settings change must be an object of setting names and values');
  return parseStoredSettings({ ...current, ...patch }, 'the change');
}

/**
 * Where the settings are kept: the `settings` key of electron-store in the app, a plain object
 * in tests and headless tools. What `get` returns is outside input (a hand edit, an older
 * version) and is parsed before use.
 */
export interface SettingsFile {
  get(): unknown;
  /** Replaces what is stored with settings already validated. */
  set(value: StoredSettings): void;
}

/** The validated settings over a {@link SettingsFile}, as the window's Settings panel uses them. */
export interface SettingsAccess {
  /** Only what the user chose: what {@link bootEnv} and the shell's own switches read. */
  stored(): StoredSettings;
  /** Every setting, the defaults filled in. */
  get(): AppSettings;
  /**
   * Applies a change, validated as a whole with the stored settings, writes it, and returns
   * every setting. A bad change throws {@link SettingsError} and writes nothing.
   */
  set(patch: unknown): AppSettings;
}

/**
 * Reads and validates the file once (a bad file throws {@link SettingsError}: a clear start-up
 * error, never a silent default), then serves the settings from memory and writes each valid
 * change through. `onChange` hears each written change (the patch as given, after validation),
 * so the shell can apply what takes effect at once (launch at login).
 *
 * Electron-free, so the window's settings can be exercised in a browser against a plain object.
 */
export function settingsAccess(
  file: SettingsFile,
  onChange?: (patch: Partial<StoredSettings>, saved: StoredSettings) => void,
): SettingsAccess {
  let current = parseStoredSettings(file.get());
  return {
    stored: () => current,
    get: () => parseSettings(current),
    set(patch) {
      const saved = updateSettings(current, patch);
      file.set(saved);
      current = saved;
      onChange?.(patch as Partial<StoredSettings>, saved);
      return parseSettings(current);
    },
  };
}

/** The trigger a new group gets: the setting, or `@` and the assistant's name. */
export function defaultTriggerFor(settings: AppSettings): string {
  return settings.trigger ?? `@${settings.assistantName}`;
}

/**
 * The environment the core boots with: the real one, with each stored setting filled in where
 * the matching variable is unset or blank (the environment wins, as config.ts documents).
 * `apiKey` is the key decrypted from safeStorage, if any. The result is handed only to
 * `bootCore`, never to a child process.
 */
export function bootEnv(
  settings: StoredSettings,
  env: NodeJS.ProcessEnv,
  apiKey?: string,
): NodeJS.ProcessEnv {
  const fromSettings: Record<string, string | undefined> = {
    CLAWBAR_ASSISTANT_NAME: settings.assistantName,
    CLAWBAR_RUNTIME: settings.runtime,
    CLAWBAR_MAX_CONCURRENCY: settings.maxConcurrency?.toString(),
    CLAWBAR_IDLE_TIMEOUT_MS: settings.idleTimeoutMs?.toString(),
    CLAWBAR_TASK_GRACE_MS: settings.taskGraceMs?.toString(),
    ANTHROPIC_API_KEY: apiKey,
  };
  const merged: NodeJS.ProcessEnv = { ...env };
  for (const [name, value] of Object.entries(fromSettings)) {
    if (value === undefined || value === '') continue;
    if (!env[name]?.trim()) merged[name] = value;
  }
  return merged;
}

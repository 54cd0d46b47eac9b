/**
 * `clawbar doctor`: is this machine ready to run agents, and if not, what fixes it. One line a
 * check (ok, FAIL, or skip when an earlier failure makes it moot), with the fix under each
 * failure; `--json` gives `{ ok, checks }`. Exit code 0 when nothing failed, 1 otherwise.
 *
 * It only looks: it opens the database read-only (no migration), creates no file or folder,
 * does not start the container service, and starts no agent. So it works with or without
 * `serve` running, and on a machine where nothing was set up yet.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import Database from 'better-sqlite3';

import { ConfigError, PRIVATE_DIR_MODE, loadConfig, resolveHome } from '../core/config.js';
import type { ClawbarConfig } from '../core/config.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { AppleContainerRuntime } from '../core/sandbox/apple-container.js';
import { appleImageBuilder } from '../core/sandbox/apple-image-builder.js';
import { DockerRuntime } from '../core/sandbox/docker.js';
import { dockerImageBuilder } from '../core/sandbox/image-builder.js';
import { scopeForHome, type ContainerRuntime } from '../core/sandbox/runtime.js';
import type { ImageBuilder } from '../core/setup.js';
import { MIGRATIONS } from '../core/store/migrations/index.js';
import { runStateQueries } from '../core/store/run-state.js';
import type { Output } from './output.js';

export type CheckStatus = 'ok' | 'fail' | 'skip';

/** One check's answer. `fix` is set on every failure. */
export interface DoctorCheck {
  name:
    'data dir' | 'database' | 'config' | 'time zone' | 'clock' | 'api key' | 'runtime' | 'image';
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export interface DoctorDeps {
  env: NodeJS.ProcessEnv;
  /** @default Date.now */
  now?: () => number;
  /**
   * A time this build cannot predate: the clock must be past it.
   * @default the modification time of this module's file (when it was built or installed)
   */
  builtAt?: number;
  /** @default the runtime the configuration names, which does not start any service */
  runtimeFor?: (config: ClawbarConfig, log: Logger) => ContainerRuntime;
  /** @default the image builder of that runtime, asked only for freshness */
  imageBuilderFor?: (config: ClawbarConfig, log: Logger, runtime: ContainerRuntime) => ImageBuilder;
}

const fail = (name: DoctorCheck['name'], detail: string, fix: string): DoctorCheck => ({
  name,
  status: 'fail',
  detail,
  fix,
});
const ok = (name: DoctorCheck['name'], detail: string): DoctorCheck => ({
  name,
  status: 'ok',
  detail,
});
const skip = (name: DoctorCheck['name'], detail: string): DoctorCheck => ({
  name,
  status: 'skip',
  detail,
});

/** Runs every check in order; never throws (a check that breaks is a failed check). */
export async function runDoctor(deps: DoctorDeps): Promise<DoctorCheck[]> {
  const { env } = deps;
  const now = deps.now ?? Date.now;
  const home = resolveHome(env);
  const checks: DoctorCheck[] = [checkDataDir(home)];
  const database = checkDatabase(path.join(home, 'clawbar.db'));
  checks.push(database.check);
  const timezone = checkTimeZone(env, database.setting);
  checks.push(timezone.check);
  checks.push(checkClock(now(), deps.builtAt ?? builtAt()));

  let config: ClawbarConfig;
  try {
    // A bad TZ is reported above; the other checks still run, on UTC.
    const usable = timezone.valid ? env : { ...env, TZ: 'UTC' };
    config = loadConfig(
      usable,
      timezone.valid ? database.setting : settingWithout(database.setting, 'timezone'),
    );
    checks.push(
      ok('config', `runtime ${config.runtime}, image ${config.image}, model ${config.model}`),
    );
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    checks.push(
      fail(
        'config',
        message,
        err instanceof ConfigError ? 'correct the setting named above' : 'see the message above',
      ),
      skip('api key', 'the configuration could not be read'),
      skip('runtime', 'the configuration could not be read'),
      skip('image', 'the configuration could not be read'),
    );
    return checks;
  }

  checks.push(checkKey(config, env));
  const log = silentLogger();
  const runtime = (deps.runtimeFor ?? defaultRuntimeFor)(config, log);
  const runtimeCheck = await checkRuntime(runtime);
  checks.push(runtimeCheck);
  if (runtimeCheck.status !== 'ok') {
    checks.push(skip('image', `cannot ask for ${config.image} while the runtime is not reachable`));
  } else {
    const builder = (deps.imageBuilderFor ?? defaultImageBuilderFor)(config, log, runtime);
    checks.push(await checkImage(config.image, builder, runtime));
  }
  return checks;
}

function defaultRuntimeFor(config: ClawbarConfig, log: Logger): ContainerRuntime {
  const scope = scopeForHome(config.home);
  // startService false: the doctor reports a stopped service, it does not start it.
  return config.runtime === 'apple'
    ? new AppleContainerRuntime({ log, scope, startService: false })
    : new DockerRuntime({ log, scope });
}

function defaultImageBuilderFor(
  config: ClawbarConfig,
  log: Logger,
  runtime: ContainerRuntime,
): ImageBuilder {
  return runtime instanceof AppleContainerRuntime
    ? appleImageBuilder(config, log, runtime)
    : dockerImageBuilder(config, log);
}

function settingWithout(
  setting: (key: string) => string | undefined,
  skipped: string,
): (key: string) => string | undefined {
  return (key) => (key === skipped ? undefined : setting(key));
}

/** The data directory: there (or not yet), a directory, owner-only, writable. */
export function checkDataDir(home: string): DoctorCheck {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(home);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return ok('data dir', `${home} (not created yet; the first command creates it)`);
    return fail(
      'data dir',
      `${home}: ${(err as Error).message}`,
      `check the permissions of ${path.dirname(home)}`,
    );
  }
  if (!stat.isDirectory())
    return fail(
      'data dir',
      `${home} is not a directory`,
      'move the file away, or set CLAWBAR_HOME to a directory',
    );
  const mode = stat.mode & 0o777;
  try {
    fs.accessSync(home, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    return fail(
      'data dir',
      `${home} is not writable by this user`,
      `run chown -R $USER ${home} (or set CLAWBAR_HOME)`,
    );
  }
  if (mode !== PRIVATE_DIR_MODE)
    return fail(
      'data dir',
      `${home} has mode ${mode.toString(8)}: other users may read the database and logs`,
      `run chmod 700 ${home}`,
    );
  return ok('data dir', `${home} (mode 700)`);
}

/**
 * The database: opens read-only, passes SQLite's quick check, and its schema version against
 * this Clawbar's migrations. Also hands out its settings for the configuration.
 */
export function checkDatabase(file: string): {
  check: DoctorCheck;
  setting: (key: string) => string | undefined;
} {
  const none = (): undefined => undefined;
  if (!fs.existsSync(file))
    return { check: ok('database', `${file} (not created yet)`), setting: none };
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    return {
      check: fail(
        'database',
        `cannot open ${file}: ${(err as Error).message}`,
        `check the file's owner and mode (it should be 600, yours)`,
      ),
      setting: none,
    };
  }
  try {
    const integrity = db.pragma('quick_check', { simple: true }) as string;
    if (integrity !== 'ok')
      return {
        check: fail(
          'database',
          `${file} is damaged: ${integrity}`,
          'restore it from a backup, or move it away to start afresh',
        ),
        setting: none,
      };
    const version = db.pragma('user_version', { simple: true }) as number;
    const latest = MIGRATIONS.length;
    if (version > latest)
      return {
        check: fail(
          'database',
          `${file} has schema version ${version}; this Clawbar knows up to ${latest}`,
          'upgrade Clawbar, or point CLAWBAR_HOME elsewhere',
        ),
        setting: none,
      };
    try {
      fs.accessSync(file, fs.constants.W_OK);
    } catch {
      return {
        check: fail(
          'database',
          `${file} is not writable by this user`,
          `run chown $USER ${file} && chmod 600 ${file}`,
        ),
        setting: none,
      };
    }
    // Settings are read only from a current schema; an older one is migrated at next start.
    const settings = new Map<string, string | undefined>();
    if (version === latest) {
      const getSetting = runStateQueries(db).getSetting;
      for (const key of SETTING_KEYS) settings.set(key, getSetting(key));
    }
    const note =
      version === latest
        ? 'schema current'
        : `schema ${version} of ${latest}; the next start migrates it`;
    return { check: ok('database', `${file} (${note})`), setting: (key) => settings.get(key) };
  } catch (err) {
    return {
      check: fail(
        'database',
        `cannot read ${file}: ${(err as Error).message}`,
        'restore it from a backup, or move it away to start afresh',
      ),
      setting: none,
    };
  } finally {
    db.close();
  }
}

/** The setting keys loadConfig reads (config.ts `pick`). */
const SETTING_KEYS = [
  'runtime',
  'assistantName',
  'anthropicBaseUrl',
  'waUrl',
  'maxConcurrency',
  'idleTimeoutMs',
  'groupMaxBytes',
  'minFreeBytes',
  'maxTokens',
  'taskGraceMs',
  'timezone',
  'anthropicApiKey',
  'model',
  'image',
];

/** The time zone schedules use: a known IANA zone, and what it resolves to. */
export function checkTimeZone(
  env: NodeJS.ProcessEnv,
  setting: (key: string) => string | undefined,
): { check: DoctorCheck; valid: boolean } {
  const fromEnv = env.TZ?.trim();
  const fromSetting = setting('timezone')?.trim();
  const given = fromEnv || fromSetting;
  const source = fromEnv ? 'TZ' : fromSetting ? 'the timezone setting' : 'the system';
  const zone = given || Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone)
    return {
      check: fail(
        'time zone',
        'the system names no time zone',
        'set TZ to an IANA zone such as Europe/Paris',
      ),
      valid: false,
    };
  let resolved: string;
  let offset: string;
  try {
    const format = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' });
    resolved = format.resolvedOptions().timeZone;
    offset = format.formatToParts(new Date()).find((p) => p.type === 'timeZoneName')?.value ?? '';
  } catch {
    return {
      check: fail(
        'time zone',
        `${JSON.stringify(zone)} (from ${source}) is not a known time zone`,
        `set TZ to an IANA zone such as Europe/Paris or America/New_York, or unset it to use the system's`,
      ),
      valid: false,
    };
  }
  return {
    check: ok('time zone', `${resolved} (${offset || 'UTC'}, from ${source})`),
    valid: true,
  };
}

/**
 * The clock. With no network to ask, the test is what can be known here: the clock is not
 * before this Clawbar was built (a dead RTC battery resets to 1970 or 2000), and not absurdly
 * far ahead. Schedules and token budgets depend on it.
 */
export function checkClock(now: number, builtAt: number): DoctorCheck {
  const iso = new Date(now).toISOString().replace('T', ' ').slice(0, 19);
  // A day of slack: the build time is a file's mtime, which copying can shift.
  if (now < builtAt - 86_400_000)
    return fail(
      'clock',
      `the clock says ${iso} UTC, before this Clawbar was built (${new Date(builtAt).toISOString().slice(0, 10)})`,
      'set the system clock (enable network time: macOS System Settings → General → Date & Time; Linux: timedatectl set-ntp true)',
    );
  if (new Date(now).getUTCFullYear() >= 2100)
    return fail('clock', `the clock says ${iso} UTC`, 'set the system clock (enable network time)');
  return ok('clock', `${iso} UTC`);
}

/** When this file was written: its build or install time. */
function builtAt(): number {
  try {
    return fs.statSync(fileURLToPath(import.meta.url)).mtimeMs;
  } catch {
    return 0;
  }
}

/** The model key: set, and where from. Never printed, not even in part. */
export function checkKey(
  config: Pick<ClawbarConfig, 'apiKey' | 'baseURL'>,
  env: NodeJS.ProcessEnv,
): DoctorCheck {
  const key = config.apiKey;
  if (!key)
    return fail(
      'api key',
      'no Anthropic API key is set',
      'set ANTHROPIC_API_KEY (create a key at https://console.anthropic.com/settings/keys), then restart serve',
    );
  const source = env.ANTHROPIC_API_KEY?.trim() ? 'ANTHROPIC_API_KEY' : 'the settings';
  if (/\s/.test(key))
    return fail(
      'api key',
      `the key in ${source} contains whitespace`,
      `set ${source === 'ANTHROPIC_API_KEY' ? 'ANTHROPIC_API_KEY' : 'the key'} again, without spaces or line breaks`,
    );
  const where = config.baseURL ? `, for ${new URL(config.baseURL).host}` : '';
  return ok('api key', `set (from ${source}${where})`);
}

async function checkRuntime(runtime: ContainerRuntime): Promise<DoctorCheck> {
  try {
    const state = await runtime.check();
    if (state.ok) return ok('runtime', `${runtime.kind} ${state.version}`);
    return fail('runtime', `${runtime.kind}: ${state.reason}`, state.fix);
  } catch (err) {
    return fail('runtime', `${runtime.kind}: ${(err as Error).message}`, 'see the message above');
  }
}

async function checkImage(
  image: string,
  builder: ImageBuilder,
  runtime: ContainerRuntime,
): Promise<DoctorCheck> {
  const build = 'run `clawbar image build` (or start `clawbar serve`, which builds it)';
  try {
    const freshness = await builder.freshness();
    switch (freshness) {
      case 'current':
        return ok('image', `${image} (built from this runner)`);
      case 'stale':
        return fail('image', `${image} was built from another version of the runner`, build);
      case 'missing':
        return fail('image', `${image} is not built`, build);
      default: {
        const unreachable: never = freshness;
        return unreachable;
      }
    }
  } catch (err) {
    // No runner bundle to compare with (a checkout before `npm run build`): say what is known.
    try {
      const state = await runtime.inspectImage(image);
      if (state.present)
        return ok(
          'image',
          `${image} (present; cannot compare it with the runner: ${(err as Error).message})`,
        );
      return fail('image', `${image} is not built`, build);
    } catch (inner) {
      return fail(
        'image',
        `cannot inspect ${image}: ${(inner as Error).message}`,
        'see the runtime check',
      );
    }
  }
}

const MARK: Record<CheckStatus, string> = { ok: 'ok  ', fail: 'FAIL', skip: 'skip' };

/** The human report: one line a check, its fix indented under it. */
export function formatDoctor(checks: readonly DoctorCheck[]): string {
  return checks
    .map((c) => {
      const line = `${MARK[c.status]}  ${c.name.padEnd(10)} ${c.detail}`;
      return c.fix ? `${line}\n      ${' '.repeat(10)} fix: ${c.fix}` : line;
    })
    .join('\n');
}

export async function doctorCommand(out: Output): Promise<number> {
  const checks = await runDoctor({ env: process.env });
  const allOk = checks.every((c) => c.status !== 'fail');
  out.print({ ok: allOk, checks }, () => formatDoctor(checks));
  return allOk ? 0 : 1;
}

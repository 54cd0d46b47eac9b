import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_RUN_LIMITS } from '../../main/core/agent/run-limits.js';
import { ConfigError, defaultHome, loadConfig, resolveHome } from '../../main/core/config.js';
import { DEFAULT_GRACE_MS } from '../../main/core/scheduler/schedule.js';

let tmp: string;

beforeEach(() => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-config-')));
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A config from only the given variables (never this process's environment). */
function configWith(env: NodeJS.ProcessEnv, settings: Record<string, string> = {}) {
  return loadConfig({ CLAWBAR_HOME: tmp, ...env }, (key) => settings[key]);
}

function configError(env: NodeJS.ProcessEnv, settings: Record<string, string> = {}): ConfigError {
  try {
    configWith(env, settings);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)} ${JSON.stringify(settings)}`);
}

describe('defaults', () => {
  it('uses the documented defaults when nothing is set', () => {
    const config = loadConfig({ CLAWBAR_HOME: tmp }, () => undefined);
    expect(config.model).toBe('claude-sonnet-4-6');
    expect(config.image).toBe('clawbar-agent:latest');
    expect(config.maxConcurrency).toBe(3);
    expect(config.assistantName).toBe('Andy');
    expect(config.idleTimeoutMs).toBe(5 * 60_000);
    expect(config.hardTimeoutMs).toBe(15 * 60_000);
    expect(config.runtime).toBe('docker');
    expect(config.apiKey).toBeUndefined();
    expect(config.baseURL).toBeUndefined();
    expect(config.waUrl).toBeUndefined();
    expect(config.timezone).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
  });

  it('puts the database, groups, global memory, logs and socket under CLAWBAR_HOME', () => {
    const config = configWith({});
    expect(config.home).toBe(tmp);
    expect(config.dbPath).toBe(path.join(tmp, 'clawbar.db'));
    expect(config.groupsDir).toBe(path.join(tmp, 'groups'));
    expect(config.globalDir).toBe(path.join(tmp, 'groups', 'global'));
    expect(config.logsDir).toBe(path.join(tmp, 'logs'));
    expect(config.socketPath).toBe(path.join(tmp, 'clawbar.sock'));
  });

  it('keeps the api key on the config when it is set', () => {
    expect(configWith({ ANTHROPIC_API_KEY: 'sk-ant-test' }).apiKey).toBe('sk-ant-test');
  });
});

describe('the default data directory', () => {
  it('is Application Support on macOS', () => {
    expect(defaultHome('darwin', {})).toBe(
      path.join(os.homedir(), 'Library', 'Application Support', 'Clawbar'),
    );
  });

  it('is XDG_DATA_HOME/clawbar on Linux, or ~/.local/share/clawbar without it', () => {
    expect(defaultHome('linux', { XDG_DATA_HOME: '/data/xdg' })).toBe(
      path.join('/data/xdg', 'clawbar'),
    );
    expect(defaultHome('linux', {})).toBe(path.join(os.homedir(), '.local', 'share', 'clawbar'));
  });

  it('is APPDATA/Clawbar on Windows, or AppData/Roaming without it', () => {
    expect(defaultHome('win32', { APPDATA: 'C:\\Users\\u\\AppData\\Roaming' })).toBe(
      path.join('C:\\Users\\u\\AppData\\Roaming', 'Clawbar'),
    );
    expect(defaultHome('win32', {})).toBe(path.join(os.homedir(), 'AppData', 'Roaming', 'Clawbar'));
  });

  it('follows the environment it is given, not the environment of this process', () => {
    const env = { XDG_DATA_HOME: tmp, APPDATA: tmp };
    expect(resolveHome(env)).toBe(defaultHome(process.platform, env));
    expect(loadConfig(env, () => undefined).home).toBe(defaultHome(process.platform, env));
  });

  it('is CLAWBAR_HOME, resolved to an absolute path, when that is set', () => {
    expect(resolveHome({ CLAWBAR_HOME: '  relative/home  ' })).toBe(path.resolve('relative/home'));
  });

  it('names an existing data directory by its real path, so mounts under it pass the symlink check', () => {
    const link = path.join(tmp, 'link');
    fs.mkdirSync(path.join(tmp, 'real'));
    fs.symlinkSync(path.join(tmp, 'real'), link);
    expect(resolveHome({ CLAWBAR_HOME: link })).toBe(path.join(tmp, 'real'));
    expect(loadConfig({ CLAWBAR_HOME: link }, () => undefined).groupsDir).toBe(
      path.join(tmp, 'real', 'groups'),
    );
  });
});

describe('environment over settings', () => {
  const settings = {
    model: 'model-from-settings',
    runtime: 'apple',
    image: 'image:settings',
    maxConcurrency: '7',
    assistantName: 'Bob',
    waUrl: 'ws://127.0.0.1:9/settings',
    anthropicBaseUrl: 'http://127.0.0.1:9/settings',
    anthropicApiKey: 'sk-settings',
    idleTimeoutMs: '60000',
    timezone: 'Asia/Tokyo',
  };

  it('uses every stored setting when its environment variable is unset', () => {
    const config = configWith({}, settings);
    expect(config).toMatchObject({
      model: 'model-from-settings',
      runtime: 'apple',
      image: 'image:settings',
      maxConcurrency: 7,
      assistantName: 'Bob',
      waUrl: 'ws://127.0.0.1:9/settings',
      baseURL: 'http://127.0.0.1:9/settings',
      apiKey: 'sk-settings',
      idleTimeoutMs: 60_000,
      timezone: 'Asia/Tokyo',
    });
  });

  it('lets each environment variable win over its stored setting', () => {
    const config = configWith(
      {
        CLAWBAR_MODEL: 'model-from-env',
        CLAWBAR_RUNTIME: 'docker',
        CLAWBAR_IMAGE: 'image:env',
        CLAWBAR_MAX_CONCURRENCY: '2',
        CLAWBAR_ASSISTANT_NAME: 'Cleo',
        CLAWBAR_WA_URL: 'wss://127.0.0.1:9/env',
        ANTHROPIC_BASE_URL: 'https://127.0.0.1:9/env',
        ANTHROPIC_API_KEY: 'sk-env',
        CLAWBAR_IDLE_TIMEOUT_MS: '2000',
        TZ: 'Europe/Paris',
      },
      settings,
    );
    expect(config).toMatchObject({
      model: 'model-from-env',
      runtime: 'docker',
      image: 'image:env',
      maxConcurrency: 2,
      assistantName: 'Cleo',
      waUrl: 'wss://127.0.0.1:9/env',
      baseURL: 'https://127.0.0.1:9/env',
      apiKey: 'sk-env',
      idleTimeoutMs: 2000,
      timezone: 'Europe/Paris',
    });
  });

  it('treats a blank environment variable as unset, so the setting still applies', () => {
    expect(configWith({ CLAWBAR_MODEL: '   ', TZ: ' ' }, settings)).toMatchObject({
      model: 'model-from-settings',
      timezone: 'Asia/Tokyo',
    });
  });

  it('trims a stored time zone like every other setting', () => {
    expect(configWith({}, { timezone: ' Europe/Berlin ' }).timezone).toBe('Europe/Berlin');
  });
});

describe('bad values', () => {
  it.each(['0', 'abc', '2.5', '-1', '65', '1e1', '0x10'])(
    'refuses CLAWBAR_MAX_CONCURRENCY=%j, naming the variable',
    (raw) => {
      expect(configError({ CLAWBAR_MAX_CONCURRENCY: raw }).message).toMatch(
        /^CLAWBAR_MAX_CONCURRENCY must be a whole number from 1 to 64/,
      );
    },
  );

  it('takes CLAWBAR_MAX_TOKENS, defaults it to the run limit, and refuses a bad one', () => {
    expect(configWith({}).maxTokens).toBe(DEFAULT_RUN_LIMITS.maxTokens);
    expect(configWith({ CLAWBAR_MAX_TOKENS: '2048' }).maxTokens).toBe(2048);
    expect(configWith({}, { maxTokens: '4096' }).maxTokens).toBe(4096);
    for (const raw of ['0', 'lots', '200000']) {
      expect(configError({ CLAWBAR_MAX_TOKENS: raw }).message).toMatch(
        /^CLAWBAR_MAX_TOKENS must be a whole number from 1 to 128000/,
      );
    }
  });

  it('takes the scheduled tasks grace window, an hour by default, and refuses a bad one', () => {
    expect(configWith({}).taskGraceMs).toBe(DEFAULT_GRACE_MS);
    expect(configWith({ CLAWBAR_TASK_GRACE_MS: '0' }).taskGraceMs).toBe(0);
    expect(configWith({}, { taskGraceMs: '600000' }).taskGraceMs).toBe(600_000);
    for (const raw of ['-1', 'an hour', String(8 * 86_400_000)]) {
      expect(configError({ CLAWBAR_TASK_GRACE_MS: raw }).message).toMatch(
        /^CLAWBAR_TASK_GRACE_MS must be a whole number from 0 to 604800000/,
      );
    }
  });

  it('refuses a bad max concurrency from settings too, naming the variable', () => {
    expect(configError({}, { maxConcurrency: 'lots' }).message).toContain(
      'CLAWBAR_MAX_CONCURRENCY',
    );
  });

  it('refuses a runtime other than docker or apple', () => {
    expect(configError({ CLAWBAR_RUNTIME: 'podman' }).message).toBe(
      'CLAWBAR_RUNTIME must be "docker" or "apple", got "podman"',
    );
  });

  it.each(['An<dy', 'Andy>', '-Andy', 'x'.repeat(33), 'An\u0007dy'])(
    'refuses CLAWBAR_ASSISTANT_NAME=%j',
    (name) => {
      expect(configError({ CLAWBAR_ASSISTANT_NAME: name }).message).toContain(
        'CLAWBAR_ASSISTANT_NAME',
      );
    },
  );

  it('falls back to Andy when CLAWBAR_ASSISTANT_NAME is empty after trimming', () => {
    expect(configWith({ CLAWBAR_ASSISTANT_NAME: '   ' }).assistantName).toBe('Andy');
  });

  it('accepts an assistant name with letters of any script, digits, spaces, _ and -', () => {
    expect(configWith({ CLAWBAR_ASSISTANT_NAME: 'Zoë 2_x-y' }).assistantName).toBe('Zoë 2_x-y');
  });

  it.each(['http://127.0.0.1:9', 'localhost:9', 'wsx://h'])(
    'refuses CLAWBAR_WA_URL=%j, which is not a ws(s) URL',
    (url) => {
      expect(configError({ CLAWBAR_WA_URL: url }).message).toContain(
        'CLAWBAR_WA_URL must be a ws(s) URL',
      );
    },
  );

  it.each(['ws://127.0.0.1:9', 'ftp://h', '127.0.0.1:8080'])(
    'refuses ANTHROPIC_BASE_URL=%j, which is not an http(s) URL',
    (url) => {
      expect(configError({ ANTHROPIC_BASE_URL: url }).message).toContain(
        'ANTHROPIC_BASE_URL must be an http(s) URL',
      );
    },
  );

  it('refuses an unknown time zone in TZ, naming it', () => {
    expect(configError({ TZ: 'Mars/Olympus_Mons' }).message).toBe(
      'TZ is not a known time zone: "Mars/Olympus_Mons"',
    );
  });

  it.each(['999', '86400001', 'soon'])('refuses CLAWBAR_IDLE_TIMEOUT_MS=%j', (raw) => {
    expect(configError({ CLAWBAR_IDLE_TIMEOUT_MS: raw }).message).toContain(
      'CLAWBAR_IDLE_TIMEOUT_MS',
    );
  });
});

import { beforeEach, describe, expect, it } from 'vitest';
import {
  API_KEY_ENTRY,
  apiKeyAccess,
  createApiKeyVault,
  validateApiKey,
  WEAK_PROTECTION_WARNING,
  type SecretBox,
} from '../../main/app/secrets.js';
import {
  bootEnv,
  defaultSettings,
  defaultTriggerFor,
  parseSettings,
  parseStoredSettings,
  SettingsError,
  settingsAccess,
  updateSettings,
} from '../../main/app/settings.js';
import { loadConfig } from '../../main/core/config.js';
import { CoreInputError } from '../../main/core/errors.js';
import { silentLogger } from '../../main/core/logger.js';
import { resetElectronFake, safeStorage } from '../fakes/electron.js';

const KEY = 'sk-ant-api03-abcdefghijklmnop';

describe('the settings schema', () => {
  it('no file yet means every default', () => {
    expect(parseSettings(undefined)).toEqual(defaultSettings());
    expect(defaultSettings()).toEqual({
      assistantName: 'Andy',
      maxConcurrency: 3,
      idleTimeoutMs: 300_000,
      taskGraceMs: 3_600_000,
      launchAtLogin: false,
      notifications: true,
    });
    expect(parseStoredSettings(null)).toEqual({});
  });

  it('keeps what was stored and fills in the rest', () => {
    const settings = parseSettings({ assistantName: ' Ada ', runtime: 'apple', maxConcurrency: 5 });
    expect(settings).toMatchObject({ assistantName: 'Ada', runtime: 'apple', maxConcurrency: 5 });
    expect(settings.notifications).toBe(true);
    expect(defaultTriggerFor(settings)).toBe('@Ada');
    expect(defaultTriggerFor(parseSettings({ trigger: '!bot' }))).toBe('!bot');
  });

  it('names every bad field with its rule and says how to fix it', () => {
    let error: unknown;
    try {
      parseSettings({ runtime: 'podman', maxConcurrency: 0, idleTimeoutMs: 1.5, colour: 'red' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SettingsError);
    const message = (error as Error).message;
    expect(message).toMatch(/^the settings file has invalid settings: /);
    expect(message).toMatch(/runtime: /);
    expect(message).toMatch(/maxConcurrency: /);
    expect(message).toMatch(/idleTimeoutMs: /);
    expect(message).toMatch(/unknown setting "colour"/);
    expect(message).toMatch(/Fix or remove them in Settings/);
  });

  it('refuses an assistant name or trigger loadConfig would refuse, and a non-object file', () => {
    expect(() => parseSettings({ assistantName: '-x' })).toThrow(/assistantName: 1-32 letters/);
    expect(() => parseSettings({ trigger: '@two words' })).toThrow(/trigger: one word/);
    expect(() => parseSettings('launchAtLogin=true')).toThrow(SettingsError);
    expect(() => parseSettings({ launchAtLogin: 'yes' })).toThrow(/launchAtLogin/);
  });

  it('a change is validated as a whole and leaves the old settings untouched when bad', () => {
    const current = parseStoredSettings({ maxConcurrency: 2 });
    expect(updateSettings(current, { notifications: false })).toEqual({
      maxConcurrency: 2,
      notifications: false,
    });
    expect(() => updateSettings(current, { maxConcurrency: 100 })).toThrow(
      /^the change has invalid settings: maxConcurrency/,
    );
    expect(() => updateSettings(current, ['x'])).toThrow(SettingsError);
    expect(current).toEqual({ maxConcurrency: 2 });
  });
});

describe('settingsAccess over a settings file', () => {
  /** A settings file in memory that counts its writes. */
  function memoryFile(initial: unknown) {
    const file = { value: initial, writes: 0 };
    return {
      file,
      access: {
        get: () => file.value,
        set: (value: unknown) => {
          file.value = value;
          file.writes += 1;
        },
      },
    };
  }

  it('reads the file once, fills in the defaults, and writes each valid change through', () => {
    const { file, access } = memoryFile({ assistantName: 'Ada' });
    const heard: unknown[] = [];
    const settings = settingsAccess(access, (patch, saved) => heard.push({ patch, saved }));
    expect(settings.stored()).toEqual({ assistantName: 'Ada' });
    expect(settings.get()).toEqual({ ...defaultSettings(), assistantName: 'Ada' });

    file.value = { assistantName: 'changed behind its back' };
    expect(settings.get().assistantName).toBe('Ada');

    expect(settings.set({ maxConcurrency: 5, launchAtLogin: true })).toEqual({
      ...defaultSettings(),
      assistantName: 'Ada',
      maxConcurrency: 5,
      launchAtLogin: true,
    });
    expect(file.value).toEqual({ assistantName: 'Ada', maxConcurrency: 5, launchAtLogin: true });
    expect(settings.stored()).toEqual(file.value);
    expect(heard).toEqual([
      { patch: { maxConcurrency: 5, launchAtLogin: true }, saved: file.value },
    ]);
  });

  it('a bad change throws a person-facing error and writes nothing', () => {
    const { file, access } = memoryFile(undefined);
    const heard: unknown[] = [];
    const settings = settingsAccess(access, (patch) => heard.push(patch));
    for (const bad of [{ maxConcurrency: 0 }, { assistantName: 'Bad!' }, { colour: 'red' }, 'x'])
      expect(() => settings.set(bad)).toThrow(SettingsError);
    const error = (() => {
      try {
        settings.set({ maxConcurrency: 1000 });
      } catch (err) {
        return err;
      }
    })();
    // The window's API answers a CoreInputError as a bad request, with this message.
    expect(error).toBeInstanceOf(CoreInputError);
    expect((error as Error).message).toMatch(/^the change has invalid settings: maxConcurrency/);
    expect(file).toEqual({ value: undefined, writes: 0 });
    expect(settings.get()).toEqual(defaultSettings());
    expect(heard).toEqual([]);
  });

  it('a bad file is a start-up error naming the field, not a silent default', () => {
    const { access } = memoryFile({ maxConcurrency: 'lots' });
    expect(() => settingsAccess(access)).toThrow(
      /the settings file has invalid settings: maxConcurrency/,
    );
  });
});

describe('how settings reach the core', () => {
  it('stored settings feed loadConfig, under the environment', () => {
    const stored = parseStoredSettings({
      assistantName: 'Ada',
      runtime: 'docker',
      maxConcurrency: 5,
      idleTimeoutMs: 60_000,
      taskGraceMs: 0,
    });
    const env = bootEnv(stored, { CLAWBAR_HOME: '/tmp/x', CLAWBAR_MAX_CONCURRENCY: '7' }, KEY);
    const config = loadConfig(env);
    expect(config).toMatchObject({
      assistantName: 'Ada',
      runtime: 'docker',
      maxConcurrency: 7, // the environment wins
      idleTimeoutMs: 60_000,
      taskGraceMs: 0,
      apiKey: KEY,
    });
  });

  it('an unset setting does not hide the database’s value, and a blank variable does not hide the setting', () => {
    const env = bootEnv({}, { CLAWBAR_HOME: '/tmp/x' });
    const config = loadConfig(env, (key) => (key === 'assistantName' ? 'Bob' : undefined));
    expect(config.assistantName).toBe('Bob');
    expect(bootEnv({ assistantName: 'Ada' }, { CLAWBAR_ASSISTANT_NAME: '  ' })).toMatchObject({
      CLAWBAR_ASSISTANT_NAME: 'Ada',
    });
    expect(bootEnv({}, { ANTHROPIC_API_KEY: 'from-env' }, KEY).ANTHROPIC_API_KEY).toBe('from-env');
  });
});

describe('the API key in safeStorage', () => {
  let box: Map<string, unknown>;
  let warnings: string[];

  const vault = (platform: NodeJS.Platform = 'linux') =>
    createApiKeyVault({
      safeStorage,
      box: box as unknown as SecretBox,
      log: silentLogger(),
      platform,
      warn: (message) => warnings.push(message),
    });

  beforeEach(() => {
    resetElectronFake();
    box = new Map();
    warnings = [];
  });

  it('stores only ciphertext and reads the key back', async () => {
    await vault().save(`  ${KEY}\n`);
    const stored = box.get(API_KEY_ENTRY) as string;
    expect(stored).not.toContain('sk-ant');
    expect(Buffer.from(stored, 'base64').toString()).not.toContain(KEY);
    expect(await vault().load()).toBe(KEY);
    expect(warnings).toEqual([]);
  });

  it('uses the async API where Electron has it', async () => {
    const calls: string[] = [];
    const asyncStorage = {
      ...safeStorage,
      encryptStringAsync: async (text: string) => {
        calls.push('encrypt');
        return safeStorage.encryptString(text);
      },
      decryptStringAsync: async (data: Buffer) => {
        calls.push('decrypt');
        return { result: safeStorage.decryptString(data), shouldReEncrypt: false };
      },
    };
    const v = createApiKeyVault({
      safeStorage: asyncStorage,
      box: box as unknown as SecretBox,
      log: silentLogger(),
      warn: () => undefined,
    });
    await v.save(KEY);
    expect(await v.load()).toBe(KEY);
    expect(calls).toEqual(['encrypt', 'decrypt']);
  });

  it('warns once on Linux when the keyring falls back to basic text', async () => {
    safeStorage.backend = 'basic_text';
    const v = vault('linux');
    await v.save(KEY);
    await v.load();
    expect(warnings).toEqual([WEAK_PROTECTION_WARNING]);
    await vault('darwin').save(KEY);
    expect(warnings).toHaveLength(1);
  });

  it('refuses a malformed key and a missing keyring, storing nothing', async () => {
    await expect(vault().save('hello')).rejects.toThrow(/does not look like an Anthropic API key/);
    expect(() => validateApiKey(42)).toThrow(/must be text/);
    safeStorage.available = false;
    await expect(vault().save(KEY)).rejects.toThrow(/set ANTHROPIC_API_KEY in the environment/);
    expect(box.size).toBe(0);
    expect(await vault().load()).toBeUndefined();
  });

  it('a ciphertext it cannot decrypt reads as no key, so the user is asked again', async () => {
    box.set(API_KEY_ENTRY, Buffer.from('garbage').toString('base64'));
    expect(await vault().load()).toBeUndefined();
    box.set(API_KEY_ENTRY, 42);
    expect(await vault().load()).toBeUndefined();
    expect(vault().has()).toBe(false);
    vault().clear();
    expect(box.has(API_KEY_ENTRY)).toBe(false);
  });
});

describe("the window's hold on the API key (apiKeyAccess)", () => {
  let box: Map<string, unknown>;
  let keys: Array<string | undefined>;
  let inUse: string | undefined;
  const core = {
    setApiKey: (key: string | undefined) => {
      keys.push(key);
      inUse = key;
    },
    keyConfigured: () => inUse !== undefined,
  };
  const access = (environmentKey?: string, platform: NodeJS.Platform = 'linux') =>
    apiKeyAccess({
      vault: createApiKeyVault({
        safeStorage,
        box: box as unknown as SecretBox,
        log: silentLogger(),
        platform,
        warn: () => undefined,
      }),
      safeStorage,
      environmentKey,
      core,
      platform,
    });

  beforeEach(() => {
    resetElectronFake();
    box = new Map();
    keys = [];
    inUse = undefined;
  });

  it('saves a pasted key encrypted, puts it in use at once, and never hands it back', async () => {
    const keyAccess = access();
    expect(await keyAccess.status()).toEqual({
      source: 'none',
      editable: true,
      app: 'desktop',
      protection: 'keyring',
    });
    const view = await keyAccess.set(`  ${KEY}  `);
    expect(view).toEqual({
      source: 'saved',
      editable: true,
      app: 'desktop',
      protection: 'keyring',
    });
    expect(JSON.stringify(view)).not.toContain('sk-ant');
    expect(keys).toEqual([KEY]);
    expect(box.get(API_KEY_ENTRY)).toEqual(expect.any(String));
    expect(String(box.get(API_KEY_ENTRY))).not.toContain(KEY);

    expect(await keyAccess.clear()).toMatchObject({ source: 'none', editable: true });
    expect(keys).toEqual([KEY, undefined]);
    expect(box.has(API_KEY_ENTRY)).toBe(false);
  });

  it('refuses a malformed key as bad input: nothing stored, the key in use unchanged', async () => {
    const keyAccess = access();
    const err = await keyAccess.set('my password').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoreInputError);
    expect(String(err)).toMatch(/does not look like an Anthropic API key/);
    expect(String(err)).not.toContain('my password');
    expect(keys).toEqual([]);
    expect(box.size).toBe(0);
  });

  it('leaves a key from the environment alone, and says where to change it', async () => {
    const keyAccess = access(KEY);
    expect(await keyAccess.status()).toEqual({
      source: 'environment',
      editable: false,
      app: 'desktop',
      protection: 'keyring',
    });
    for (const change of [() => keyAccess.set(KEY), () => keyAccess.clear()])
      await expect(change()).rejects.toThrow(
        /ANTHROPIC_API_KEY in the environment .* restart Clawbar/,
      );
    expect(keys).toEqual([]);
    expect(box.size).toBe(0);
  });

  it('says when a saved key cannot be read, or the keyring is weak or missing', async () => {
    box.set(API_KEY_ENTRY, Buffer.from('not ours').toString('base64'));
    expect(await access().status()).toMatchObject({ source: 'unreadable', editable: true });
    safeStorage.backend = 'basic_text';
    expect(await access().status()).toMatchObject({ protection: 'weak', editable: true });
    // macOS's Keychain is never basic_text.
    expect(await access(undefined, 'darwin').status()).toMatchObject({ protection: 'keyring' });
    safeStorage.available = false;
    expect(await access().status()).toMatchObject({ protection: 'unavailable', editable: false });
    await expect(access().set(KEY)).rejects.toThrow(/set ANTHROPIC_API_KEY in the environment/);
    expect(keys).toEqual([]);
  });
});

/**
 * The Anthropic API key, held by Electron's `safeStorage`: encrypted with a key from the
 * macOS Keychain or the Linux secret service, and only the ciphertext (base64) is kept in
 * electron-store. The key is decrypted once at start and handed to the core's model broker;
 * it never reaches a container (DESIGN.md).
 *
 * The async API (`encryptStringAsync`/`decryptStringAsync`) is used where this Electron has
 * it; older ones have only the synchronous calls, which are then used behind the same
 * promise-returning functions. `safeStorage` is injected, so this is tested with
 * `test/fakes/electron.ts`.
 */
import type { UiApiKeyAccess } from '../core/control/ui-api.js';
import { CoreInputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ApiKeyView } from '../../preload/ipc-contract.js';

/** The Linux password store Chromium chose; `basic_text` means a hard-coded key, no real protection. */
export type StorageBackend =
  'basic_text' | 'gnome_libsecret' | 'kwallet' | 'kwallet5' | 'kwallet6' | 'unknown';

/** The parts of Electron's `safeStorage` used here. */
export interface SafeStorageLike {
  isEncryptionAvailable(): boolean;
  encryptString(plainText: string): Buffer;
  decryptString(encrypted: Buffer): string;
  encryptStringAsync?(plainText: string): Promise<Buffer>;
  decryptStringAsync?(encrypted: Buffer): Promise<string | { result: string }>;
  /** Linux only. */
  getSelectedStorageBackend?(): StorageBackend;
}

/** Where the ciphertext is kept (electron-store, or a Map in tests). */
export interface SecretBox {
  get(key: typeof API_KEY_ENTRY): unknown;
  set(key: typeof API_KEY_ENTRY, value: string): void;
  delete(key: typeof API_KEY_ENTRY): void;
}

/** The electron-store key of the encrypted API key. */
export const API_KEY_ENTRY = 'anthropicApiKeyEncrypted';

/**
 * A key that cannot be taken: not a key's shape, or no keyring to keep it in. Both are answered
 * to the window as a refusal with this message (CoreInputError), not as a failure.
 */
export class SecretStorageError extends CoreInputError {
  constructor(message: string) {
    super(message);
    this.name = 'SecretStorageError';
  }
}

const ANTHROPIC_KEY = /^sk-ant-[A-Za-z0-9_-]{10,}$/;

/**
 * Checks a pasted key's shape before it is stored, so a stray space or the wrong secret is
 * caught here and not as a 401 on the first message. Returns the trimmed key.
 */
export function validateApiKey(raw: unknown): string {
  if (typeof raw !== 'string') throw new SecretStorageError('the API key must be text');
  const key = raw.trim();
  if (!ANTHROPIC_KEY.test(key))
    throw new SecretStorageError(
      'that does not look like an Anthropic API key (it starts with sk-ant-); copy it again from https://console.anthropic.com/settings/keys',
    );
  return key;
}

/** True when the key would be stored with no real protection: Linux with no keyring. */
export function weakKeyProtection(
  safeStorage: SafeStorageLike,
  platform: NodeJS.Platform = process.platform,
): boolean {
  return platform === 'linux' && safeStorage.getSelectedStorageBackend?.() === 'basic_text';
}

/** The sentence shown (and logged) when {@link weakKeyProtection} holds. */
export const WEAK_PROTECTION_WARNING =
  'No keyring (GNOME Keyring or KWallet) was found, so your API key is stored with weak protection. Install and unlock a keyring, then save the key again in Settings.';

async function encrypt(safeStorage: SafeStorageLike, text: string): Promise<Buffer> {
  return safeStorage.encryptStringAsync
    ? safeStorage.encryptStringAsync(text)
    : safeStorage.encryptString(text);
}

async function decrypt(safeStorage: SafeStorageLike, data: Buffer): Promise<string> {
  if (!safeStorage.decryptStringAsync) return safeStorage.decryptString(data);
  // Electron's async decrypt resolves with `{ result, shouldReEncrypt }`; accept a bare string too.
  const out = await safeStorage.decryptStringAsync(data);
  return typeof out === 'string' ? out : out.result;
}

export interface ApiKeyVaultDeps {
  safeStorage: SafeStorageLike;
  box: SecretBox;
  log: Logger;
  /** @default process.platform */
  platform?: NodeJS.Platform;
  /** Tells the user (a notification) that the key is weakly protected. */
  warn(message: string): void;
}

export interface ApiKeyVault {
  /** Encrypts and stores a key the user entered, and returns it trimmed; rejects a malformed one. */
  save(rawKey: unknown): Promise<string>;
  /** The stored key, or undefined when none is stored or it cannot be decrypted. */
  load(): Promise<string | undefined>;
  /** Forgets the stored key. */
  clear(): void;
  /** Whether a key is stored (without decrypting it). */
  has(): boolean;
}

export function createApiKeyVault(deps: ApiKeyVaultDeps): ApiKeyVault {
  const log = deps.log.child({ mod: 'secrets' });
  const platform = deps.platform ?? process.platform;
  let warned = false;

  const warnIfWeak = (): void => {
    if (warned || !weakKeyProtection(deps.safeStorage, platform)) return;
    warned = true;
    log.warn('safeStorage uses basic_text: the API key is stored with weak protection');
    deps.warn(WEAK_PROTECTION_WARNING);
  };

  return {
    async save(rawKey) {
      const key = validateApiKey(rawKey);
      if (!deps.safeStorage.isEncryptionAvailable())
        throw new SecretStorageError(
          'the system keyring is not available, so the API key cannot be stored safely; set ANTHROPIC_API_KEY in the environment instead',
        );
      warnIfWeak();
      const encrypted = await encrypt(deps.safeStorage, key);
      deps.box.set(API_KEY_ENTRY, encrypted.toString('base64'));
      return key;
    },
    async load() {
      const stored = deps.box.get(API_KEY_ENTRY);
      if (stored === undefined) return undefined;
      if (typeof stored !== 'string' || stored === '') {
        log.warn('the stored API key is not a ciphertext string; ignoring it');
        return undefined;
      }
      if (!deps.safeStorage.isEncryptionAvailable()) {
        log.warn('the system keyring is not available: the stored API key cannot be read');
        return undefined;
      }
      warnIfWeak();
      try {
        return await decrypt(deps.safeStorage, Buffer.from(stored, 'base64'));
      } catch (err) {
        // A key encrypted under another keyring or user cannot be read back: ask for it again.
        log.warn({ err }, 'could not decrypt the stored API key; enter it again in Settings');
        return undefined;
      }
    },
    clear() {
      deps.box.delete(API_KEY_ENTRY);
    },
    has() {
      return typeof deps.box.get(API_KEY_ENTRY) === 'string';
    },
  };
}

export interface ApiKeyAccessDeps {
  vault: ApiKeyVault;
  safeStorage: SafeStorageLike;
  /** ANTHROPIC_API_KEY as the app was started with: it wins over a saved key (bootEnv). */
  environmentKey: string | undefined;
  /** The core's broker takes the key at once, and the held work follows. */
  core: { setApiKey(key: string | undefined): void; keyConfigured(): boolean };
  /** @default process.platform */
  platform?: NodeJS.Platform;
}

/**
 * The window's Settings panel's hold on the key: it can see where the key comes from, save a
 * new one (checked, encrypted, then in use with no restart) or remove it, but never read it.
 * A key from the environment is left alone: it wins at every start, so a key saved here would
 * do nothing, and the panel says where to change it instead.
 */
export function apiKeyAccess(deps: ApiKeyAccessDeps): UiApiKeyAccess {
  const fromEnvironment = Boolean(deps.environmentKey?.trim());
  const platform = deps.platform ?? process.platform;
  const status = (): ApiKeyView => {
    const protection = !deps.safeStorage.isEncryptionAvailable()
      ? 'unavailable'
      : weakKeyProtection(deps.safeStorage, platform)
        ? 'weak'
        : 'keyring';
    if (fromEnvironment)
      return { source: 'environment', editable: false, app: 'desktop', protection };
    const source = !deps.vault.has() ? 'none' : deps.core.keyConfigured() ? 'saved' : 'unreadable';
    return { source, editable: protection !== 'unavailable', app: 'desktop', protection };
  };
  const refuseEnvironment = (): void => {
    if (fromEnvironment)
      throw new SecretStorageError(
        'the API key comes from ANTHROPIC_API_KEY in the environment Clawbar was started with, which wins over a saved key; change or remove it there and restart Clawbar',
      );
  };
  return {
    status,
    async set(key) {
      refuseEnvironment();
      deps.core.setApiKey(await deps.vault.save(key));
      return status();
    },
    async clear() {
      refuseEnvironment();
      deps.vault.clear();
      deps.core.setApiKey(undefined);
      return status();
    },
  };
}

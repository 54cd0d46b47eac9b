/**
 * A fake WhatsApp contact: its own identity and a real libsignal repository (Baileys'
 * `DEFAULT_CONNECTION_CONFIG.makeSignalRepository`), so it can encrypt messages to the paired
 * device (`pkmsg` first, then `msg`; `skmsg` in groups) and decrypt what the device sends.
 */
import {
  addTransactionCapability,
  Curve,
  DEFAULT_CONNECTION_CONFIG,
  encodeWAMessage,
  initAuthCreds,
  proto,
  unpadRandomMax16,
  type AuthenticationCreds,
  type SignalDataSet,
  type SignalDataTypeMap,
  type SignalKeyStore,
  type SignalRepositoryWithLIDStore,
} from '@whiskeysockets/baileys';
import pino from 'pino';

/** A device's public key bundle, as uploaded to / fetched from the server. */
export type KeyBundle = {
  registrationId: number;
  /** 32-byte identity public key (no 0x05 prefix). */
  identityKey: Uint8Array;
  signedPreKey: { keyId: number; publicKey: Uint8Array; signature: Uint8Array };
  /** One-time prekeys still unused on the server. */
  preKeys: { keyId: number; publicKey: Uint8Array }[];
};

/**
 * A silent logger for Baileys and the fake. Set `WA_FAKE_LOG=debug` (or `trace`) to see
 * Baileys' own log while debugging a test.
 */
export const silentLogger = pino({ level: process.env.WA_FAKE_LOG ?? 'silent' });

/** A plain in-memory Signal key store, the shape Baileys' auth state wants. */
export function makeMemoryKeyStore(): SignalKeyStore {
  const data = new Map<string, unknown>();
  return {
    async get<T extends keyof SignalDataTypeMap>(type: T, ids: string[]) {
      const out: { [id: string]: SignalDataTypeMap[T] } = {};
      for (const id of ids) {
        const value = data.get(`${type}:${id}`);
        if (value !== undefined) out[id] = value as SignalDataTypeMap[T];
      }
      return out;
    },
    async set(set: SignalDataSet) {
      for (const [type, entries] of Object.entries(set)) {
        for (const [id, value] of Object.entries(entries ?? {})) {
          if (value === null || value === undefined) data.delete(`${type}:${id}`);
          else data.set(`${type}:${id}`, value);
        }
      }
    },
    async clear() {
      data.clear();
    },
  };
}

const PREKEYS_PER_CONTACT = 5;

export class FakeContact {
  /** Phone-number jid, `<number>@s.whatsapp.net`. */
  readonly jid: string;
  /**
   * LID jid, `<lid>@lid`. Every contact has one: Baileys 7 fetches key bundles only for LID
   * jids (messages-send.js assertSessions), so a contact without a LID could not be written to.
   */
  readonly lidJid: string;
  readonly pushName: string;
  private readonly creds: AuthenticationCreds;
  private readonly repo: SignalRepositoryWithLIDStore;
  private readonly preKeys: { keyId: number; publicKey: Uint8Array }[];

  private constructor(opts: {
    phone: string;
    lid: string;
    pushName: string;
    creds: AuthenticationCreds;
    repo: SignalRepositoryWithLIDStore;
    preKeys: { keyId: number; publicKey: Uint8Array }[];
  }) {
    this.jid = `${opts.phone}@s.whatsapp.net`;
    this.lidJid = `${opts.lid}@lid`;
    this.pushName = opts.pushName;
    this.creds = opts.creds;
    this.repo = opts.repo;
    this.preKeys = opts.preKeys;
  }

  /**
   * Makes a contact with a fresh identity, signed prekey and a few one-time prekeys.
   * `lid` defaults to `9` + the phone number zero-padded to 14 digits.
   */
  static async create(opts: {
    phone: string;
    lid?: string;
    pushName?: string;
  }): Promise<FakeContact> {
    if (!/^\d{5,15}$/.test(opts.phone))
      throw new Error(`contact phone must be digits, got ${opts.phone}`);
    if (opts.lid !== undefined && !/^\d{5,20}$/.test(opts.lid))
      throw new Error(`contact lid must be digits, got ${opts.lid}`);
    const creds = initAuthCreds();
    const keys = addTransactionCapability(makeMemoryKeyStore(), silentLogger, {
      maxCommitRetries: 1,
      delayBetweenTriesMs: 1,
    });
    const preKeys: { keyId: number; publicKey: Uint8Array }[] = [];
    const preKeyPairs: Record<string, { public: Uint8Array; private: Uint8Array }> = {};
    for (let keyId = 1; keyId <= PREKEYS_PER_CONTACT; keyId++) {
      const pair = Curve.generateKeyPair();
      preKeyPairs[String(keyId)] = pair;
      preKeys.push({ keyId, publicKey: pair.public });
    }
    await keys.set({ 'pre-key': preKeyPairs });
    const repo = DEFAULT_CONNECTION_CONFIG.makeSignalRepository({ creds, keys }, silentLogger);
    return new FakeContact({
      phone: opts.phone,
      lid: opts.lid ?? `9${opts.phone.padStart(14, '0')}`,
      pushName: opts.pushName ?? `Contact ${opts.phone}`,
      creds,
      repo,
      preKeys,
    });
  }

  /** This contact's device-0 key bundle, for the server to hand out on `encrypt` key fetches. */
  bundle(): KeyBundle {
    return {
      registrationId: this.creds.registrationId,
      identityKey: this.creds.signedIdentityKey.public,
      signedPreKey: {
        keyId: this.creds.signedPreKey.keyId,
        publicKey: this.creds.signedPreKey.keyPair.public,
        signature: this.creds.signedPreKey.signature,
      },
      preKeys: [...this.preKeys],
    };
  }

  /**
   * Encrypts a message to one device. The first call to a device starts a session from its
   * bundle (a `pkmsg`); later calls continue it (`msg` once the device has answered).
   */
  async encryptTo(
    deviceJid: string,
    bundle: () => KeyBundle | undefined,
    message: proto.IMessage,
  ): Promise<{ type: 'pkmsg' | 'msg'; ciphertext: Uint8Array }> {
    const { exists } = await this.repo.validateSession(deviceJid);
    if (!exists) {
      const theirs = bundle();
      if (!theirs)
        throw new Error(`no key bundle for ${deviceJid}: has the device uploaded its keys?`);
      const preKey = theirs.preKeys.shift();
      await this.repo.injectE2ESession({
        jid: deviceJid,
        session: {
          registrationId: theirs.registrationId,
          identityKey: withKeyType(theirs.identityKey),
          signedPreKey: {
            keyId: theirs.signedPreKey.keyId,
            publicKey: withKeyType(theirs.signedPreKey.publicKey),
            signature: theirs.signedPreKey.signature,
          },
          preKey: preKey
            ? { keyId: preKey.keyId, publicKey: withKeyType(preKey.publicKey) }
            : undefined,
        },
      });
    }
    return this.repo.encryptMessage({ jid: deviceJid, data: encodeWAMessage(message) });
  }

  /**
   * Encrypts a group message with this contact's sender key. Returns the `skmsg` ciphertext and
   * the sender-key distribution message, which must reach the device once (inside a pkmsg/msg).
   */
  async encryptForGroup(
    groupJid: string,
    message: proto.IMessage,
  ): Promise<{ ciphertext: Uint8Array; senderKeyDistributionMessage: Uint8Array }> {
    return this.repo.encryptGroupMessage({
      group: groupJid,
      meId: this.jid,
      data: encodeWAMessage(message),
    });
  }

  /** Decrypts a `pkmsg`/`msg` from a device to this contact. */
  async decryptFrom(
    senderJid: string,
    type: 'pkmsg' | 'msg',
    ciphertext: Uint8Array,
  ): Promise<proto.Message> {
    const padded = await this.repo.decryptMessage({ jid: senderJid, type, ciphertext });
    return proto.Message.decode(unpadRandomMax16(padded));
  }

  /** Takes in a sender key the device distributed for a group. */
  async processSenderKey(
    authorJid: string,
    item: proto.Message.ISenderKeyDistributionMessage,
  ): Promise<void> {
    await this.repo.processSenderKeyDistributionMessage({ authorJid, item });
  }

  /** Decrypts a group `skmsg` from `authorJid`. */
  async decryptGroup(
    groupJid: string,
    authorJid: string,
    ciphertext: Uint8Array,
  ): Promise<proto.Message> {
    const padded = await this.repo.decryptGroupMessage({
      group: groupJid,
      authorJid,
      msg: ciphertext,
    });
    return proto.Message.decode(unpadRandomMax16(padded));
  }
}

/** libsignal wants 33-byte public keys with the 0x05 type prefix. */
function withKeyType(key: Uint8Array): Uint8Array {
  return key.length === 33 ? key : Buffer.concat([Buffer.from([5]), key]);
}

/**
 * The WhatsApp channel: Baileys behind Clawbar's {@link Channel} interface. This is the one
 * file that talks to a Baileys socket (DESIGN: one file per external system).
 *
 * - **One socket at a time.** Before a new socket is made, the old one's listeners are removed
 *   and it is ended; every handler also checks that its socket is still the current one, so a
 *   late event from a dead socket changes nothing.
 * - **Reconnects by disconnect reason** ({@link ReconnectPolicy}): 515 at once, backoff for the
 *   transient codes, stop on 440, and on 401/403/411 the credentials are wiped and the state is
 *   `needs-pairing`. Nothing here ever exits the process; a person pairs again with
 *   `clawbar pair` ({@link WhatsAppChannel.pair}).
 * - **Not paired is a state, not a QR storm.** `connect` opens a socket only when the account
 *   is linked; otherwise it reports `needs-pairing` and waits for {@link WhatsAppChannel.pair}.
 * - **Inbound** is normalized (inbound.ts), deduplicated by id, and handed to the core only for
 *   registered groups; every chat's name is reported through `onChatMetadata`. Media of a
 *   registered group goes through the injected `saveMedia` hook.
 * - **Outbound** replies carry the assistant-name prefix (the assistant usually shares the
 *   user's own number, and the prefix is how its own messages are recognised when they come
 *   back), are split by the injected `splitText`, and a retry after a partial send resumes
 *   with the parts not yet sent.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  DEFAULT_CONNECTION_CONFIG,
  isJidGroup,
  jidNormalizedUser,
  makeCacheableSignalKeyStore,
  makeWASocket,
  proto,
  type AuthenticationState,
  type BaileysEventMap,
  type ConnectionState,
  type Contact,
  type GroupMetadata,
  type WAMessage,
  type WAPresence,
} from '@whiskeysockets/baileys';
import type { ClawbarConfig } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { Group, Store } from '../../store/index.js';
import type {
  Channel,
  ChannelHooks,
  ChannelState,
  ChatMetadata,
  OutboundMessage,
  RateLimit,
  SentMessage,
} from '../channel.js';
import { normalizePhoneNumber } from '../whatsapp-control.js';
import { AuthStateCorruptError, SqliteAuthState } from './auth-state.js';
import {
  disconnectCode,
  ReconnectPolicy,
  type ReconnectPolicyOptions,
} from './connection-policy.js';
import {
  botPrefix,
  normalizeInbound,
  type MediaDescriptor,
  type NormalizedInbound,
} from './inbound.js';
import { LruMap, lruCacheStore } from './lru.js';
import {
  describeMedia,
  isSavedMedia,
  MAX_INBOUND_MEDIA_BYTES,
  type SaveMediaResult,
} from './media.js';
import { downloadMessageMedia, mediaOriginForWaUrl } from './media-download.js';
import { whatsappFileMessages, type WhatsAppOutgoingContent } from './outbound.js';

/** The part of a Baileys socket the channel uses; tests pass a fake with a real-shaped `ev`. */
export interface WhatsAppSocket {
  ev: {
    on<T extends keyof BaileysEventMap>(
      event: T,
      listener: (arg: BaileysEventMap[T]) => void,
    ): void;
    off<T extends keyof BaileysEventMap>(
      event: T,
      listener: (arg: BaileysEventMap[T]) => void,
    ): void;
  };
  user?: Contact | undefined;
  end(error: Error | undefined): unknown;
  logout(msg?: string): Promise<void>;
  sendMessage(
    jid: string,
    content: WhatsAppOutgoingContent,
    options?: { messageId?: string },
  ): Promise<WAMessage | undefined>;
  sendPresenceUpdate(type: WAPresence, toJid?: string): Promise<void>;
  groupMetadata(jid: string): Promise<GroupMetadata>;
  groupFetchAllParticipating(): Promise<{ [jid: string]: GroupMetadata }>;
  requestPairingCode(phoneNumber: string): Promise<string>;
  /** Asks the sender's phone to upload expired media again. */
  updateMediaMessage(message: WAMessage): Promise<WAMessage>;
  signalRepository: { lidMapping: { getPNForLID(lid: string): Promise<string | null> } };
}

/** What the channel gives the factory for each socket. */
export interface SocketOptions {
  auth: AuthenticationState;
  /** `CLAWBAR_WA_URL`; undefined means WhatsApp's own service. */
  waUrl: string | undefined;
  /** Baileys' own log lines, at warn. */
  logger: Logger;
  cachedGroupMetadata(jid: string): Promise<GroupMetadata | undefined>;
}

export type SocketFactory = (options: SocketOptions) => WhatsAppSocket;

/**
 * The real socket: Baileys' `makeWASocket` with its built-in WA Web version (no version fetch
 * from the network: start-up must not hang on it, and tests must not reach out), not shown as
 * online (the phone keeps its notifications), and no full-history sync.
 */
export const baileysSocketFactory: SocketFactory = (options) =>
  makeWASocket({
    auth: options.auth,
    logger: options.logger,
    ...(options.waUrl ? { waWebSocketUrl: options.waUrl } : {}),
    version: DEFAULT_CONNECTION_CONFIG.version,
    markOnlineOnConnect: false,
    syncFullHistory: false,
    // No message history at all (RECENT and FULL): the channel acts only on live messages. It
    // also matters at login: when RECENT history is wanted, Baileys holds every event back for
    // up to 20 s after the first login, waiting for a history notification. The other sync
    // kinds (bootstrap, push names) stay on: they carry the LID↔phone mappings.
    shouldSyncHistoryMessage: ({ syncType }) =>
      syncType !== proto.HistorySync.HistorySyncType.RECENT &&
      syncType !== proto.HistorySync.HistorySyncType.FULL,
    cachedGroupMetadata: options.cachedGroupMetadata,
  });

/** One inbound attachment to save, as the channel hands it to {@link SaveMedia}. */
export interface MediaToSave {
  media: MediaDescriptor;
  /** The message it came in (its id, timestamp), as WhatsApp sent it: untrusted. */
  message: WAMessage;
  /** The registered group it belongs to: it is saved under this group's folder. */
  group: Pick<Group, 'jid' | 'folder'>;
  /**
   * Downloads and decrypts it, checked (media-download.ts: only WhatsApp's media hosts, or the
   * origin of `CLAWBAR_WA_URL`; MAC and hashes verified, the iterator throws at the end
   * otherwise), asking the sender's phone through the socket that received it to upload
   * expired media again. `signal` stops the download.
   */
  download(options?: { signal?: AbortSignal }): Promise<AsyncIterable<Uint8Array>>;
}

/**
 * Saves one inbound attachment into the group's folder (`inbox/`), under the no-link-following
 * rules. Resolves with its path relative to the group folder, or why it was not saved (too
 * big, the download failed), as media.ts's `saveInboundMedia` does. Called only for registered groups; a throw is logged and taken as not saved.
 */
export type SaveMedia = (request: MediaToSave) => Promise<SaveMediaResult>;

/** When the connection last closed, and why. */
export interface LastDisconnect {
  code: number | undefined;
  reason: string;
  /** Milliseconds since the epoch. */
  at: number;
}

export interface WhatsAppChannelDeps {
  store: Store;
  config: Pick<ClawbarConfig, 'waUrl' | 'assistantName'>;
  log: Logger;
  /** @default baileysSocketFactory */
  socketFactory?: SocketFactory;
  /** @default none: media is described in the message but not saved */
  saveMedia?: SaveMedia;
  /** Splits a long reply into the messages to send. @default one message */
  splitText?: (text: string) => string[];
  /**
   * Put `NAME: ` in front of every reply. Needed when the assistant shares the user's number
   * (the usual set-up), so its own messages are recognised. @default true
   */
  prefixReplies?: boolean;
  /** @default DEFAULT_RECONNECT_POLICY */
  policy?: Partial<ReconnectPolicyOptions>;
  /** @default Date.now */
  now?: () => number;
  /** Jitter for the reconnect backoff. @default Math.random */
  random?: () => number;
}

/** Recent message ids remembered for dedupe. */
const DEDUPE_CAPACITY = 5_000;
/** Signal keys kept in memory in front of SQLite. */
const KEY_CACHE_CAPACITY = 10_000;
/** How long `disconnect` waits for the message being handled. */
const INBOUND_DRAIN_MS = 5_000;
/** How long a logout may take before the unlink goes on without it. */
const LOGOUT_TIMEOUT_MS = 5_000;
/** The deadline for one media download, headers to last byte: 25 MiB at ~200 KB/s. */
const MEDIA_DOWNLOAD_TIMEOUT_MS = 120_000;
/** The settings key of the random salt in this database's outgoing message ids. */
const MESSAGE_ID_SALT_KEY = 'whatsappMessageIdSalt';

const NOT_LINKED_REASON = 'WhatsApp is not linked yet; run `clawbar pair` to link it';
const UNLINKED_REASON = 'WhatsApp was unlinked; run `clawbar pair` to link it again';
/** Why a pairing session (QR or code) closed before a phone linked this device. */
function pairingEndedReason(why: string): string {
  return `pairing ended before a phone linked this device (${why}); run \`clawbar pair\` to try again`;
}

export class WhatsAppChannel implements Channel {
  readonly name = 'whatsapp' as const;
  /** One message a second, three at once after a pause: about as fast as a person types. */
  readonly rateLimit: RateLimit = { perSecond: 1, burst: 3 };

  private readonly log: Logger;
  private readonly auth: SqliteAuthState;
  private readonly socketFactory: SocketFactory;
  private readonly policy: ReconnectPolicy;
  private readonly now: () => number;
  private readonly splitText: (text: string) => string[];
  private readonly keyCache = lruCacheStore(KEY_CACHE_CAPACITY);
  private readonly seenIds = new LruMap<string, true>(DEDUPE_CAPACITY);
  /** Ids of messages this channel sent: when they come back, they are the bot's. */
  private readonly sentIds = new LruMap<string, true>(DEDUPE_CAPACITY);
  /** Parts of a split reply already sent, by outbox id, so a retry resumes after them. */
  private readonly partsSent = new LruMap<number, { ids: string[] }>(1_000);
  private readonly groupCache = new Map<string, GroupMetadata>();

  private current: ChannelState = { state: 'closed', reason: 'not connected', retrying: false };
  private hooks: ChannelHooks | null = null;
  private sock: WhatsAppSocket | null = null;
  private detach: (() => void) | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pairingPhone: string | null = null;
  private inbound: Promise<void> = Promise.resolve();
  private last: LastDisconnect | null = null;
  private socketsMade = 0;

  constructor(private readonly deps: WhatsAppChannelDeps) {
    this.log = deps.log.child({ mod: 'whatsapp' });
    this.auth = new SqliteAuthState(deps.store.db);
    this.socketFactory = deps.socketFactory ?? baileysSocketFactory;
    this.now = deps.now ?? Date.now;
    this.policy = new ReconnectPolicy(deps.policy, deps.random);
    this.splitText = deps.splitText ?? ((text) => [text]);
  }

  get state(): ChannelState {
    return this.current;
  }

  /** The last close: its status code, words and time; null before the first. */
  get lastDisconnect(): LastDisconnect | null {
    return this.last;
  }

  /** Sockets made since this channel was created (each connection attempt makes one). */
  get connectionAttempts(): number {
    return this.socketsMade;
  }

  owns(chatJid: string): boolean {
    return /@(s\.whatsapp\.net|g\.us|lid)$/.test(chatJid);
  }

  /**
   * Starts the channel. With linked credentials it connects; without, it reports
   * `needs-pairing` and waits for {@link pair}.
   */
  async connect(hooks: ChannelHooks): Promise<void> {
    this.hooks = hooks;
    this.policy.reset();
    let linked: boolean;
    try {
      linked = this.auth.isRegistered();
    } catch (err) {
      this.needsPairing(this.corruptReason(err));
      return;
    }
    if (linked) this.openSocket();
    else this.needsPairing(NOT_LINKED_REASON);
  }

  /**
   * Starts linking this device: a fresh socket that reports QR codes, or, given a phone number
   * (digits with country code), a pairing code to type on that phone. Existing credentials are
   * kept: pairing an already linked account just reconnects it.
   */
  async pair(options: { phoneNumber?: string } = {}): Promise<void> {
    if (!this.hooks) throw new Error('the WhatsApp channel is not started; call connect first');
    if (this.current.state === 'open') {
      throw new Error(
        'WhatsApp is already linked and connected; run `clawbar unlink` first to link another phone',
      );
    }
    // Throws InvalidPhoneNumberError, which says what a valid number looks like.
    const phone =
      options.phoneNumber === undefined ? null : normalizePhoneNumber(options.phoneNumber);
    this.pairingPhone = phone;
    this.policy.reset();
    this.openSocket();
  }

  async disconnect(): Promise<void> {
    this.clearRetry();
    this.retire();
    this.pairingPhone = null;
    this.setState({ state: 'closed', reason: 'disconnected', retrying: false });
    // Let a message being handled finish (it may be saving media), but not for ever.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.inbound,
      new Promise((resolve) => (timer = setTimeout(resolve, INBOUND_DRAIN_MS))),
    ]);
    clearTimeout(timer);
    this.hooks = null;
  }

  /**
   * Unlinks this device: logs out (when connected), wipes the credentials and keys, and
   * reports `needs-pairing`.
   */
  async unlink(): Promise<void> {
    this.clearRetry();
    const sock = this.sock;
    if (sock && this.current.state === 'open') {
      // Logging out also ends the socket; our listeners are removed first so the 401 it
      // reports is not taken for a disconnect to act on.
      this.detachListeners();
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          sock.logout('unlinked from Clawbar'),
          new Promise((resolve) => (timer = setTimeout(resolve, LOGOUT_TIMEOUT_MS))),
        ]);
      } catch (err) {
        this.log.warn({ err }, 'logout failed; wiping the local credentials anyway');
      } finally {
        clearTimeout(timer);
      }
    }
    this.retire();
    this.clearAuth();
    this.needsPairing(UNLINKED_REASON);
  }

  /**
   * A WhatsApp Web style id (`3EB0` + 18 hex) derived from the outbox item and the part, salted
   * with a random value kept in this database: stable for one reply, never repeated by a new
   * database whose outbox ids start again at 1.
   */
  private messageIdFor(outboxId: number, part: number): string {
    const { store } = this.deps;
    let salt = store.getSetting(MESSAGE_ID_SALT_KEY);
    if (!salt) {
      salt = randomBytes(16).toString('hex');
      store.setSetting(MESSAGE_ID_SALT_KEY, salt);
    }
    const digest = createHash('sha256').update(`${salt}:${outboxId}:${part}`).digest('hex');
    return `3EB0${digest.slice(0, 18).toUpperCase()}`;
  }

  async send(message: OutboundMessage): Promise<SentMessage> {
    const sock = this.sock;
    if (!sock || this.current.state !== 'open') throw new Error('WhatsApp is not connected');
    if (!this.owns(message.chatJid)) throw new Error(`${message.chatJid} is not a WhatsApp chat`);
    const prefix =
      this.deps.prefixReplies === false ? '' : botPrefix(this.deps.config.assistantName);
    const parts = this.outgoingContents(message, prefix);
    const progress = this.partsSent.get(message.outboxId) ?? { ids: [] };
    this.partsSent.set(message.outboxId, progress);
    for (let i = progress.ids.length; i < parts.length; i++) {
      // The same id on every attempt, across restarts: a part resent after a crash (sent, but
      // not yet recorded) is one WhatsApp and the phones already have, not a second message.
      const sent = await sock.sendMessage(message.chatJid, parts[i]!, {
        messageId: this.messageIdFor(message.outboxId, i),
      });
      const id = sent?.key?.id;
      if (!id) throw new Error('WhatsApp accepted the message but returned no id');
      this.sentIds.set(id, true);
      progress.ids.push(id);
    }
    this.partsSent.delete(message.outboxId);
    return { id: progress.ids[progress.ids.length - 1]!, timestamp: this.now() };
  }

  /** The messages one outbox item becomes: its text's parts, or a file and its caption. */
  private outgoingContents(message: OutboundMessage, prefix: string): WhatsAppOutgoingContent[] {
    if (message.attachment) return whatsappFileMessages(message.attachment, message.text, prefix);
    const parts = this.splitText(message.text).filter((part) => part.trim() !== '');
    if (parts.length === 0) parts.push(message.text);
    return parts.map((part) => ({ text: `${prefix}${part}` }));
  }

  async setTyping(chatJid: string, typing: boolean): Promise<void> {
    const sock = this.sock;
    if (!sock || this.current.state !== 'open' || !this.owns(chatJid)) return;
    try {
      await sock.sendPresenceUpdate(typing ? 'composing' : 'paused', chatJid);
    } catch (err) {
      this.log.debug({ err, chat: chatJid }, 'typing indicator not sent');
    }
  }

  async chatMetadata(chatJid: string): Promise<ChatMetadata | null> {
    if (!this.owns(chatJid)) return null;
    if (isJidGroup(chatJid)) {
      let meta = this.groupCache.get(chatJid);
      if (!meta && this.sock && this.current.state === 'open') {
        try {
          meta = await this.sock.groupMetadata(chatJid);
          this.groupCache.set(chatJid, meta);
        } catch (err) {
          this.log.debug({ err, chat: chatJid }, 'group metadata not available');
        }
      }
      return meta ? groupChat(meta) : null;
    }
    const chat = this.deps.store.getChat(chatJid);
    return chat ? { jid: chatJid, name: chat.name, isGroup: false, participants: [] } : null;
  }

  // ── the socket ─────────────────────────────────────────────────────────

  /** Ends any socket and makes a new one, wiring its events. */
  private openSocket(): void {
    this.clearRetry();
    this.retire();
    let auth: AuthenticationState;
    let saveCreds: () => void;
    try {
      const loaded = this.auth.load();
      saveCreds = loaded.saveCreds;
      auth = {
        creds: loaded.state.creds,
        keys: makeCacheableSignalKeyStore(loaded.state.keys, undefined, this.keyCache),
      };
    } catch (err) {
      this.needsPairing(this.corruptReason(err));
      return;
    }
    const sock = this.socketFactory({
      auth,
      waUrl: this.deps.config.waUrl,
      logger: this.baileysLogger(),
      cachedGroupMetadata: async (jid) => this.groupCache.get(jid),
    });
    this.socketsMade += 1;
    this.sock = sock;
    let pairingCodeAsked = false;

    const onConnection = (update: Partial<ConnectionState>): void => {
      if (sock !== this.sock) return;
      if (update.qr) {
        if (this.pairingPhone) {
          if (!pairingCodeAsked) {
            pairingCodeAsked = true;
            this.askPairingCode(sock, this.pairingPhone);
          }
        } else {
          this.setState({ state: 'qr', qr: update.qr });
        }
      }
      if (update.connection === 'open') this.opened(sock);
      else if (update.connection === 'close') this.closed(update.lastDisconnect?.error);
    };
    const onCreds = (update: Partial<AuthenticationState['creds']>): void => {
      if (sock !== this.sock) return;
      Object.assign(auth.creds, update);
      try {
        saveCreds();
      } catch (err) {
        this.log.error({ err }, 'could not save WhatsApp credentials');
      }
    };
    const onMessages = (upsert: BaileysEventMap['messages.upsert']): void => {
      if (sock !== this.sock) return;
      // `append` carries messages that arrived while this device was offline: they are new to us.
      if (upsert.type !== 'notify' && upsert.type !== 'append') return;
      for (const raw of upsert.messages ?? []) this.queueInbound(sock, raw);
    };
    const onGroupsUpsert = (groups: GroupMetadata[]): void => {
      if (sock !== this.sock) return;
      for (const meta of groups) this.rememberGroup(meta);
    };
    const onGroupsUpdate = (updates: Partial<GroupMetadata>[]): void => {
      if (sock !== this.sock) return;
      for (const update of updates) {
        if (!update.id) continue;
        const known = this.groupCache.get(update.id);
        if (known) this.rememberGroup({ ...known, ...update, id: update.id });
        else this.refreshGroup(sock, update.id);
      }
    };
    const onParticipants = (update: BaileysEventMap['group-participants.update']): void => {
      if (sock !== this.sock || !update.id) return;
      this.refreshGroup(sock, update.id);
    };

    sock.ev.on('connection.update', onConnection);
    sock.ev.on('creds.update', onCreds);
    sock.ev.on('messages.upsert', onMessages);
    sock.ev.on('groups.upsert', onGroupsUpsert);
    sock.ev.on('groups.update', onGroupsUpdate);
    sock.ev.on('group-participants.update', onParticipants);
    this.detach = () => {
      sock.ev.off('connection.update', onConnection);
      sock.ev.off('creds.update', onCreds);
      sock.ev.off('messages.upsert', onMessages);
      sock.ev.off('groups.upsert', onGroupsUpsert);
      sock.ev.off('groups.update', onGroupsUpdate);
      sock.ev.off('group-participants.update', onParticipants);
    };
    this.setState({ state: 'connecting' });
  }

  private opened(sock: WhatsAppSocket): void {
    this.pairingPhone = null;
    this.policy.opened(this.now());
    this.setState({ state: 'open' });
    sock.groupFetchAllParticipating().then(
      (groups) => {
        if (sock !== this.sock) return;
        for (const meta of Object.values(groups)) this.rememberGroup(meta);
      },
      (err: unknown) => this.log.warn({ err }, 'could not fetch the groups this account is in'),
    );
  }

  private closed(error: unknown): void {
    const code = disconnectCode(error);
    const wasLinked = this.linked();
    const decision = this.policy.closed(code, this.now(), error);
    this.last = { code, reason: decision.reason, at: this.now() };
    this.retire();
    this.log.warn({ code, reason: decision.reason, action: decision.action }, 'WhatsApp closed');

    switch (decision.action) {
      case 'reconnect':
        if (!wasLinked) {
          // A QR or pairing-code session that ran out: waiting for a person, not retrying.
          this.pairingPhone = null;
          this.needsPairing(pairingEndedReason(decision.reason), code);
          return;
        }
        this.setState({ state: 'closed', reason: decision.reason, code, retrying: true });
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.openSocket();
        }, decision.delayMs);
        return;
      case 'stop':
        this.setState({ state: 'closed', reason: decision.reason, code, retrying: false });
        return;
      case 'logged-out':
        this.clearAuth();
        this.needsPairing(decision.reason, code);
        return;
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private askPairingCode(sock: WhatsAppSocket, phone: string): void {
    sock.requestPairingCode(phone).then(
      (code) => {
        if (sock === this.sock) this.setState({ state: 'pairing-code', code });
      },
      (err: unknown) => {
        this.log.warn({ err }, 'could not get a pairing code');
        if (sock !== this.sock) return;
        this.retire();
        this.pairingPhone = null;
        this.needsPairing(
          `could not get a pairing code (${err instanceof Error ? err.message : String(err)}); run \`clawbar pair\` again`,
        );
      },
    );
  }

  /** Removes the socket's listeners and ends it. Safe to call with no socket. */
  private retire(): void {
    const sock = this.sock;
    this.detachListeners();
    this.sock = null;
    if (!sock) return;
    try {
      Promise.resolve(sock.end(undefined)).catch((err: unknown) =>
        this.log.debug({ err }, 'ending the old socket failed'),
      );
    } catch (err) {
      this.log.debug({ err }, 'ending the old socket failed');
    }
  }

  /**
   * Baileys' own lines: warn and above, but never louder than the channel's logger. A child
   * given a level of its own would otherwise print through a quieter parent (tests' silent one).
   */
  private baileysLogger(): Logger {
    const level = this.log.isLevelEnabled('warn') ? 'warn' : this.log.level;
    return this.log.child({ mod: 'baileys' }, { level });
  }

  private detachListeners(): void {
    this.detach?.();
    this.detach = null;
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private clearAuth(): void {
    this.auth.clear();
    Promise.resolve(this.keyCache.flushAll()).catch(() => undefined);
  }

  private linked(): boolean {
    try {
      return this.auth.isRegistered();
    } catch {
      return false;
    }
  }

  private corruptReason(err: unknown): string {
    this.log.error({ err }, 'WhatsApp credentials unreadable');
    return err instanceof AuthStateCorruptError
      ? err.message
      : `WhatsApp credentials could not be read (${err instanceof Error ? err.message : String(err)}); run \`clawbar pair\``;
  }

  private needsPairing(reason: string, code?: number): void {
    this.setState(
      code === undefined
        ? { state: 'needs-pairing', reason }
        : { state: 'needs-pairing', reason, code },
    );
  }

  private setState(state: ChannelState): void {
    this.current = state;
    this.hooks?.onState(state);
  }

  // ── groups ─────────────────────────────────────────────────────────────

  private rememberGroup(meta: GroupMetadata): void {
    if (!meta?.id || !isJidGroup(meta.id)) return;
    this.groupCache.set(meta.id, meta);
    this.hooks?.onChatMetadata(groupChat(meta));
  }

  private refreshGroup(sock: WhatsAppSocket, jid: string): void {
    sock.groupMetadata(jid).then(
      (meta) => {
        if (sock === this.sock) this.rememberGroup(meta);
      },
      (err: unknown) => this.log.debug({ err, chat: jid }, 'could not refresh group metadata'),
    );
  }

  // ── inbound ────────────────────────────────────────────────────────────

  /** Handles messages one after another, in arrival order. */
  private queueInbound(sock: WhatsAppSocket, raw: WAMessage): void {
    const key = `${raw?.key?.remoteJid ?? ''}|${raw?.key?.id ?? ''}`;
    if (this.seenIds.has(key)) return;
    this.seenIds.set(key, true);
    this.inbound = this.inbound
      .then(() => this.handleInbound(sock, raw))
      .catch((err: unknown) =>
        this.log.error({ err, id: raw?.key?.id }, 'could not handle an inbound message'),
      );
  }

  private async handleInbound(sock: WhatsAppSocket, raw: WAMessage): Promise<void> {
    const hooks = this.hooks;
    if (!hooks) return;
    const { assistantName } = this.deps.config;
    const result = await normalizeInbound(raw, {
      self: { pn: sock.user?.id, lid: sock.user?.lid },
      assistantName,
      mentionTrigger: (jid) => this.deps.store.getGroup(jid)?.trigger ?? `@${assistantName}`,
      lidToPn: (lid) => sock.signalRepository.lidMapping.getPNForLID(lid),
      now: this.now,
    });
    if (result.kind === 'ignored') {
      this.log.debug({ id: raw?.key?.id, why: result.why }, 'inbound message ignored');
      return;
    }
    const message = result.message;
    if (this.sentIds.has(message.id)) message.fromBot = true;
    const chatName = this.chatName(message);
    hooks.onChatMetadata({
      jid: message.chatJid,
      name: chatName,
      isGroup: message.isGroup,
      participants: message.isGroup
        ? (this.groupCache.get(message.chatJid)?.participants ?? []).map((p) => p.id)
        : [],
      lastActivity: message.timestamp,
    });
    // Only registered chats keep full messages (and have their media saved).
    const group = this.deps.store.getGroup(message.chatJid);
    if (!group) return;
    const { text, mediaRef } = await this.withMedia(sock, message, raw, group);
    if (this.hooks !== hooks) return; // Disconnected while the media was saved.
    hooks.onMessage({
      channel: 'whatsapp',
      chatJid: message.chatJid,
      chatName,
      isGroup: message.isGroup,
      id: message.id,
      sender: message.sender,
      senderName: message.senderName,
      text,
      timestamp: message.timestamp,
      fromMe: message.fromMe,
      fromBot: message.fromBot,
      quotedId: message.quotedId,
      mediaRef,
    });
  }

  /** The message text with a line naming its attachment: `[image inbox/…]`. */
  private async withMedia(
    sock: WhatsAppSocket,
    message: NormalizedInbound,
    raw: WAMessage,
    group: Group,
  ): Promise<{ text: string; mediaRef: string | null }> {
    const media = message.media;
    if (!media) return { text: message.text, mediaRef: null };
    let result: SaveMediaResult = { refused: 'not downloaded' };
    if (this.deps.saveMedia) {
      try {
        result = await this.deps.saveMedia({
          media,
          message: raw,
          group,
          download: (options) => this.download(sock, raw, options?.signal),
        });
      } catch (err) {
        this.log.warn({ err, id: message.id, kind: media.kind }, 'could not save inbound media');
        result = { refused: 'it could not be saved' };
      }
    }
    const saved = isSavedMedia(result) ? result.relativePath : null;
    const line = describeMedia(media.kind, result, null, media.fileName);
    // The body first: the core matches the trigger at the start of the text, so a caption that
    // starts with `@Andy` must stay at the start.
    return { text: message.text ? `${message.text}\n${line}` : line, mediaRef: saved };
  }

  /**
   * Not Baileys' `downloadMediaMessage`, which checks no MAC or hash, fetches any URL the sender
   * names, and can raise an uncaught error on a cut connection (media-download.ts).
   */
  private async download(
    sock: WhatsAppSocket,
    raw: WAMessage,
    signal: AbortSignal | undefined,
  ): Promise<AsyncIterable<Uint8Array>> {
    const origin = mediaOriginForWaUrl(this.deps.config.waUrl);
    return downloadMessageMedia(raw.message, {
      allowedOrigins: origin ? [origin] : [],
      maxBytes: MAX_INBOUND_MEDIA_BYTES,
      timeoutMs: MEDIA_DOWNLOAD_TIMEOUT_MS,
      ...(signal ? { signal } : {}),
      reupload: async () => {
        this.log.info({ id: raw.key.id }, 'media expired; asking the sender to upload it again');
        return (await sock.updateMediaMessage(raw)).message;
      },
    });
  }

  private chatName(message: NormalizedInbound): string {
    if (message.isGroup) {
      return this.groupCache.get(message.chatJid)?.subject || this.known(message.chatJid);
    }
    if (!message.fromMe && !message.senderName.startsWith('+')) return message.senderName;
    return this.known(message.chatJid);
  }

  /** The stored name of a chat, else its number. */
  private known(jid: string): string {
    const stored = this.deps.store.getChat(jid)?.name;
    if (stored) return stored;
    const user = jidNormalizedUser(jid).split('@')[0];
    return isJidGroup(jid) ? 'WhatsApp group' : `+${user}`;
  }
}

function groupChat(meta: GroupMetadata): ChatMetadata {
  return {
    jid: meta.id,
    name: meta.subject || 'WhatsApp group',
    isGroup: true,
    participants: (meta.participants ?? []).map((p) => p.id).filter((id) => typeof id === 'string'),
  };
}

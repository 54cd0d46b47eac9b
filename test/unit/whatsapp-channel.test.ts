import {
  makeEventBuffer,
  proto,
  type BaileysEventMap,
  type GroupMetadata,
  type WAMessage,
  type WAPresence,
} from '@whiskeysockets/baileys';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type {
  ChannelHooks,
  ChannelState,
  ChatMetadata,
  InboundMessage,
} from '../../main/core/channels/channel.js';
import { SqliteAuthState } from '../../main/core/channels/whatsapp/auth-state.js';
import {
  WhatsAppChannel,
  type SaveMedia,
  type SocketOptions,
  type WhatsAppChannelDeps,
  type WhatsAppSocket,
} from '../../main/core/channels/whatsapp/whatsapp-channel.js';
import { LruMap } from '../../main/core/channels/whatsapp/lru.js';
import { tempStore, type TempStore } from '../helpers/store.js';

const SELF = '15550000001:7@s.whatsapp.net';
const ALICE = '15550000002@s.whatsapp.net';
const GROUP = '120363000000000001@g.us';
const OTHER_GROUP = '120363000000000002@g.us';

const silent = pino({ level: 'silent' });

function boom(message: string, statusCode: number): Error {
  return Object.assign(new Error(message), { output: { statusCode } });
}

/**
 * A stand-in for a Baileys socket: Baileys' own event emitter, and the few methods the channel
 * calls, recording what it was asked. It counts the listeners the channel holds on it.
 */
class FakeSocket implements WhatsAppSocket {
  readonly realEv = makeEventBuffer(silent);
  listeners = 0;
  ended = 0;
  loggedOut = 0;
  readonly sent: { jid: string; text: string }[] = [];
  readonly presence: { type: WAPresence; jid: string | undefined }[] = [];
  readonly pairingCodesAsked: string[] = [];
  user = { id: SELF, lid: '88880000001:7@lid' };
  failSendAt: number | null = null;
  groups: Record<string, GroupMetadata> = {
    [GROUP]: group(GROUP, 'Friends'),
  };
  readonly signalRepository = {
    lidMapping: { getPNForLID: async (_lid: string): Promise<string | null> => null },
  };
  readonly ev: WhatsAppSocket['ev'] = {
    on: (event, listener) => {
      this.listeners += 1;
      this.realEv.on(event, listener);
    },
    off: (event, listener) => {
      this.listeners -= 1;
      this.realEv.off(event, listener);
    },
  };

  constructor(readonly options: SocketOptions) {}

  emit<T extends keyof BaileysEventMap>(event: T, data: BaileysEventMap[T]): void {
    this.realEv.emit(event, data);
  }

  end(): void {
    this.ended += 1;
  }
  async logout(): Promise<void> {
    this.loggedOut += 1;
  }
  /** The `messageId` each send asked for, in order (failed sends included). */
  readonly askedIds: Array<string | undefined> = [];
  async sendMessage(
    jid: string,
    content: { text: string },
    options?: { messageId?: string },
  ): Promise<WAMessage | undefined> {
    this.askedIds.push(options?.messageId);
    if (this.failSendAt === this.sent.length) throw new Error('socket hiccup');
    this.sent.push({ jid, text: content.text });
    return { key: { remoteJid: jid, id: `SENT${this.sent.length}`, fromMe: true } };
  }
  async sendPresenceUpdate(type: WAPresence, jid?: string): Promise<void> {
    this.presence.push({ type, jid });
  }
  async groupMetadata(jid: string): Promise<GroupMetadata> {
    const meta = this.groups[jid];
    if (!meta) throw new Error('item-not-found');
    return meta;
  }
  async groupFetchAllParticipating(): Promise<Record<string, GroupMetadata>> {
    return this.groups;
  }
  async updateMediaMessage(message: WAMessage): Promise<WAMessage> {
    return message;
  }
  async requestPairingCode(phone: string): Promise<string> {
    this.pairingCodesAsked.push(phone);
    return 'ABCD1234';
  }
}

function group(id: string, subject: string): GroupMetadata {
  return {
    id,
    subject,
    owner: undefined,
    participants: [{ id: ALICE }, { id: '15550000001@s.whatsapp.net' }],
  };
}

class Recorder implements ChannelHooks {
  readonly states: ChannelState[] = [];
  readonly messages: InboundMessage[] = [];
  readonly chats: ChatMetadata[] = [];
  onMessage(message: InboundMessage): void {
    this.messages.push(message);
  }
  onState(state: ChannelState): void {
    this.states.push(state);
  }
  onChatMetadata(chat: ChatMetadata): void {
    this.chats.push(chat);
  }
  get last(): ChannelState | undefined {
    return this.states[this.states.length - 1];
  }
}

let temp: TempStore;
let sockets: FakeSocket[];
let hooks: Recorder;
let channel: WhatsAppChannel;

function makeChannel(overrides: Partial<WhatsAppChannelDeps> = {}): WhatsAppChannel {
  channel = new WhatsAppChannel({
    store: temp.store,
    config: { waUrl: 'ws://127.0.0.1:1', assistantName: 'Andy' },
    log: silent,
    socketFactory: (options) => {
      const sock = new FakeSocket(options);
      sockets.push(sock);
      return sock;
    },
    random: () => 0,
    ...overrides,
  });
  return channel;
}

/** Stores linked credentials, as a finished pairing leaves them. */
function link(): void {
  const auth = new SqliteAuthState(temp.store.db).load();
  auth.state.creds.me = { id: SELF, name: 'Me' };
  auth.saveCreds();
}

function latest(): FakeSocket {
  const sock = sockets[sockets.length - 1];
  if (!sock) throw new Error('no socket was made');
  return sock;
}

/** Lets promise callbacks (group fetches, inbound handling) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await vi.advanceTimersByTimeAsync(0);
}

async function connectLinked(): Promise<FakeSocket> {
  link();
  await makeChannel().connect(hooks);
  const sock = latest();
  sock.emit('connection.update', { connection: 'open' });
  await settle();
  return sock;
}

function upsert(sock: FakeSocket, message: Record<string, unknown>, type = 'notify'): void {
  sock.emit('messages.upsert', {
    messages: [proto.WebMessageInfo.fromObject(message) as WAMessage],
    type: type as 'notify',
  });
}

beforeEach(() => {
  vi.useFakeTimers();
  temp = tempStore('clawbar-wa-channel-');
  temp.store.addGroup(
    {
      jid: GROUP,
      folder: 'friends',
      name: 'Friends',
      trigger: '@Andy',
      requiresTrigger: true,
      isMain: false,
      channel: 'whatsapp',
    },
    0,
  );
  sockets = [];
  hooks = new Recorder();
});

afterEach(async () => {
  await channel?.disconnect();
  vi.useRealTimers();
  temp.close();
});

describe('the WhatsApp channel: connecting and pairing', () => {
  it('waits for pairing, making no socket, when the account is not linked', async () => {
    await makeChannel().connect(hooks);
    expect(sockets).toHaveLength(0);
    expect(hooks.last).toMatchObject({ state: 'needs-pairing' });
    expect(hooks.last).toHaveProperty('reason', expect.stringMatching(/clawbar pair/));
  });

  it('reports each refreshed QR while pairing, then open', async () => {
    await makeChannel().connect(hooks);
    await channel.pair();
    const sock = latest();
    expect(sock.options.waUrl).toBe('ws://127.0.0.1:1');
    sock.emit('connection.update', { qr: 'QR-1' });
    sock.emit('connection.update', { qr: 'QR-2' });
    expect(hooks.states.filter((s) => s.state === 'qr')).toEqual([
      { state: 'qr', qr: 'QR-1' },
      { state: 'qr', qr: 'QR-2' },
    ]);
    sock.emit('connection.update', { connection: 'open' });
    expect(channel.state).toEqual({ state: 'open' });
  });

  it('asks once for a pairing code for a phone number, and reports it', async () => {
    await makeChannel().connect(hooks);
    await channel.pair({ phoneNumber: '+1 555 000 0001' });
    const sock = latest();
    sock.emit('connection.update', { qr: 'QR-1' });
    sock.emit('connection.update', { qr: 'QR-2' });
    await settle();
    expect(sock.pairingCodesAsked).toEqual(['15550000001']);
    expect(channel.state).toEqual({ state: 'pairing-code', code: 'ABCD1234' });
    await expect(channel.pair({ phoneNumber: 'call me' })).rejects.toThrow(/not a phone number/);
  });

  it('saves credentials on creds.update, so the link survives a restart', async () => {
    await makeChannel().connect(hooks);
    await channel.pair();
    latest().emit('creds.update', { me: { id: SELF, name: 'Me' } });
    expect(new SqliteAuthState(temp.store.db).isRegistered()).toBe(true);
  });

  it('reconnects at once after 515, ending the old socket and dropping its listeners', async () => {
    await makeChannel().connect(hooks);
    await channel.pair();
    const first = latest();
    first.emit('creds.update', { me: { id: SELF } });
    first.emit('connection.update', {
      connection: 'close',
      lastDisconnect: { error: boom('restart required', 515), date: new Date() },
    });
    await settle();
    expect(sockets).toHaveLength(2);
    expect(first.ended).toBe(1);
    expect(first.listeners).toBe(0);
    expect(latest().listeners).toBeGreaterThan(0);
    // A late event from the dead socket changes nothing.
    first.emit('connection.update', { connection: 'open' });
    expect(channel.state).toEqual({ state: 'connecting' });
    expect(channel.lastDisconnect).toMatchObject({ code: 515 });
  });

  it('refuses to pair while linked and open', async () => {
    await connectLinked();
    await expect(channel.pair()).rejects.toThrow(/already linked/);
    expect(sockets).toHaveLength(1);
  });

  it('never holds two sockets: pairing again ends the current one first', async () => {
    link();
    await makeChannel().connect(hooks);
    const first = latest();
    await channel.pair();
    expect(sockets).toHaveLength(2);
    expect(first.ended).toBe(1);
    expect(first.listeners).toBe(0);
  });

  it('backs off after a transient close, and reconnects when the wait is over', async () => {
    const first = await connectLinked();
    first.emit('connection.update', {
      connection: 'close',
      lastDisconnect: { error: boom('Connection Closed', 428), date: new Date() },
    });
    expect(channel.state).toMatchObject({ state: 'closed', code: 428, retrying: true });
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(499);
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(2);
    expect(channel.state).toEqual({ state: 'connecting' });
  });

  it('makes a bounded number of attempts a minute while the connection keeps dropping', async () => {
    await connectLinked();
    for (let t = 0; t < 60_000; t += 100) {
      const sock = latest();
      if (sock.listeners > 0 && sock.ended === 0) {
        sock.emit('connection.update', {
          connection: 'close',
          lastDisconnect: { error: boom('lost', 408), date: new Date() },
        });
      }
      await vi.advanceTimersByTimeAsync(100);
    }
    // The first socket, then waits of at least 0.5, 1, 2, 4, 8, 16 and 30 s.
    expect(channel.connectionAttempts).toBeLessThanOrEqual(8);
    expect(channel.connectionAttempts).toBeGreaterThanOrEqual(6);
  });

  it('clears a pending reconnect on disconnect', async () => {
    const first = await connectLinked();
    first.emit('connection.update', {
      connection: 'close',
      lastDisconnect: { error: boom('lost', 408), date: new Date() },
    });
    await channel.disconnect();
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(sockets).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
    expect(hooks.last).toEqual({ state: 'closed', reason: 'disconnected', retrying: false });
  });

  it('stops after 440 and says another client took over', async () => {
    const first = await connectLinked();
    first.emit('connection.update', {
      connection: 'close',
      lastDisconnect: { error: boom('replaced', 440), date: new Date() },
    });
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(sockets).toHaveLength(1);
    expect(channel.state).toMatchObject({ state: 'closed', code: 440, retrying: false });
    expect(channel.lastDisconnect?.reason).toMatch(/another WhatsApp Web client took over/);
  });

  it('on 401 clears the credentials and waits for pairing', async () => {
    const first = await connectLinked();
    const auth = new SqliteAuthState(temp.store.db);
    await auth.load().state.keys.set({ session: { a: new Uint8Array([1]) } });
    first.emit('connection.update', {
      connection: 'close',
      lastDisconnect: { error: boom('logged out', 401), date: new Date() },
    });
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(sockets).toHaveLength(1);
    expect(auth.hasCreds()).toBe(false);
    expect(auth.keyCounts()).toEqual({});
    expect(channel.state).toMatchObject({ state: 'needs-pairing', code: 401 });
  });

  it('does not retry a pairing session that ran out', async () => {
    await makeChannel().connect(hooks);
    await channel.pair();
    latest().emit('connection.update', {
      connection: 'close',
      lastDisconnect: { error: boom('QR refs attempts ended', 408), date: new Date() },
    });
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(sockets).toHaveLength(1);
    expect(channel.state).toMatchObject({ state: 'needs-pairing', code: 408 });
  });

  it('unlinks: logs out, wipes the credentials and waits for pairing', async () => {
    const sock = await connectLinked();
    await channel.unlink();
    expect(sock.loggedOut).toBe(1);
    expect(sock.listeners).toBe(0);
    expect(new SqliteAuthState(temp.store.db).hasCreds()).toBe(false);
    expect(channel.state).toMatchObject({ state: 'needs-pairing' });
  });

  it('passes Baileys a group metadata cache filled at connect and by groups.update', async () => {
    const sock = await connectLinked();
    expect(await sock.options.cachedGroupMetadata(GROUP)).toMatchObject({ subject: 'Friends' });
    expect(hooks.chats).toContainEqual(
      expect.objectContaining({ jid: GROUP, name: 'Friends', isGroup: true }),
    );
    sock.emit('groups.update', [{ id: GROUP, subject: 'Best Friends' }]);
    expect(hooks.chats[hooks.chats.length - 1]).toMatchObject({ jid: GROUP, name: 'Best Friends' });
    expect(await channel.chatMetadata(GROUP)).toMatchObject({ name: 'Best Friends' });
  });
});

describe('the WhatsApp channel: messages', () => {
  it('sends with the assistant prefix and returns the id', async () => {
    const sock = await connectLinked();
    const sent = await channel.send({ outboxId: 1, chatJid: GROUP, text: 'hello' });
    expect(sent.id).toBe('SENT1');
    expect(sock.sent).toEqual([{ jid: GROUP, text: 'Andy: hello' }]);
  });

  it('gives each part an id of its own that a resend repeats, also after a restart', async () => {
    const first = await connectLinked();
    await channel.send({ outboxId: 5, chatJid: GROUP, text: 'one' });
    await channel.send({ outboxId: 6, chatJid: GROUP, text: 'two' });
    const [five, six] = first.askedIds;
    expect(five).toMatch(/^3EB0[0-9A-F]{18}$/);
    expect(six).toMatch(/^3EB0[0-9A-F]{18}$/);
    expect(six).not.toBe(five);
    // A new channel on the same database (a restart) sends outbox item 5 again: same id, so
    // WhatsApp and the phones see one message, not two.
    await channel.disconnect();
    const again = await connectLinked();
    await channel.send({ outboxId: 5, chatJid: GROUP, text: 'one' });
    expect(again.askedIds).toEqual([five]);
  });

  it('refuses to send while closed', async () => {
    await makeChannel().connect(hooks);
    await expect(channel.send({ outboxId: 1, chatJid: GROUP, text: 'x' })).rejects.toThrow(
      /not connected/,
    );
  });

  it('splits a long reply, and a retry after a failed part resumes without repeating', async () => {
    link();
    await makeChannel({ splitText: (text) => text.split('|') }).connect(hooks);
    const sock = latest();
    sock.emit('connection.update', { connection: 'open' });
    sock.failSendAt = 1;
    await expect(channel.send({ outboxId: 7, chatJid: ALICE, text: 'a|b|c' })).rejects.toThrow(
      /hiccup/,
    );
    sock.failSendAt = null;
    const sent = await channel.send({ outboxId: 7, chatJid: ALICE, text: 'a|b|c' });
    expect(sock.sent.map((s) => s.text)).toEqual(['Andy: a', 'Andy: b', 'Andy: c']);
    expect(sent.id).toBe('SENT3');
  });

  it('shows typing and clears it, and never rejects for a closed channel', async () => {
    const sock = await connectLinked();
    await channel.setTyping(GROUP, true);
    await channel.setTyping(GROUP, false);
    expect(sock.presence).toEqual([
      { type: 'composing', jid: GROUP },
      { type: 'paused', jid: GROUP },
    ]);
    await channel.disconnect();
    await expect(channel.setTyping(GROUP, true)).resolves.toBeUndefined();
  });

  it('hands a registered group message to the core once, however often it is delivered', async () => {
    const sock = await connectLinked();
    const message = {
      key: { remoteJid: GROUP, id: 'IN1', participant: ALICE },
      pushName: 'Alice',
      messageTimestamp: 1_700_000_000,
      message: { conversation: '@Andy hi' },
    };
    upsert(sock, message);
    upsert(sock, message);
    upsert(sock, message, 'append');
    await settle();
    expect(hooks.messages).toHaveLength(1);
    expect(hooks.messages[0]).toMatchObject({
      channel: 'whatsapp',
      chatJid: GROUP,
      chatName: 'Friends',
      isGroup: true,
      id: 'IN1',
      sender: ALICE,
      senderName: 'Alice',
      text: '@Andy hi',
      timestamp: 1_700_000_000_000,
    });
  });

  it('records only the name and last activity of an unregistered chat, not its messages', async () => {
    const sock = await connectLinked();
    upsert(sock, {
      key: { remoteJid: ALICE, id: 'DM1' },
      pushName: 'Alice',
      messageTimestamp: 1_700_000_000,
      message: { conversation: 'hello?' },
    });
    await settle();
    expect(hooks.messages).toHaveLength(0);
    expect(hooks.chats).toContainEqual({
      jid: ALICE,
      name: 'Alice',
      isGroup: false,
      participants: [],
      lastActivity: 1_700_000_000_000,
    });
  });

  it('ignores status broadcasts and other upsert types', async () => {
    const sock = await connectLinked();
    upsert(sock, {
      key: { remoteJid: 'status@broadcast', id: 'S' },
      message: { conversation: 'x' },
    });
    upsert(
      sock,
      { key: { remoteJid: GROUP, id: 'OLD', participant: ALICE }, message: { conversation: 'x' } },
      'history',
    );
    await settle();
    expect(hooks.messages).toHaveLength(0);
  });

  it('marks the echo of a message it sent as the bot', async () => {
    const sock = await connectLinked();
    const sent = await channel.send({ outboxId: 3, chatJid: GROUP, text: 'done' });
    upsert(sock, {
      key: { remoteJid: GROUP, id: sent.id, fromMe: true, participant: SELF },
      message: { conversation: 'Andy: done' },
    });
    await settle();
    expect(hooks.messages[0]).toMatchObject({ fromMe: true, fromBot: true, senderName: 'Andy' });
  });

  it('saves media of a registered group through the hook and names it in the text', async () => {
    const saveMedia = vi.fn<SaveMedia>(async () => ({
      relativePath: 'inbox/2026-01-01-abc.jpg',
      bytes: 10,
    }));
    link();
    await makeChannel({ saveMedia }).connect(hooks);
    const sock = latest();
    sock.emit('connection.update', { connection: 'open' });
    upsert(sock, {
      key: { remoteJid: GROUP, id: 'IMG', participant: ALICE },
      message: { imageMessage: { caption: '@Andy what is this', mimetype: 'image/jpeg' } },
    });
    upsert(sock, {
      key: { remoteJid: OTHER_GROUP, id: 'IMG2', participant: ALICE },
      message: { imageMessage: { caption: 'not ours' } },
    });
    await settle();
    expect(saveMedia).toHaveBeenCalledTimes(1);
    const request = saveMedia.mock.calls[0]![0];
    expect(request.group).toMatchObject({ jid: GROUP, folder: 'friends' });
    expect(request.media).toMatchObject({ kind: 'image', mimetype: 'image/jpeg' });
    expect(request.message.key.id).toBe('IMG');
    expect(typeof request.download).toBe('function');
    expect(hooks.messages).toHaveLength(1);
    expect(hooks.messages[0]).toMatchObject({
      text: '@Andy what is this\n[image inbox/2026-01-01-abc.jpg]',
      mediaRef: 'inbox/2026-01-01-abc.jpg',
    });
  });

  it('still stores the message when saving its media fails', async () => {
    link();
    await makeChannel({
      saveMedia: async () => {
        throw new Error('disk full');
      },
    }).connect(hooks);
    const sock = latest();
    sock.emit('connection.update', { connection: 'open' });
    upsert(sock, {
      key: { remoteJid: GROUP, id: 'V1', participant: ALICE },
      message: { audioMessage: { ptt: true } },
    });
    await settle();
    expect(hooks.messages[0]).toMatchObject({
      text: '[voice note not saved: it could not be saved]',
      mediaRef: null,
    });
  });
});

describe('the WhatsApp channel over a real Baileys socket', () => {
  it('backs off, without throwing, when nothing listens at the WhatsApp URL', async () => {
    vi.useRealTimers();
    link();
    const net = await import('node:net');
    // A port that was just free: connecting to it is refused.
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer();
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    channel = new WhatsAppChannel({
      store: temp.store,
      config: { waUrl: `ws://127.0.0.1:${port}`, assistantName: 'Andy' },
      log: silent,
      random: () => 0,
    });
    const closed = new Promise<ChannelState>((resolve) => {
      hooks.onState = (state) => {
        hooks.states.push(state);
        if (state.state === 'closed') resolve(state);
      };
    });
    await channel.connect(hooks);
    expect(hooks.states[0]).toEqual({ state: 'connecting' });
    expect(await closed).toMatchObject({ state: 'closed', retrying: true });
    expect(channel.lastDisconnect?.reason).toBeTruthy();
    await channel.disconnect();
    expect(channel.connectionAttempts).toBe(1);
  });
});

describe('the LRU behind dedupe and the key cache', () => {
  it('keeps the most recently used entries up to its capacity', () => {
    const lru = new LruMap<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1);
    lru.set('c', 3);
    expect(lru.has('b')).toBe(false);
    expect(lru.has('a')).toBe(true);
    expect(lru.size).toBe(2);
    expect(() => new LruMap(0)).toThrow(RangeError);
  });
});

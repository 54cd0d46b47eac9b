/**
 * The real Baileys socket (`makeWASocket`, @whiskeysockets/baileys 7.0.0-rc14) against the fake
 * WhatsApp server in test/fakes/whatsapp: pairing, restart, stream errors, and encrypted
 * messages both ways.
 */
import {
  DisconnectReason,
  downloadMediaMessage,
  initAuthCreds,
  makeWASocket,
  type AuthenticationCreds,
  type ConnectionState,
  type SignalKeyStore,
  type WAMessage,
  type WASocket,
} from '@whiskeysockets/baileys';
import { afterEach, describe, expect, it } from 'vitest';
import { makeMemoryKeyStore, silentLogger } from '../fakes/whatsapp/contact.js';
import { checkMediaBlob, downloadVerifiedMedia, sha256 } from '../fakes/whatsapp/media.js';
import { startFakeWhatsApp, type FakeWhatsApp } from '../fakes/whatsapp/server.js';

type AuthState = { creds: AuthenticationCreds; keys: SignalKeyStore };

/** One Baileys socket with its events recorded, so tests can wait on them. */
type Client = {
  sock: WASocket;
  updates: Partial<ConnectionState>[];
  messages: WAMessage[];
  /** Subjects from `groups.update`, in order. */
  subjects: string[];
  waitFor(predicate: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Resolves with the status code of the close, once the socket has closed. */
  closed(): Promise<number | undefined>;
};

const openSockets = new Set<WASocket>();
let fake: FakeWhatsApp | undefined;

afterEach(async () => {
  for (const sock of openSockets) sock.end(undefined);
  openSockets.clear();
  const errors = fake?.protocolErrors() ?? [];
  await fake?.close();
  fake = undefined;
  // A fake that failed to decrypt or parse something must fail the test that caused it.
  expect(errors.map((e) => e.message)).toEqual([]);
});

function connect(server: FakeWhatsApp, auth: AuthState): Client {
  const sock = makeWASocket({
    waWebSocketUrl: server.url,
    auth,
    logger: silentLogger,
    // The fake sends no history sync; without this Baileys buffers events 20 s after first login.
    shouldSyncHistoryMessage: () => false,
    markOnlineOnConnect: false,
  });
  openSockets.add(sock);
  const updates: Partial<ConnectionState>[] = [];
  const messages: WAMessage[] = [];
  const listeners = new Set<() => void>();
  const wake = () => {
    for (const listener of [...listeners]) listener();
  };
  sock.ev.on('creds.update', (update) => {
    Object.assign(auth.creds, update);
  });
  sock.ev.on('connection.update', (update) => {
    updates.push(update);
    if (update.connection === 'close') openSockets.delete(sock);
    wake();
  });
  sock.ev.on('messages.upsert', ({ messages: batch }) => {
    messages.push(...batch);
    wake();
  });
  const subjects: string[] = [];
  sock.ev.on('groups.update', (batch) => {
    for (const update of batch) if (update.subject) subjects.push(update.subject);
    wake();
  });
  const waitFor = (predicate: () => boolean, what: string, timeoutMs = 15_000) =>
    new Promise<void>((resolve, reject) => {
      if (predicate()) return resolve();
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        listeners.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`timed out waiting for ${what}; updates: ${JSON.stringify(updates)}`));
      }, timeoutMs);
      listeners.add(check);
    });
  const closeCode = () => {
    const close = updates.find((u) => u.connection === 'close');
    return (close?.lastDisconnect?.error as { output?: { statusCode?: number } } | undefined)
      ?.output?.statusCode;
  };
  return {
    sock,
    updates,
    messages,
    subjects,
    waitFor,
    closed: async () => {
      await waitFor(() => updates.some((u) => u.connection === 'close'), 'connection close');
      return closeCode();
    },
  };
}

const isOpen = (client: Client) => () => client.updates.some((u) => u.connection === 'open');

/** Pairs a fresh auth state by QR and reconnects after the 515, as an app would; returns the open client. */
async function pairAndOpen(server: FakeWhatsApp): Promise<{ auth: AuthState; client: Client }> {
  const auth: AuthState = { creds: initAuthCreds(), keys: makeMemoryKeyStore() };
  const first = connect(server, auth);
  await first.waitFor(() => first.updates.some((u) => u.qr), 'a QR');
  const qr = first.updates.find((u) => u.qr)!.qr!;
  await server.scanQr(qr);
  expect(await first.closed()).toBe(DisconnectReason.restartRequired);
  const client = connect(server, auth);
  await client.waitFor(isOpen(client), 'connection open');
  return { auth, client };
}

describe('the real Baileys socket against the fake WhatsApp server', () => {
  it('pairs by QR and reaches open, then reopens from the stored creds without a QR', async () => {
    fake = await startFakeWhatsApp();
    const { auth, client } = await pairAndOpen(fake);
    expect(auth.creds.me?.id).toBe('15550001111:1@s.whatsapp.net');
    expect(auth.creds.me?.lid).toBe('100000000000001:1@lid');
    expect(fake.connections.map((c) => c.kind)).toEqual(['registration', 'login']);

    client.sock.end(undefined);
    await client.closed();
    const restarted = connect(fake, auth);
    await restarted.waitFor(isOpen(restarted), 'open after restart');
    expect(restarted.updates.some((u) => u.qr)).toBe(false);
    expect(fake.connectionCount).toBe(3);
  });

  it('closes with restartRequired on stream error 515, and a new socket opens again', async () => {
    fake = await startFakeWhatsApp();
    const { auth, client } = await pairAndOpen(fake);
    fake.sendStreamError(515);
    expect(await client.closed()).toBe(DisconnectReason.restartRequired);
    const again = connect(fake, auth);
    await again.waitFor(isOpen(again), 'open after 515');
  });

  it('reports connectionReplaced for 440 and loggedOut for 401, and refuses the logged-out creds', async () => {
    fake = await startFakeWhatsApp();
    const { auth, client } = await pairAndOpen(fake);
    fake.sendStreamError(440);
    expect(await client.closed()).toBe(DisconnectReason.connectionReplaced);

    const second = connect(fake, auth);
    await second.waitFor(isOpen(second), 'open after 440');
    fake.logOut();
    expect(await second.closed()).toBe(DisconnectReason.loggedOut);

    const third = connect(fake, auth);
    expect(await third.closed()).toBe(DisconnectReason.loggedOut);
    expect(third.updates.some((u) => u.connection === 'open')).toBe(false);
  });

  it('sees a dropped socket as connectionClosed and records each connection', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    fake.dropSocket();
    expect(await client.closed()).toBe(DisconnectReason.connectionClosed);
    expect(fake.connections).toHaveLength(2);
    expect(fake.connections.every((c) => c.closedAt instanceof Date)).toBe(true);
  });
});

const textOf = (m: WAMessage) => m.message?.conversation ?? m.message?.extendedTextMessage?.text;

describe('messages through the fake WhatsApp server', () => {
  it('delivers encrypted DMs (pkmsg until the device answers) as messages.upsert with their text', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const alice = await fake.addContact({ phone: '15550002222', pushName: 'Alice' });
    const first = await fake.deliverText({ from: alice, text: 'hello from alice' });
    const second = await fake.deliverText({ from: alice, text: 'second one' });
    await client.waitFor(() => client.messages.length >= 2, 'two messages');
    expect(client.messages.map((m) => [m.key.id, m.key.remoteJid, textOf(m)])).toEqual([
      [first, alice.jid, 'hello from alice'],
      [second, alice.jid, 'second one'],
    ]);
    expect(client.messages[0]!.pushName).toBe('Alice');
  });

  it('decrypts with the fake contact what the app sends with sendMessage', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const bob = await fake.addContact({ phone: '15550003333' });
    const sent = await client.sock.sendMessage(bob.jid, { text: 'hi bob' });
    const entry = await fake.waitForOutbox((e) => e.id === sent?.key.id);
    expect(entry).toMatchObject({ chatJid: bob.jid, text: 'hi bob', decryptedBy: bob.jid });

    // A reply after the contact wrote first continues the same session.
    await fake.deliverText({ from: bob, text: 'ping' });
    await client.waitFor(() => client.messages.some((m) => textOf(m) === 'ping'), 'ping');
    const reply = await client.sock.sendMessage(bob.jid, { text: 'pong' });
    expect((await fake.waitForOutbox((e) => e.id === reply?.key.id)).text).toBe('pong');
  });

  it('hands a duplicate delivery of one message id to the app with the same id', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const carol = await fake.addContact({ phone: '15550004444' });
    await fake.deliverText({ from: carol, text: 'once', id: 'DUP1' });
    await fake.deliverText({ from: carol, text: 'once', id: 'DUP1' });
    await fake.deliverText({ from: carol, text: 'marker' });
    await client.waitFor(() => client.messages.some((m) => textOf(m) === 'marker'), 'marker');
    // Baileys does not dedupe: both copies reach messages.upsert, which is why the channel must.
    const dupes = client.messages.filter((m) => m.key.id === 'DUP1');
    expect(dupes).toHaveLength(2);
    expect(dupes.every((m) => textOf(m) === 'once')).toBe(true);
  });

  it('delivers a plaintext message and a LID-addressed message with the phone jid as alt', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const dave = await fake.addContact({ phone: '15550005555', lid: '90000000000005' });
    await fake.deliverText({ from: dave, text: 'plain', encryption: 'plaintext' });
    await fake.deliverText({ from: dave, text: 'via lid', senderAddressing: 'lid' });
    await client.waitFor(() => client.messages.length >= 2, 'two messages');
    const plain = client.messages.find((m) => textOf(m) === 'plain');
    const lid = client.messages.find((m) => textOf(m) === 'via lid');
    expect(plain?.key.remoteJid).toBe(dave.jid);
    expect(lid?.key.remoteJid).toBe(dave.lidJid);
    expect(lid?.key.remoteJidAlt).toBe(dave.jid);
  });

  it('delivers a group message (skmsg) and answers group metadata, subject changes and group sends', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const erin = await fake.addContact({ phone: '15550006666' });
    const group = fake.createGroup({ subject: 'Team', participants: [erin] });

    await fake.deliverText({ from: erin, group, text: '@bot status?' });
    await client.waitFor(
      () => client.messages.some((m) => textOf(m) === '@bot status?'),
      'group message',
    );
    const inbound = client.messages.find((m) => textOf(m) === '@bot status?')!;
    expect(inbound.key).toMatchObject({ remoteJid: group, participant: erin.jid });

    const meta = await client.sock.groupMetadata(group);
    expect(meta.subject).toBe('Team');
    expect(meta.participants.map((p) => p.id)).toContain(erin.jid);

    fake.setGroupSubject(group, 'Team renamed');
    await client.waitFor(() => client.subjects.includes('Team renamed'), 'groups.update');

    const sent = await client.sock.sendMessage(group, { text: 'all fine' });
    const entry = await fake.waitForOutbox((e) => e.id === sent?.key.id);
    expect(entry).toMatchObject({ chatJid: group, text: 'all fine', decryptedBy: erin.jid });
  });
});

/** A 1 KiB-plus file of varied bytes (many AES blocks), different for each `seed`. */
const sampleBytes = (seed: number, length = 1500) =>
  Buffer.from(Array.from({ length }, (_, i) => (i * 31 + seed * 17) % 256));

describe('media through the fake WhatsApp server', () => {
  /** Waits for the message with this id and returns it. */
  const received = async (client: Client, id: string) => {
    await client.waitFor(() => client.messages.some((m) => m.key.id === id), `message ${id}`);
    return client.messages.find((m) => m.key.id === id)!;
  };

  it('delivers an image with a caption and a voice note whose bytes downloadMediaMessage returns exactly', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const grace = await fake.addContact({ phone: '15550008888' });
    const group = fake.createGroup({ subject: 'Photos', participants: [grace] });
    const photo = sampleBytes(1, 5000);
    const voice = sampleBytes(2, 1200);

    const image = await fake.deliverMedia({
      from: grace,
      group,
      kind: 'image',
      bytes: photo,
      mimetype: 'image/jpeg',
      caption: 'the whiteboard',
    });
    const note = await fake.deliverMedia({
      from: grace,
      kind: 'audio',
      bytes: voice,
      mimetype: 'audio/ogg; codecs=opus',
    });

    const imageMsg = await received(client, image.id);
    expect(imageMsg.key).toMatchObject({ remoteJid: group, participant: grace.jid });
    expect(imageMsg.message?.imageMessage).toMatchObject({
      caption: 'the whiteboard',
      mimetype: 'image/jpeg',
      url: image.url,
    });
    expect(Number(imageMsg.message?.imageMessage?.fileLength)).toBe(photo.length);
    const noteMsg = await received(client, note.id);
    expect(noteMsg.key.remoteJid).toBe(grace.jid);
    expect(noteMsg.message?.audioMessage).toMatchObject({
      ptt: true,
      mimetype: 'audio/ogg; codecs=opus',
    });

    expect((await downloadMediaMessage(imageMsg, 'buffer', {})).equals(photo)).toBe(true);
    expect((await downloadMediaMessage(noteMsg, 'buffer', {})).equals(voice)).toBe(true);
    // The blob is real WhatsApp media: its hash and MAC check out against the message.
    const served = Buffer.from(await (await fetch(image.url)).arrayBuffer());
    const check = await checkMediaBlob(
      served,
      {
        mediaKey: imageMsg.message!.imageMessage!.mediaKey!,
        fileEncSha256: imageMsg.message!.imageMessage!.fileEncSha256!,
      },
      'image',
    );
    expect(check).toBeUndefined();
    expect(fake.mediaRequests().map((r) => [r.status, r.headers.origin])).toEqual([
      [200, 'https://web.whatsapp.com'],
      [200, 'https://web.whatsapp.com'],
      [200, undefined],
    ]);
  });

  it("Baileys' download checks neither MAC nor fileSha256: a tampered blob is returned, not refused", async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const hank = await fake.addContact({ phone: '15550009999' });
    const bytes = sampleBytes(3);
    const badMac = await fake.deliverMedia({
      from: hank,
      kind: 'image',
      bytes,
      mimetype: 'image/png',
      blob: 'bad-mac',
    });
    const badBody = await fake.deliverMedia({
      from: hank,
      kind: 'document',
      bytes,
      mimetype: 'application/pdf',
      fileName: 'report.pdf',
      blob: 'bad-body',
    });
    const missing = await fake.deliverMedia({
      from: hank,
      kind: 'video',
      bytes,
      mimetype: 'video/mp4',
      blob: 'missing',
    });

    // These pin down Baileys rc14's behaviour, which is why the channel must check the download
    // itself (downloadVerifiedMedia below). If Baileys starts refusing them, these fail and the
    // channel's own check can be revisited.
    const macMsg = await received(client, badMac.id);
    expect((await downloadMediaMessage(macMsg, 'buffer', {})).equals(bytes)).toBe(true);
    const bodyMsg = await received(client, badBody.id);
    expect(bodyMsg.message?.documentMessage).toMatchObject({ fileName: 'report.pdf' });
    const garbage = await downloadMediaMessage(bodyMsg, 'buffer', {});
    expect(garbage.equals(bytes)).toBe(false);
    expect(sha256(garbage).equals(Buffer.from(bodyMsg.message!.documentMessage!.fileSha256!))).toBe(
      false,
    );
    const missingMsg = await received(client, missing.id);
    await expect(downloadMediaMessage(missingMsg, 'buffer', {})).rejects.toMatchObject({
      output: { statusCode: 404 },
    });
  });

  it('a verifying download gets the exact bytes and refuses bad-MAC, tampered, missing and cut blobs', async () => {
    fake = await startFakeWhatsApp();
    const { client } = await pairAndOpen(fake);
    const ivy = await fake.addContact({ phone: '15550001234' });
    const bytes = sampleBytes(4, 3000);
    const limits = { maxBytes: 1024 * 1024, timeoutMs: 10_000 };
    const outcomes: Record<string, string> = {};
    for (const blob of ['intact', 'bad-mac', 'bad-body', 'missing', 'cut'] as const) {
      const sent = await fake.deliverMedia({
        from: ivy,
        kind: 'audio',
        bytes,
        mimetype: 'audio/ogg; codecs=opus',
        blob,
      });
      const media = (await received(client, sent.id)).message!.audioMessage!;
      outcomes[blob] = await downloadVerifiedMedia(media, 'audio', limits).then(
        (plain) => (plain.equals(bytes) ? 'exact bytes' : 'wrong bytes'),
        (err: Error) => err.message,
      );
    }
    expect(outcomes).toMatchObject({
      intact: 'exact bytes',
      'bad-mac': 'the media blob failed its check: MAC mismatch',
      'bad-body': 'the media blob failed its check: MAC mismatch',
      missing: expect.stringMatching(/^the media host answered 404/),
      cut: expect.stringMatching(/^the media download broke off after \d+ bytes$/),
    });

    // Over the size cap: refused while streaming.
    const big = await fake.deliverMedia({
      from: ivy,
      kind: 'image',
      bytes,
      mimetype: 'image/jpeg',
    });
    const bigMedia = (await received(client, big.id)).message!.imageMessage!;
    await expect(
      downloadVerifiedMedia(bigMedia, 'image', { maxBytes: 1000, timeoutMs: 10_000 }),
    ).rejects.toThrow('larger than 1000 bytes');
  });
});

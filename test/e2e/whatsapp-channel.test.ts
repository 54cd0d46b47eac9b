/**
 * The WhatsApp channel end to end: a real Core (real SQLite, the real runner bundle as a child
 * process, the real SDK against the fake Messages API) whose WhatsApp channel drives the REAL
 * Baileys socket against the fake WhatsApp server (test/fakes/whatsapp) on 127.0.0.1.
 *
 * Everything runs in this process: the fake points Baileys' process-wide `WA_CERT_DETAILS` at
 * its test root key, so the channel must share the process with it (a `clawbar serve` child
 * would check the fake's certificate against WhatsApp's real root and refuse it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ChannelState } from '../../main/core/channels/channel.js';
import { SqliteAuthState } from '../../main/core/channels/whatsapp/auth-state.js';
import { whatsappChannelFor } from '../../main/core/channels/whatsapp/boot.js';
import {
  DEFAULT_RECONNECT_POLICY,
  REPLACED_REASON,
  type ReconnectPolicyOptions,
} from '../../main/core/channels/whatsapp/connection-policy.js';
import { WhatsAppChannel } from '../../main/core/channels/whatsapp/whatsapp-channel.js';
import type { Core } from '../../main/core/core.js';
import type { StoredMessage } from '../../main/core/store/index.js';
import { textTurn } from '../fakes/anthropic-api.js';
import type { FakeContact } from '../fakes/whatsapp/contact.js';
import { startFakeWhatsApp, type FakeWhatsApp } from '../fakes/whatsapp/server.js';
import { runnerSuite } from '../helpers/runner-suite.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-whatsapp-e2e';
const suite = runnerSuite(API_KEY);
/** Long enough for a cold runner process and a model turn on a loaded machine. */
const REPLY_TIMEOUT_MS = 20_000;

interface WhatsAppCore extends ProcessCore {
  channel: WhatsAppChannel;
  /** Every state the channel reported, in order. */
  states: ChannelState[];
}

/** Starts the fake WhatsApp server for one test; it is closed after the test. */
async function startFake(): Promise<FakeWhatsApp> {
  const fake = await startFakeWhatsApp();
  suite.defer(() => fake.close());
  return fake;
}

/** A new temp home for cores that share one database (a restart); removed after the test. */
function tempHome(): string {
  const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-wa-e2e-')));
  suite.defer(() => fs.rmSync(home, { recursive: true, force: true }));
  return home;
}

/**
 * Starts a Core whose channels are the local chat and the WhatsApp channel, pointed at the
 * fake. Without `policy` the channel is wired exactly as serve wires it (`whatsappChannelFor`:
 * media saved into `inbox/`, long replies split); with one, it is the bare channel with that
 * reconnect schedule.
 */
async function startCore(
  fake: FakeWhatsApp,
  opts: { home?: string; policy?: Partial<ReconnectPolicyOptions> } = {},
): Promise<WhatsAppCore> {
  let channel: WhatsAppChannel | undefined;
  const made = processCore({
    prefix: 'clawbar-wa-e2e-',
    api: { url: suite.fake.url, apiKey: API_KEY },
    config: { waUrl: fake.url, idleTimeoutMs: 30_000 },
    ...(opts.home ? { home: opts.home } : {}),
    channel: ({ store, config, log }) => {
      if (opts.policy) {
        channel = new WhatsAppChannel({ store, config, log, policy: opts.policy });
        return { channel };
      }
      const wired = whatsappChannelFor({ store, config, log });
      channel = wired.channel;
      return wired;
    },
  });
  suite.defer(made.close);
  const states: ChannelState[] = [];
  made.core.events.on('channel:state', (e) => {
    if (e.channel === 'whatsapp') states.push(e.state);
  });
  await made.core.start();
  return { ...made, channel: channel!, states };
}

/** Resolves with the channel's state once `predicate` holds for it (now or later). */
function waitForState<S extends ChannelState>(
  made: WhatsAppCore,
  predicate: (state: ChannelState) => state is S,
  what: string,
  timeoutMs?: number,
): Promise<S>;
function waitForState(
  made: WhatsAppCore,
  predicate: (state: ChannelState) => boolean,
  what: string,
  timeoutMs?: number,
): Promise<ChannelState>;
function waitForState(
  made: WhatsAppCore,
  predicate: (state: ChannelState) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<ChannelState> {
  if (predicate(made.channel.state)) return Promise.resolve(made.channel.state);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(
          `WhatsApp never reached ${what} within ${timeoutMs} ms; states: ${JSON.stringify(made.states)}`,
        ),
      );
    }, timeoutMs);
    const off = made.core.events.on('channel:state', (e) => {
      if (e.channel !== 'whatsapp' || !predicate(e.state)) return;
      clearTimeout(timer);
      off();
      resolve(e.state);
    });
  });
}

const isQr = (s: ChannelState): s is Extract<ChannelState, { state: 'qr' }> => s.state === 'qr';
const isOpen = (s: ChannelState) => s.state === 'open';

/** Resolves with the first message stored from now on that matches `predicate`. */
function nextStored(
  core: Core,
  predicate: (message: StoredMessage) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<StoredMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no stored message ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = core.events.on('message:stored', (e) => {
      if (!predicate(e.message)) return;
      clearTimeout(timer);
      off();
      resolve(e.message);
    });
  });
}

/** Links the core's WhatsApp channel by QR, as `clawbar pair` does, and waits for `open`. */
async function pairByQr(made: WhatsAppCore, fake: FakeWhatsApp): Promise<void> {
  const qr = waitForState(made, isQr, 'a QR');
  // The bare channel (a test's own reconnect policy) has no control: pair it directly.
  await (made.core.whatsapp ? made.core.whatsapp.startPairing({}) : made.channel.pair());
  await fake.scanQr((await qr).qr);
  await waitForState(made, isOpen, 'open');
}

/** A paired core with a registered WhatsApp group that `alice` is in. */
async function pairedGroup(
  opts: { policy?: Partial<ReconnectPolicyOptions> } = {},
): Promise<{ fake: FakeWhatsApp; made: WhatsAppCore; alice: FakeContact; groupJid: string }> {
  const fake = await startFake();
  const made = await startCore(fake, opts);
  await pairByQr(made, fake);
  const alice = await fake.addContact({ phone: '15550002222', pushName: 'Alice' });
  // An 18-digit id, as WhatsApp's own group jids have (120363…@g.us).
  const groupJid = fake.createGroup({
    subject: 'Family',
    participants: [alice],
    id: `120363${String(Date.now()).slice(-12)}`,
  });
  made.core.addGroup({ name: 'Family', jid: groupJid });
  return { fake, made, alice, groupJid };
}

/** Resolves after `ms`: a window in which something must NOT happen. */
function quietWindow(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How many texts the fake's contacts decrypted with exactly this text. */
function outboxCount(fake: FakeWhatsApp, text: string): number {
  return fake.outbox().filter((entry) => entry.text === text).length;
}

describe('the WhatsApp channel against the fake WhatsApp server', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('pairs by QR to open, and after a restart reconnects from the stored credentials with no QR', async () => {
    const fake = await startFake();
    const home = tempHome();
    const first = await startCore(fake, { home });
    expect(first.channel.state.state).toBe('needs-pairing');
    expect(fake.connectionCount).toBe(0); // not linked: no socket until asked to pair

    await pairByQr(first, fake);
    expect(first.states.map((s) => s.state)).toContain('qr');
    expect(fake.connections.map((c) => c.kind)).toEqual(['registration', 'login']);
    expect(new SqliteAuthState(first.store.db).isRegistered()).toBe(true);
    await first.close();

    const second = await startCore(fake, { home });
    await waitForState(second, isOpen, 'open after the restart');
    expect(second.states.map((s) => s.state)).not.toContain('qr');
    expect(second.states.map((s) => s.state)).not.toContain('needs-pairing');
    expect(fake.connections.map((c) => c.kind)).toEqual(['registration', 'login', 'login']);
    expect(fake.protocolErrors()).toEqual([]);
  });

  it('answers a triggered group message with a reply the contact decrypts, carrying the assistant-name prefix', async () => {
    const { fake, made, alice, groupJid } = await pairedGroup();
    suite.fake.script([textTurn('Hello from the agent')]);
    const stored = nextStored(made.core, (m) => m.chatJid === groupJid, 'in the group');
    const id = await fake.deliverText({
      from: alice,
      group: groupJid,
      text: '@Andy are you there?',
    });

    const reply = await fake.waitForOutbox(
      (entry) =>
        entry.chatJid === groupJid && entry.text?.endsWith('Hello from the agent') === true,
      REPLY_TIMEOUT_MS,
    );
    expect(reply.text).toBe('Andy: Hello from the agent');
    expect(await stored).toMatchObject({
      id,
      sender: alice.jid,
      senderName: 'Alice',
      text: '@Andy are you there?',
    });
    expect(suite.fake.requests).toHaveLength(1);
    expect(fake.protocolErrors()).toEqual([]);
  });

  it('delivers a reply made while disconnected exactly once after the reconnect', async () => {
    // A slow first reconnect (at least 1.5 s) so the reply is surely made while disconnected.
    const { fake, made, alice, groupJid } = await pairedGroup({ policy: { baseDelayMs: 3_000 } });
    suite.fake.script([
      textTurn('Made while offline', { delayMs: 300 }),
      textTurn('Second answer'),
    ]);
    const atTurnEnd: Array<{ state: string; undelivered: number }> = [];
    made.core.events.on('turn:finished', (e) => {
      if (e.groupJid !== groupJid) return;
      atTurnEnd.push({
        state: made.channel.state.state,
        undelivered: made.core.undelivered(groupJid).length,
      });
    });
    await fake.deliverText({ from: alice, group: groupJid, text: '@Andy tell me something' });
    await suite.fake.waitForRequests(1);
    fake.dropSocket(); // while the model is still answering
    await waitForState(made, (s) => s.state === 'closed' && s.retrying, 'closed and retrying');

    await fake.waitForOutbox(
      (entry) => entry.text === 'Andy: Made while offline',
      REPLY_TIMEOUT_MS,
    );
    // The premise: the reply was committed while the channel was down, and waited in the outbox.
    expect(atTurnEnd[0]).toEqual({ state: 'closed', undelivered: 1 });
    expect(fake.connections.map((c) => c.kind)).toEqual(['registration', 'login', 'login']);

    // A later reply in the same chat is a barrier: the outbox sends a chat's items in order.
    await fake.deliverText({ from: alice, group: groupJid, text: '@Andy and another?' });
    await fake.waitForOutbox((entry) => entry.text === 'Andy: Second answer', REPLY_TIMEOUT_MS);
    expect(outboxCount(fake, 'Andy: Made while offline')).toBe(1);
    expect(made.core.undelivered(groupJid)).toEqual([]);
    expect(fake.protocolErrors()).toEqual([]);
  });

  it('keeps reconnect attempts under repeated drops within the backoff bound', async () => {
    // The default schedule scaled down 100 times: one simulated minute is 600 ms.
    const scale = 100;
    const policy: ReconnectPolicyOptions = {
      baseDelayMs: DEFAULT_RECONNECT_POLICY.baseDelayMs / scale,
      maxDelayMs: DEFAULT_RECONNECT_POLICY.maxDelayMs / scale,
      stableAfterMs: DEFAULT_RECONNECT_POLICY.stableAfterMs / scale,
      maxImmediateRestarts: DEFAULT_RECONNECT_POLICY.maxImmediateRestarts,
    };
    const minuteMs = 60_000 / scale;
    const fake = await startFake();
    const made = await startCore(fake, { policy });
    await pairByQr(made, fake);
    const before = fake.connectionCount;

    // Every connection is cut the moment it opens, for ten simulated minutes.
    let dropping = true;
    made.core.events.on('channel:state', (e) => {
      if (dropping && e.channel === 'whatsapp' && e.state.state === 'open') fake.dropSocket();
    });
    fake.dropSocket();
    await quietWindow(10 * minuteMs);
    dropping = false;
    const attempts = fake.connections.slice(before).map((c) => c.openedAt.getTime());

    // The most attempts the schedule allows in a window, if every connection failed at once:
    // each wait is at least half its capped exponential step ("equal jitter").
    const floors = (n: number) =>
      Array.from(
        { length: n },
        (_, i) => Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** i) / 2,
      );
    const maxAttemptsWithin = (windowMs: number): number => {
      let count = 1;
      let elapsed = 0;
      for (const floor of floors(1_000)) {
        elapsed += floor;
        if (elapsed > windowMs) break;
        count += 1;
      }
      return count;
    };
    const busiestMinute = Math.max(
      ...attempts.map((start) => attempts.filter((t) => t >= start && t < start + minuteMs).length),
    );
    expect(attempts.length).toBeGreaterThanOrEqual(3); // it does keep trying
    expect(attempts.length).toBeLessThanOrEqual(maxAttemptsWithin(10 * minuteMs) + 1);
    expect(busiestMinute).toBeLessThanOrEqual(maxAttemptsWithin(minuteMs));
    // Never two sockets at once: each attempt starts after the previous one closed.
    const records = fake.connections.slice(before);
    for (let i = 1; i < records.length; i++) {
      const previousClosed = records[i - 1]?.closedAt?.getTime();
      expect(previousClosed).toBeDefined();
      expect(records[i]!.openedAt.getTime()).toBeGreaterThanOrEqual(previousClosed!);
    }
    console.info(
      `[whatsapp backoff] ${attempts.length} attempts in 10 simulated minutes; busiest minute ${busiestMinute} (bound ${maxAttemptsWithin(minuteMs)})`,
    );
    await waitForState(made, isOpen, 'open once the drops stop');
    expect(fake.protocolErrors()).toEqual([]);
  });

  it('on 401 wipes the credentials, reports needs-pairing, stays up and stops connecting', async () => {
    const exit = vi.spyOn(process, 'exit').mockImplementation((code) => {
      throw new Error(`process.exit(${String(code)}) called`);
    });
    const { fake, made } = await pairedGroup();
    const before = fake.connectionCount;
    fake.logOut();
    const state = await waitForState(made, (s) => s.state === 'needs-pairing', 'needs-pairing');
    expect(state).toMatchObject({ state: 'needs-pairing', code: 401 });
    expect(made.core.whatsapp?.lastDisconnect()).toMatchObject({ code: 401 });
    const auth = new SqliteAuthState(made.store.db);
    expect(auth.hasCreds()).toBe(false);
    expect(Object.values(auth.keyCounts()).reduce((a, b) => a + b, 0)).toBe(0);

    // Longer than the first backoff steps: a reconnect would have come by now.
    await quietWindow(2_500);
    expect(fake.connectionCount).toBe(before);
    expect(made.channel.state.state).toBe('needs-pairing');
    expect(exit).not.toHaveBeenCalled();
    // The core lives on: the local chat still takes messages.
    const local = made.core.addGroup({ name: 'Local' });
    expect(made.core.postLocal(local.jid, 'Me', 'still here').message.text).toBe('still here');
    expect(fake.protocolErrors()).toEqual([]);
  });

  it('on 440 stops reconnecting and says another client took over', async () => {
    const { fake, made } = await pairedGroup();
    const before = fake.connectionCount;
    fake.sendStreamError(440);
    const state = await waitForState(made, (s) => s.state === 'closed', 'closed');
    expect(state).toEqual({ state: 'closed', reason: REPLACED_REASON, code: 440, retrying: false });

    await quietWindow(2_500);
    expect(fake.connectionCount).toBe(before);
    expect(made.channel.state).toEqual(state);
    expect(made.core.whatsapp?.lastDisconnect()).toMatchObject({
      code: 440,
      reason: REPLACED_REASON,
    });
    // The credentials are kept: a restart or `clawbar pair` reconnects without a new QR.
    expect(new SqliteAuthState(made.store.db).isRegistered()).toBe(true);
    expect(fake.protocolErrors()).toEqual([]);
  });

  it('stores a LID-addressed sender, in a group and in a direct chat, under the phone jid', async () => {
    const { fake, made, groupJid } = await pairedGroup();
    const bob = await fake.addContact({
      phone: '15550003333',
      lid: '90000000000003',
      pushName: 'Bob',
    });
    made.core.addGroup({ name: 'Bob', jid: bob.jid });

    const inGroup = nextStored(made.core, (m) => m.chatJid === groupJid, 'in the group');
    const groupId = await fake.deliverText({
      from: bob,
      group: groupJid,
      text: 'hello from a LID',
      senderAddressing: 'lid',
    });
    expect(await inGroup).toMatchObject({ id: groupId, sender: bob.jid, text: 'hello from a LID' });

    const direct = nextStored(made.core, (m) => m.chatJid === bob.jid, 'in the direct chat');
    const directId = await fake.deliverText({
      from: bob,
      text: 'direct from a LID',
      senderAddressing: 'lid',
    });
    expect(await direct).toMatchObject({ id: directId, chatJid: bob.jid, sender: bob.jid });
    expect(bob.jid).toBe('15550003333@s.whatsapp.net');
    expect(made.core.messages(bob.lidJid, 10)).toEqual([]);
    expect(fake.protocolErrors()).toEqual([]);
  });

  it('stores and answers a message delivered twice with one id only once', async () => {
    const { fake, made, alice, groupJid } = await pairedGroup();
    suite.fake.script([textTurn('Answered once'), textTurn('Barrier answer')]);
    const id = 'DUPLICATE0001';
    await fake.deliverText({ from: alice, group: groupJid, id, text: '@Andy only once please' });
    await fake.deliverText({ from: alice, group: groupJid, id, text: '@Andy only once please' });
    await fake.waitForOutbox((entry) => entry.text === 'Andy: Answered once', REPLY_TIMEOUT_MS);
    // And once more after the answer, as a redelivery after a reconnect would come.
    await fake.deliverText({ from: alice, group: groupJid, id, text: '@Andy only once please' });
    // A later message in the same chat: once it is answered, any duplicate was handled before it.
    await fake.deliverText({ from: alice, group: groupJid, text: '@Andy barrier' });
    await fake.waitForOutbox((entry) => entry.text === 'Andy: Barrier answer', REPLY_TIMEOUT_MS);

    const inbound = made.core.messages(groupJid, 50).filter((m) => !m.fromBot);
    expect(inbound.filter((m) => m.id === id)).toHaveLength(1);
    expect(outboxCount(fake, 'Andy: Answered once')).toBe(1);
    expect(suite.fake.requests).toHaveLength(2);
    expect(fake.protocolErrors()).toEqual([]);
  });

  it("saves an image with a caption and a voice note into the group's inbox and names them in the stored messages", async () => {
    const { fake, made, alice, groupJid } = await pairedGroup();
    const group = made.store.getGroup(groupJid)!;
    const inbox = path.join(made.config.groupsDir, group.folder, 'inbox');
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2_000, 7)]);
    const ogg = Buffer.concat([Buffer.from('OggS'), Buffer.alloc(3_000, 9)]);

    const image = nextStored(made.core, (m) => m.chatJid === groupJid, 'for the image');
    const sentImage = await fake.deliverMedia({
      from: alice,
      group: groupJid,
      kind: 'image',
      bytes: jpeg,
      mimetype: 'image/jpeg',
      caption: 'look at this',
    });
    const storedImage = await image;
    expect(storedImage.id).toBe(sentImage.id);
    expect(storedImage.text).toMatch(/^look at this\n\[image (inbox\/[\w.-]+\.jpg)\]$/);
    const imagePath = /\[image (inbox\/[^\]]+)\]/.exec(storedImage.text)![1]!;
    expect(storedImage.mediaRef).toBe(imagePath);
    expect(fs.readFileSync(path.join(inbox, path.basename(imagePath)))).toEqual(jpeg);

    const voice = nextStored(made.core, (m) => m.chatJid === groupJid, 'for the voice note');
    const sentVoice = await fake.deliverMedia({
      from: alice,
      group: groupJid,
      kind: 'audio',
      bytes: ogg,
      mimetype: 'audio/ogg; codecs=opus',
    });
    const storedVoice = await voice;
    expect(storedVoice.id).toBe(sentVoice.id);
    expect(storedVoice.text).toMatch(/^\[voice note (inbox\/[\w.-]+\.ogg)\]$/);
    const voicePath = /\[voice note (inbox\/[^\]]+)\]/.exec(storedVoice.text)![1]!;
    expect(fs.readFileSync(path.join(inbox, path.basename(voicePath)))).toEqual(ogg);
    expect(fs.readdirSync(inbox).sort()).toEqual(
      [path.basename(imagePath), path.basename(voicePath)].sort(),
    );
    expect(fake.protocolErrors()).toEqual([]);
  });
});

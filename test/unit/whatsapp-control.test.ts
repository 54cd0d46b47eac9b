/**
 * `clawbar chats`, `pair` and `unlink`, and the control methods behind them, with a stub of
 * our own WhatsAppControl interface in place of the Baileys channel. The core, its store (a
 * real SQLite file), its event bus and the control dispatch are real; the CLI commands run
 * in-process against those handlers, with the real `qrcode` package drawing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { chatsCommand, pairCommand, unlinkCommand } from '../../main/cli/whatsapp.js';
import { CliError, type Output } from '../../main/cli/output.js';
import type { ControlLike } from '../../main/cli/control.js';
import type { ChannelState } from '../../main/core/channels/channel.js';
import {
  normalizePhoneNumber,
  pairWhatsApp,
  PairingError,
  type PairingUpdate,
  type WhatsAppControl,
  type WhatsAppDisconnect,
} from '../../main/core/channels/whatsapp-control.js';
import { ControlRequestError } from '../../main/core/control/client.js';
import { controlHandlers, type ChatView } from '../../main/core/control/handlers.js';
import type { ControlProgress } from '../../main/core/control/protocol.js';
import { invokeControl } from '../../main/core/control/server.js';
import type { Core } from '../../main/core/core.js';
import { CoreEventBus } from '../../main/core/events.js';
import type { Chat } from '../../main/core/store/index.js';
import { startUnitCore, type UnitCore } from '../helpers/unit-core.js';

/**
 * A WhatsApp channel as far as the controls go: `startPairing` plays `script`, one state per
 * tick, reporting each through `report` as the channel's hooks would.
 */
class StubWhatsApp implements WhatsAppControl {
  current: ChannelState = { state: 'needs-pairing', reason: 'not paired yet' };
  pairCalls: Array<{ phone?: string }> = [];
  unlinkCalls = 0;
  disconnect: WhatsAppDisconnect | null = null;
  script: ChannelState[] = [];

  constructor(private readonly report: (state: ChannelState) => void) {}

  state(): ChannelState {
    return this.current;
  }

  set(state: ChannelState): void {
    this.current = state;
    this.report(state);
  }

  async startPairing(opts: { phone?: string }): Promise<void> {
    this.pairCalls.push(opts);
    this.set({ state: 'connecting' });
    const steps = [...this.script];
    const next = (): void => {
      const state = steps.shift();
      if (!state) return;
      this.set(state);
      setImmediate(next);
    };
    setImmediate(next);
  }

  async unlink(): Promise<void> {
    this.unlinkCalls++;
    this.set({ state: 'needs-pairing', reason: 'unlinked' });
  }

  lastDisconnect(): WhatsAppDisconnect | null {
    return this.disconnect;
  }
}

/** The states a QR pairing goes through: two QR codes, the restart WhatsApp asks for, open. */
const QR_PAIRING: ChannelState[] = [
  { state: 'qr', qr: '2@first-qr-payload' },
  { state: 'qr', qr: '2@first-qr-payload' },
  { state: 'qr', qr: '2@second-qr-payload' },
  { state: 'closed', reason: 'restart required', code: 515, retrying: true },
  { state: 'connecting' },
  { state: 'open' },
];

describe('normalizePhoneNumber', () => {
  it('takes digits with the country code, as people write them', () => {
    expect(normalizePhoneNumber('+1 (555) 123-4567')).toBe('15551234567');
    expect(normalizePhoneNumber('49.151.2345.6789')).toBe('4915123456789');
  });

  it('refuses what is not a number, too short, too long, or without a country code', () => {
    expect(() => normalizePhoneNumber('abc')).toThrow(/not a phone number/);
    expect(() => normalizePhoneNumber('+1555')).toThrow(/8 to 15 digits.*has 4/);
    expect(() => normalizePhoneNumber('1234567890123456')).toThrow(/8 to 15 digits/);
    expect(() => normalizePhoneNumber('015123456789')).toThrow(/country code/);
    expect(() => normalizePhoneNumber('+15551234567; rm -rf /')).toThrow(/not a phone number/);
    expect(() => normalizePhoneNumber('\u001b[2J')).toThrow(/"\?\[2J"/);
  });
});

describe('pairWhatsApp', () => {
  let bus: CoreEventBus;
  let stub: StubWhatsApp;
  let updates: PairingUpdate[];
  let controller: AbortController;
  const follow = (timeoutMs?: number) => ({
    control: stub,
    onState: (listener: (state: ChannelState) => void) =>
      bus.on('channel:state', (e) => listener(e.state)),
    progress: (update: PairingUpdate) => updates.push(update),
    signal: controller.signal,
    ...(timeoutMs ? { timeoutMs } : {}),
  });

  beforeEach(() => {
    bus = new CoreEventBus();
    stub = new StubWhatsApp((state) => bus.emit('channel:state', { channel: 'whatsapp', state }));
    updates = [];
    controller = new AbortController();
  });

  it('reports each new QR and ends when the state is open, leaving no listener', async () => {
    stub.script = QR_PAIRING;
    await expect(pairWhatsApp(follow())).resolves.toEqual({ state: 'open' });
    expect(updates).toEqual([
      { stage: 'connecting', text: 'connecting to WhatsApp' },
      { stage: 'qr', text: '2@first-qr-payload' },
      { stage: 'qr', text: '2@second-qr-payload' },
      { stage: 'connecting', text: 'reconnecting (restart required (515))' },
      { stage: 'connecting', text: 'connecting to WhatsApp' },
      { stage: 'paired', text: 'paired' },
    ]);
    expect(bus.listenerCount()).toBe(0);
  });

  it('passes a valid phone number on and reports the pairing code', async () => {
    stub.script = [{ state: 'pairing-code', code: 'ABCD-1234' }, { state: 'open' }];
    await pairWhatsApp(follow(), { phone: '+49 151 2345 6789' });
    expect(stub.pairCalls).toEqual([{ phone: '4915123456789' }]);
    expect(updates).toContainEqual({ stage: 'pairing-code', text: 'ABCD-1234' });
  });

  it('fails when the channel gives up, saying why', async () => {
    stub.script = [
      { state: 'qr', qr: '2@only' },
      { state: 'needs-pairing', reason: 'QR codes ran out', code: 408 },
    ];
    await expect(pairWhatsApp(follow())).rejects.toThrow(
      'pairing stopped: QR codes ran out (408); run `clawbar pair` again',
    );
    expect(bus.listenerCount()).toBe(0);
  });

  it('fails on a close that will not be retried', async () => {
    stub.script = [
      { state: 'closed', reason: 'another client took over', code: 440, retrying: false },
    ];
    await expect(pairWhatsApp(follow())).rejects.toThrow(/another client took over \(440\)/);
  });

  it('stops waiting when the client goes away, and on its timeout', async () => {
    stub.script = [{ state: 'qr', qr: '2@never-scanned' }];
    const cancelled = pairWhatsApp(follow());
    setImmediate(() => controller.abort());
    await expect(cancelled).rejects.toThrow(/cancelled/);
    expect(bus.listenerCount()).toBe(0);

    controller = new AbortController();
    await expect(pairWhatsApp(follow(30))).rejects.toThrow(/no phone was linked within/);
    expect(bus.listenerCount()).toBe(0);
  });

  it('refuses to pair over a linked phone, and reports a start that fails', async () => {
    stub.current = { state: 'open' };
    await expect(pairWhatsApp(follow())).rejects.toThrow(/already linked.*clawbar unlink/);
    expect(stub.pairCalls).toEqual([]);

    stub.current = { state: 'needs-pairing', reason: 'not paired' };
    stub.startPairing = async () => {
      throw new Error('the socket is closing');
    };
    const failed = pairWhatsApp(follow());
    await expect(failed).rejects.toBeInstanceOf(PairingError);
    await expect(failed).rejects.toThrow('pairing could not start: the socket is closing');
  });
});

describe('the WhatsApp control methods and commands', () => {
  let unit: UnitCore;
  let stub: StubWhatsApp;
  let printed: string[];
  let stdout: string[];
  let stderr: string[];

  beforeEach(async () => {
    unit = await startUnitCore();
    stub = new StubWhatsApp((state) =>
      unit.core.events.emit('channel:state', { channel: 'whatsapp', state }),
    );
    printed = [];
    stdout = [];
    stderr = [];
  });

  afterEach(async () => {
    await unit.close();
  });

  /**
   * The real core, seen with a WhatsApp channel (`whatsapp`) and the chats from its store
   * (`chats`): the two members the core exposes for these methods.
   */
  function coreWith(whatsapp: WhatsAppControl | null, chatJids: string[] = []): Core {
    const view = Object.create(unit.core) as Core;
    Object.defineProperty(view, 'whatsapp', { value: whatsapp });
    Object.defineProperty(view, 'chats', {
      value: (): Chat[] => chatJids.map((jid) => unit.store.getChat(jid) as Chat),
    });
    return view;
  }

  /** The control methods in-process, as serve (or the offline CLI) answers them. */
  function control(
    core: Core,
    serving: boolean,
  ): <T>(fn: (c: ControlLike) => Promise<T>) => Promise<T> {
    const handlers = controlHandlers({ core, serving });
    return (fn) =>
      fn({
        async request(method, params, opts) {
          const answer = await invokeControl(
            handlers,
            method,
            params,
            undefined,
            new AbortController().signal,
            (update: ControlProgress) => opts?.onProgress?.(update),
          );
          if (!answer.ok) throw new ControlRequestError(answer.error.message, answer.error.code);
          return answer.result;
        },
      }) as never;
  }

  function output(json: boolean): Output {
    return {
      json,
      print(value, human) {
        printed.push(json ? JSON.stringify(value) : human());
      },
      progress(line) {
        printed.push(line);
      },
      fail() {
        return 1;
      },
    };
  }

  const streams = {
    stdout: { write: (text: string) => stdout.push(text) },
    stderr: { write: (text: string) => stderr.push(text) },
  };

  function storeChats(): string[] {
    const { store } = unit;
    store.upsertChat({
      jid: '120363000000000001@g.us',
      name: 'Family',
      channel: 'whatsapp',
      isGroup: true,
      lastActivity: Date.UTC(2026, 10, 25, 9, 30),
    });
    store.upsertChat({
      jid: '15551234567@s.whatsapp.net',
      name: 'Ann\u001b[31m',
      channel: 'whatsapp',
      isGroup: false,
      lastActivity: Date.UTC(2026, 10, 25, 10, 0),
    });
    store.upsertChat({
      jid: '120363000000000002@g.us',
      name: 'Book club',
      channel: 'whatsapp',
      isGroup: true,
      lastActivity: null,
    });
    unit.core.addGroup({ name: 'family', jid: '120363000000000001@g.us' });
    return ['120363000000000001@g.us', '15551234567@s.whatsapp.net', '120363000000000002@g.us'];
  }

  it('`chats` lists the stored chats with their kind and enabled flag, as JSON', async () => {
    const core = coreWith(null, storeChats());
    await chatsCommand(output(true), { withControl: control(core, false) });
    const chats = JSON.parse(printed[0] as string) as ChatView[];
    expect(chats).toEqual([
      {
        jid: '15551234567@s.whatsapp.net',
        name: 'Ann\u001b[31m',
        kind: 'direct',
        channel: 'whatsapp',
        lastActivity: '2026-11-25T10:00:00.000Z',
        enabled: false,
        group: null,
      },
      {
        jid: '120363000000000001@g.us',
        // Registering keeps the chat's own name; the group's name is shown beside it.
        name: 'Family',
        kind: 'group',
        channel: 'whatsapp',
        lastActivity: '2026-11-25T09:30:00.000Z',
        enabled: true,
        group: 'family',
      },
      {
        jid: '120363000000000002@g.us',
        name: 'Book club',
        kind: 'group',
        channel: 'whatsapp',
        lastActivity: null,
        enabled: false,
        group: null,
      },
    ]);
  });

  it('`chats` prints a table a terminal cannot be tricked by', async () => {
    const core = coreWith(null, storeChats());
    await chatsCommand(output(false), { withControl: control(core, true) });
    const text = printed[0] as string;
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^NAME\s+KIND\s+JID\s+LAST ACTIVITY\s+ENABLED$/);
    expect(lines[1]).toMatch(
      /^Ann \[31m\s+direct\s+15551234567@s\.whatsapp\.net\s+2026-11-25 10:00\s+-$/,
    );
    expect(lines[2]).toMatch(
      /^Family\s+group\s+120363000000000001@g\.us\s+2026-11-25 09:30\s+enabled \(group family\)$/,
    );
    expect(lines[3]).toMatch(/^Book club\s+group\s+120363000000000002@g\.us\s+-\s+-$/);
    expect(text).not.toContain('\u001b');
  });

  it('`pair` without serve is a clear error, and WhatsApp is not asked', async () => {
    const run = pairCommand({}, output(false), {
      ...streams,
      withControl: control(coreWith(stub), false),
    });
    await expect(run).rejects.toThrow(/needs `clawbar serve` running/);
    expect(stub.pairCalls).toEqual([]);
  });

  it('`pair` with no WhatsApp channel says how to enable it', async () => {
    const run = pairCommand({}, output(false), {
      ...streams,
      withControl: control(coreWith(null), true),
    });
    await expect(run).rejects.toThrow(/no WhatsApp channel; enable WhatsApp/);
  });

  it('`pair --phone abc` is refused before serve is asked', async () => {
    let asked = false;
    const run = pairCommand({ phone: 'abc' }, output(false), {
      ...streams,
      withControl: async () => {
        asked = true;
        throw new Error('serve must not be asked');
      },
    });
    await expect(run).rejects.toBeInstanceOf(CliError);
    await expect(run).rejects.toThrow(/--phone: "abc" is not a phone number/);
    expect(asked).toBe(false);
  });

  it('the pair method refuses a bad phone number sent straight to the socket', async () => {
    const handlers = controlHandlers({ core: coreWith(stub), serving: true });
    const answer = await invokeControl(handlers, 'whatsapp.pair', { phone: '12' });
    expect(answer).toEqual({
      ok: false,
      error: { code: 'bad_request', message: expect.stringMatching(/8 to 15 digits/) },
    });
    expect(stub.pairCalls).toEqual([]);
  });

  it('`pair` draws each new QR code in the terminal and ends with "paired" when open', async () => {
    stub.script = QR_PAIRING;
    const code = await pairCommand({}, output(false), {
      ...streams,
      withControl: control(coreWith(stub), true),
    });
    expect(code).toBe(0);
    const text = stdout.join('');
    // Two QR codes, drawn with half-block characters, the second announced as a refresh.
    expect(text.match(/Scan it with WhatsApp/g)).toHaveLength(2);
    expect(text).toContain('The code was refreshed');
    expect(text).toMatch(/[▀▄█]/);
    expect(text).not.toContain('2@first-qr-payload');
    expect(text.trimEnd().endsWith('paired')).toBe(true);
    expect(stderr.join('')).toContain('reconnecting (restart required (515))');
  });

  it('`pair --json` prints one JSON object a line: the QR payloads, then open', async () => {
    stub.script = QR_PAIRING;
    await pairCommand({}, output(true), { ...streams, withControl: control(coreWith(stub), true) });
    const lines = stdout
      .join('')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown);
    expect(lines).toEqual([
      { state: 'connecting' },
      { qr: '2@first-qr-payload' },
      { qr: '2@second-qr-payload' },
      { state: 'connecting' },
      { state: 'connecting' },
      { state: 'open' },
    ]);
  });

  it('`pair --phone` shows the pairing code, cleaned for the terminal', async () => {
    stub.script = [{ state: 'pairing-code', code: 'ABCD\u001b[2J-1234' }, { state: 'open' }];
    await pairCommand({ phone: '+15551234567' }, output(false), {
      ...streams,
      withControl: control(coreWith(stub), true),
    });
    expect(stub.pairCalls).toEqual([{ phone: '15551234567' }]);
    expect(stdout.join('')).toContain('Pairing code: ABCD [2J-1234\n');
  });

  it('`unlink` calls through to the channel and confirms', async () => {
    stub.current = { state: 'open' };
    await unlinkCommand(output(false), { withControl: control(coreWith(stub), true) });
    expect(stub.unlinkCalls).toBe(1);
    expect(printed[0]).toMatch(/^unlinked: WhatsApp is logged out and its stored keys are wiped/);

    printed = [];
    await unlinkCommand(output(true), { withControl: control(coreWith(stub), true) });
    expect(JSON.parse(printed[0] as string)).toEqual({
      unlinked: true,
      state: { state: 'needs-pairing', reason: 'unlinked' },
    });
  });

  it('`unlink` without serve is refused and changes nothing', async () => {
    await expect(
      unlinkCommand(output(false), { withControl: control(coreWith(stub), false) }),
    ).rejects.toThrow(/needs `clawbar serve` running/);
    expect(stub.unlinkCalls).toBe(0);
  });

  it('`status` carries the last disconnect, with its code and text', async () => {
    stub.current = { state: 'open' };
    stub.disconnect = { code: 428, reason: 'connection closed', at: Date.UTC(2026, 10, 25, 8) };
    const handlers = controlHandlers({ core: coreWith(stub), serving: true });
    const answer = await invokeControl(handlers, 'status', {});
    expect(answer.ok && (answer.result as Record<string, unknown>).whatsappLastDisconnect).toEqual(
      stub.disconnect,
    );
  });
});

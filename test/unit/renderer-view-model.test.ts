import { describe, expect, it, vi } from 'vitest';
import {
  apiKeyText,
  canStop,
  coalesce,
  describeChannelState,
  errorText,
  formatLocalTime,
  formatUsd,
  groupChip,
  lastResult,
  parseRoute,
  statusText,
  PANEL_IDS,
  usageLine,
  type QueueView,
} from '../../renderer/view-model.js';
import { activityEntry } from '../../renderer/panels/activity.js';
import type { ApiKeyView } from '../../preload/ipc-contract.js';

const queue = (over: Partial<QueueView> = {}): QueueView => ({
  maxConcurrency: 2,
  running: [],
  waiting: [],
  retrying: [],
  waitingForSetup: [],
  ...over,
});
const family = { jid: 'local:family', paused: false };

describe('the group state chip', () => {
  it('is paused before anything else, then error, running, queued, idle', () => {
    const busy = queue({ running: [{ groupJid: family.jid, idle: false, work: 'messages' }] });
    expect(groupChip({ ...family, paused: true }, busy, new Set([family.jid]))).toBe('paused');
    expect(groupChip(family, busy, new Set([family.jid]))).toBe('error');
    expect(groupChip(family, queue({ retrying: [family.jid] }), new Set())).toBe('error');
    expect(groupChip(family, busy, new Set())).toBe('running');
    expect(groupChip(family, queue({ waiting: [family.jid] }), new Set())).toBe('queued');
    expect(groupChip(family, queue({ waitingForSetup: [family.jid] }), new Set())).toBe('queued');
    const warm = queue({ running: [{ groupJid: family.jid, idle: true, work: 'messages' }] });
    expect(groupChip(family, warm, new Set())).toBe('idle');
    expect(groupChip(family, null, new Set())).toBe('idle');
  });

  it('offers Stop only while there is work to stop', () => {
    expect(
      ['idle', 'queued', 'running', 'paused', 'error'].filter((c) => canStop(c as never)),
    ).toEqual(['queued', 'running', 'error']);
  });
});

describe('usage against the budget', () => {
  const usage = {
    tokens: 1200,
    calls: 2,
    costUsd: 0.0042,
    knownCostUsd: 0.0042,
    unpricedModels: [],
    inputTokens: 1000,
    outputTokens: 200,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
  };
  it('shows tokens and cost today, and the cap when the group has one', () => {
    expect(usageLine({ usageToday: usage })).toBe('1,200 tokens · $0.0042 today (no daily budget)');
    expect(usageLine({ usageToday: usage, dailyBudget: { tokens: 200_000, usd: 1.5 } })).toBe(
      '1,200 tokens · $0.0042 today of 200,000 tokens or $1.50',
    );
    expect(
      usageLine({ usageToday: { ...usage, costUsd: null }, dailyBudget: { tokens: null, usd: 2 } }),
    ).toBe('1,200 tokens · at least $0.0042 today of $2.00');
    expect(formatUsd(0)).toBe('$0.00');
  });
});

describe('texts', () => {
  it('formats times in the given zone, and nothing as a dash', () => {
    expect(formatLocalTime('2026-11-25T07:00:00Z', 'en-US', 'Europe/Berlin')).toBe(
      'Nov 25, 2026, 8:00 AM',
    );
    expect(formatLocalTime(null)).toBe('—');
    expect(formatLocalTime('not a time')).toBe('—');
  });

  it('says what each WhatsApp state means, with the reason when closed', () => {
    expect(describeChannelState(null)).toMatch(/not set up/);
    expect(describeChannelState({ state: 'qr', qr: 'x' })).toMatch(/Scan this QR/);
    expect(describeChannelState({ state: 'pairing-code', code: 'ABCD-1234' })).toContain(
      'ABCD-1234',
    );
    expect(
      describeChannelState({ state: 'closed', reason: 'connection lost', retrying: true }),
    ).toBe('Disconnected: connection lost. Reconnecting by itself.');
  });

  it("drops Electron's remote-method prefix from errors", () => {
    expect(
      errorText(
        new Error('Error invoking remote method \'groups:pause\': Error: no group named "x"'),
      ),
    ).toBe('no group named "x"');
  });

  it("reads a task's last result", () => {
    expect(lastResult({ lastRun: null, lastStatus: null, lastError: null })).toBe('not run yet');
    expect(lastResult({ lastRun: null, lastStatus: 'error', lastError: 'boom' })).toBe(
      'error at —: boom',
    );
  });

  it('turns run events into activity lines, errors marked, and skips the rest', () => {
    const name = (jid: string) => (jid === family.jid ? 'Family' : jid);
    expect(
      activityEntry(
        { type: 'run:gave-up', groupJid: family.jid, error: 'no engine', attempts: 3 },
        name,
        5,
      ),
    ).toEqual({
      at: 5,
      error: true,
      text: 'Family: gave up after 3 attempts: no engine',
    });
    expect(
      activityEntry({ type: 'group:changed', groupJid: family.jid, change: 'paused' }, name, 5),
    ).toBeNull();
  });
});

describe('coalesce', () => {
  it('runs once more after a burst of requests, not once per request', async () => {
    let release: () => void = () => undefined;
    const task = vi.fn(
      () =>
        new Promise<void>((resolve) => {
          release = resolve;
        }),
    );
    const request = coalesce(task, () => undefined);
    const first = request();
    void request();
    void request();
    expect(task).toHaveBeenCalledTimes(1);
    release();
    await vi.waitFor(() => expect(task).toHaveBeenCalledTimes(2));
    release();
    await first;
    expect(task).toHaveBeenCalledTimes(2);
  });

  it('passes a failure to onError and keeps working', async () => {
    const errors: unknown[] = [];
    const request = coalesce(
      async () => {
        throw new Error('down');
      },
      (err) => errors.push(err),
    );
    await request();
    await request();
    expect(errors).toHaveLength(2);
  });
});

describe('parseRoute', () => {
  it("reads a panel's id or a task, from the hash, ?panel= or the shell's event", () => {
    for (const id of PANEL_IDS) expect(parseRoute(id)).toEqual({ panel: id });
    expect(parseRoute('#groups')).toEqual({ panel: 'groups' });
    expect(parseRoute('tasks/t_abc123')).toEqual({ panel: 'schedules', taskId: 't_abc123' });
    expect(parseRoute('#tasks/t_abc123')).toEqual({ panel: 'schedules', taskId: 't_abc123' });
    expect(parseRoute('/tasks/t%5Fx')).toEqual({ panel: 'schedules', taskId: 't_x' });
  });

  it('leaves the window where it is for anything else', () => {
    for (const bad of [
      null,
      undefined,
      '',
      '#',
      'token=abc',
      'nowhere',
      'Groups',
      'tasks/',
      'tasks/a"]',
      'tasks/../x',
      `tasks/${'a'.repeat(65)}`,
      '%E0%A4%A',
    ])
      expect(parseRoute(bad), String(bad)).toBeNull();
  });
});

describe('apiKeyText', () => {
  const view = (over: Partial<ApiKeyView>): ApiKeyView => ({
    source: 'none',
    editable: true,
    app: 'desktop',
    protection: 'keyring',
    ...over,
  });

  it('says where the key comes from and what to do, for the app and for serve', () => {
    expect(apiKeyText(view({}))).toMatch(/^No key yet: agents cannot answer until you add one/);
    expect(apiKeyText(view({ source: 'saved' }))).toBe(
      'Saved, encrypted by the system keyring, and in use.',
    );
    expect(apiKeyText(view({ source: 'saved', protection: 'weak' }))).toMatch(
      /weak protection: this system has no keyring/,
    );
    expect(apiKeyText(view({ source: 'unreadable' }))).toMatch(/enter it again/);
    expect(apiKeyText(view({ source: 'environment', editable: false }))).toMatch(
      /ANTHROPIC_API_KEY .* restart Clawbar\.$/,
    );
    expect(apiKeyText(view({ protection: 'unavailable', editable: false }))).toMatch(
      /no keyring to keep one in: set ANTHROPIC_API_KEY/,
    );
    const serve = { app: 'serve', editable: false, protection: 'unavailable' } as const;
    expect(apiKeyText(view({ ...serve, source: 'environment' }))).toMatch(
      /restart `clawbar serve`\.$/,
    );
    expect(apiKeyText(view({ ...serve }))).toMatch(
      /^No key: set ANTHROPIC_API_KEY in the environment of `clawbar serve`/,
    );
  });
});

describe('statusText', () => {
  const queue = { running: [], waiting: [] } as unknown as QueueView;

  it('shows a first image build as progress, not as a fault', () => {
    expect(
      statusText({
        queue,
        setup: {
          ready: false,
          problems: [
            {
              kind: 'image-building',
              message: 'building the agent image clawbar-agent:latest',
              fix: null,
              progress: 'step 3/7: RUN npm ci',
            },
          ],
        },
      }),
    ).toBe(
      'Getting ready: building the agent image clawbar-agent:latest (step 3/7: RUN npm ci). Messages wait and are answered after.',
    );
  });

  it('names each problem with its fix, and the queue once ready', () => {
    expect(
      statusText({
        queue,
        setup: {
          ready: false,
          problems: [
            { kind: 'engine', message: 'the Docker engine is not reachable', fix: 'start Docker' },
            { kind: 'no-key', message: 'no Anthropic API key is set', fix: 'add it in Settings' },
          ],
        },
      }),
    ).toBe(
      'Agents cannot run yet. the Docker engine is not reachable: start Docker. no Anthropic API key is set: add it in Settings',
    );
    expect(
      statusText({
        setup: { ready: true, problems: [] },
        queue: {
          running: [
            { groupJid: 'a', idle: false },
            { groupJid: 'b', idle: true },
          ],
          waiting: ['c'],
        } as unknown as QueueView,
      }),
    ).toBe('Ready. 1 running, 1 waiting.');
  });
});

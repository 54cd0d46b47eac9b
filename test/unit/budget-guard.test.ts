/**
 * The per-group daily budget (budget.ts) over a real SQLite store, with fake timers for the
 * reset at local midnight: held messages go at midnight, each chat is told once a day, a task
 * run is skipped, a raised budget lets held work go at once, and the usage and its estimated
 * cost come from the recorded rows and the price table.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BudgetGuard, nextLocalMidnight } from '../../main/core/budget.js';
import { CoreEventBus, type CoreEvents } from '../../main/core/events.js';
import { silentLogger } from '../../main/core/logger.js';
import { estimateCostUsd, formatUsd, priceOf } from '../../main/core/pricing.js';
import type { WorkItem } from '../../main/core/queue/group-queue.js';
import type { Group, TokenUsage } from '../../main/core/store/index.js';
import { dayInZone } from '../../main/core/time.js';
import { tempStore, type TempStore } from '../helpers/store.js';

const ZONE = 'Europe/Berlin';
/** 2026-03-10 22:00 in Berlin (UTC+1). */
const EVENING = Date.parse('2026-03-10T21:00:00Z');
/** 2026-03-11 00:00 in Berlin. */
const MIDNIGHT = Date.parse('2026-03-10T23:00:00Z');
const MODEL = 'claude-sonnet-4-6';

const usage = (input: number, output = 0, read = 0, write = 0): TokenUsage => ({
  inputTokens: input,
  outputTokens: output,
  cacheReadTokens: read,
  cacheWriteTokens: write,
});

interface Harness {
  guard: BudgetGuard;
  events: CoreEventBus;
  notices: Array<{ jid: string; text: string }>;
  released: Array<{ jid: string; work: readonly WorkItem[] }>;
  skipped: Array<{ taskId: string; reason: string }>;
  reached: Array<CoreEvents['budget:reached']>;
  group(): Group;
}

let temp: TempStore;
let h: Harness;

function harness(): Harness {
  const events = new CoreEventBus();
  const notices: Harness['notices'] = [];
  const released: Harness['released'] = [];
  const skipped: Harness['skipped'] = [];
  const reached: Harness['reached'] = [];
  events.on('budget:reached', (e) => reached.push(e));
  const guard = new BudgetGuard({
    store: temp.store,
    events,
    log: silentLogger(),
    timezone: ZONE,
    now: Date.now,
    notify: (jid, text) => notices.push({ jid, text }),
    onRelease: (jid, work) => released.push({ jid, work }),
    onSkipTask: (_jid, taskId, reason) => skipped.push({ taskId, reason }),
  });
  guard.start();
  return {
    guard,
    events,
    notices,
    released,
    skipped,
    reached,
    group: () => temp.store.getGroup(temp.family.jid)!,
  };
}

function spend(tokens: TokenUsage, at = Date.now(), model = MODEL): void {
  temp.store.addUsage(temp.family.jid, dayInZone(at, ZONE), tokens, model);
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(EVENING);
  temp = tempStore('clawbar-budget-');
  h = harness();
});

afterEach(() => {
  h.guard.stop();
  temp.close();
  vi.useRealTimers();
});

describe('BudgetGuard', () => {
  it('lets every run go when the group has no budget', () => {
    spend(usage(5_000_000));
    expect(h.guard.admit(h.group(), { kind: 'messages' })).toBe(true);
    expect(h.guard.refuseCall(temp.family.jid)).toBeNull();
    expect(h.notices).toEqual([]);
  });

  it('holds messages past a token budget, tells the chat and the tray once, and lets them go at local midnight', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 1000, usd: null } });
    spend(usage(600, 100, 250, 50));

    expect(h.guard.admit(h.group(), { kind: 'messages' })).toBe(false);
    expect(h.guard.refuseCall(temp.family.jid)).toMatch(/daily budget of 1,000 tokens/);
    expect(h.guard.admit(h.group(), { kind: 'messages' })).toBe(false);

    expect(h.notices).toHaveLength(1);
    expect(h.notices[0]?.text).toBe(
      'The daily budget of 1,000 tokens for this group is reached (1,000 tokens used today); ' +
        'it resets at midnight (Europe/Berlin). Your messages are kept and will be answered then.',
    );
    expect(h.reached).toEqual([
      {
        groupJid: temp.family.jid,
        limit: '1,000 tokens',
        used: '1,000 tokens',
        day: '2026-03-10',
        resetsAt: MIDNIGHT,
      },
    ]);

    vi.advanceTimersByTime(MIDNIGHT - EVENING - 1);
    expect(h.released).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(h.released).toEqual([{ jid: temp.family.jid, work: [{ kind: 'messages' }] }]);
    // A new day: the budget is fresh and the runs go.
    expect(h.guard.admit(h.group(), { kind: 'messages' })).toBe(true);
  });

  it('tells the chat again on the next day it is reached', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 100, usd: null } });
    spend(usage(100));
    h.guard.admit(h.group(), { kind: 'messages' });
    vi.advanceTimersByTime(MIDNIGHT - EVENING);

    spend(usage(100));
    expect(h.guard.admit(h.group(), { kind: 'messages' })).toBe(false);

    expect(h.notices).toHaveLength(2);
    expect(h.reached.map((e) => e.day)).toEqual(['2026-03-10', '2026-03-11']);
  });

  it('stops at a dollar budget from the price table', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: null, usd: 0.05 } });
    // Sonnet: $3/MTok in, $15/MTok out: 0.03 + 0.015 = $0.045, under $0.05.
    spend(usage(10_000, 1_000));
    expect(h.guard.admit(h.group(), { kind: 'messages' })).toBe(true);
    // Cache reads at $0.30/MTok: 20,000 more make $0.051.
    spend(usage(0, 0, 20_000));
    expect(h.guard.admit(h.group(), { kind: 'messages' })).toBe(false);
    expect(h.notices[0]?.text).toContain(
      'The daily budget of $0.05 for this group is reached ($0.05 used today)',
    );
  });

  it('skips a task run past the budget instead of holding it to midnight', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 10, usd: null } });
    spend(usage(10));

    expect(h.guard.admit(h.group(), { kind: 'task', taskId: 't1' })).toBe(false);

    expect(h.skipped).toEqual([
      { taskId: 't1', reason: "the group's daily budget of 10 tokens is reached" },
    ]);
    vi.advanceTimersByTime(MIDNIGHT - EVENING);
    expect(h.released).toEqual([]);
  });

  it('lets held messages go at once when the budget is raised', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 10, usd: null } });
    spend(usage(10));
    h.guard.admit(h.group(), { kind: 'messages' });

    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 20, usd: null } });
    h.events.emit('group:changed', { groupJid: temp.family.jid, change: 'settings' });

    expect(h.released).toEqual([{ jid: temp.family.jid, work: [{ kind: 'messages' }] }]);
  });

  it('keeps held messages held when the budget is changed but still reached', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 10, usd: null } });
    spend(usage(10));
    h.guard.admit(h.group(), { kind: 'messages' });

    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 5, usd: null } });
    h.events.emit('group:changed', { groupJid: temp.family.jid, change: 'settings' });

    expect(h.released).toEqual([]);
  });

  it('clears its midnight timer on stop', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 10, usd: null } });
    spend(usage(10));
    h.guard.admit(h.group(), { kind: 'messages' });
    expect(vi.getTimerCount()).toBe(1);

    h.guard.stop();

    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(MIDNIGHT - EVENING);
    expect(h.released).toEqual([]);
  });

  it('arms no timer while no group is past its budget', () => {
    temp.store.updateGroupSettings(temp.family.jid, { dailyBudget: { tokens: 1000, usd: null } });
    spend(usage(10));
    h.guard.admit(h.group(), { kind: 'messages' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('sums usage today over models, with the cost unknown when a model has no price', () => {
    spend(usage(1_000_000), Date.now(), MODEL);
    expect(h.guard.usageToday(temp.family.jid)).toMatchObject({
      tokens: 1_000_000,
      calls: 1,
      costUsd: 3,
      unpricedModels: [],
    });

    spend(usage(500, 500), Date.now(), 'claude-future-9');
    const today = h.guard.usageToday(temp.family.jid);
    expect(today).toMatchObject({
      tokens: 1_001_000,
      inputTokens: 1_000_500,
      outputTokens: 500,
      calls: 2,
      costUsd: null,
      knownCostUsd: 3,
      unpricedModels: ['claude-future-9'],
    });
    // Yesterday's usage is not today's.
    spend(usage(7), EVENING - 24 * 60 * 60 * 1000);
    expect(h.guard.usageToday(temp.family.jid).tokens).toBe(1_001_000);
  });
});

describe('nextLocalMidnight', () => {
  it('finds the next midnight across the spring and autumn clock changes', () => {
    // Berlin springs forward on 2026-03-29 (a 23-hour day) and falls back on 2026-10-25 (25 hours).
    expect(
      new Date(nextLocalMidnight(Date.parse('2026-03-29T12:00:00Z'), ZONE)).toISOString(),
    ).toBe('2026-03-29T22:00:00.000Z');
    expect(
      new Date(nextLocalMidnight(Date.parse('2026-10-25T12:00:00Z'), ZONE)).toISOString(),
    ).toBe('2026-10-25T23:00:00.000Z');
    expect(nextLocalMidnight(MIDNIGHT, ZONE)).toBe(MIDNIGHT + 24 * 60 * 60 * 1000);
    expect(nextLocalMidnight(MIDNIGHT - 1, ZONE)).toBe(MIDNIGHT);
  });
});

describe('the price table', () => {
  it('prices a dated or -latest id as its model and knows no model it was not told', () => {
    expect(priceOf('claude-sonnet-4-5-20250929')).toEqual(priceOf('claude-sonnet-4-5'));
    expect(priceOf('claude-3-5-haiku-latest')).toEqual(priceOf('claude-3-5-haiku'));
    expect(priceOf('claude-opus-4-20250514')?.input).toBe(15);
    expect(priceOf('claude-opus-4-7')).toBeNull();
    expect(priceOf('')).toBeNull();
  });

  it('estimates a cost from each kind of token at its own price', () => {
    // Sonnet 4.6: $3 in, $15 out, $3.75 cache write, $0.30 cache read, per MTok.
    expect(estimateCostUsd(MODEL, usage(1_000_000, 1_000_000, 1_000_000, 1_000_000))).toBeCloseTo(
      3 + 15 + 3.75 + 0.3,
      10,
    );
    expect(estimateCostUsd('claude-unknown', usage(1))).toBeNull();
    expect(formatUsd(null)).toBe('cost unknown');
    expect(formatUsd(0.0042)).toBe('$0.0042');
    expect(formatUsd(1.266)).toBe('$1.27');
  });
});

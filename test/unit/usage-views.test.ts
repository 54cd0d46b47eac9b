/**
 * Today's tokens and their estimated cost in `clawbar status`, `groups list` and
 * `groups show G`, through the control handlers of a real Core over a real SQLite file.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatUsageToday, type UsageToday } from '../../main/core/budget.js';
import { controlHandlers, type GroupView } from '../../main/core/control/handlers.js';
import type { GroupSettingsView } from '../../main/core/control/group-settings-view.js';
import type { CoreStatus } from '../../main/core/core.js';
import { dayInZone } from '../../main/core/time.js';
import { startUnitCore, type UnitCore } from '../helpers/unit-core.js';

const ctx = { signal: new AbortController().signal, progress: () => undefined };

let unit: UnitCore;

beforeEach(async () => {
  unit = await startUnitCore();
});
afterEach(async () => {
  await unit.close();
});

describe('usage today in the views', () => {
  it('shows each group its own tokens and cost, and status the sum of all groups', async () => {
    const { core, store } = unit;
    const family = core.addGroup({ name: 'Family' });
    const work = core.addGroup({ name: 'Work' });
    // The unit core's config has no TZ, so its day is the machine's.
    const today = dayInZone(Date.now(), Intl.DateTimeFormat().resolvedOptions().timeZone);
    store.addUsage(
      family.jid,
      today,
      { inputTokens: 1_000, outputTokens: 500, cacheReadTokens: 100_000, cacheWriteTokens: 2_000 },
      'claude-sonnet-4-6',
    );
    store.addUsage(
      work.jid,
      today,
      { inputTokens: 10, outputTokens: 10, cacheReadTokens: 0, cacheWriteTokens: 0 },
      'claude-mystery-1',
    );
    const handlers = controlHandlers({ core, serving: true });

    const list = (await handlers['groups.list']({}, ctx)) as GroupView[];
    const familyToday = list.find((g) => g.name === 'Family')?.usageToday;
    // $3 × 0.001 + $15 × 0.0005 + $0.30 × 0.1 + $3.75 × 0.002 = 0.003 + 0.0075 + 0.03 + 0.0075
    expect(familyToday).toMatchObject({ tokens: 103_500, calls: 1 });
    expect(familyToday?.costUsd).toBeCloseTo(0.048, 10);
    expect(list.find((g) => g.name === 'Work')?.usageToday).toMatchObject({
      tokens: 20,
      costUsd: null,
      unpricedModels: ['claude-mystery-1'],
    });

    // The daily cap rides along once the group has one (the tray shows usage against it).
    expect(list.find((g) => g.name === 'Family')).not.toHaveProperty('dailyBudget');
    core.updateGroupSettings('Family', { budgetTokens: 200_000 });
    const capped = (await handlers['groups.list']({}, ctx)) as GroupView[];
    expect(capped.find((g) => g.name === 'Family')?.dailyBudget).toEqual({
      tokens: 200_000,
      usd: null,
    });

    const shown = (await handlers['groups.show']({ group: 'Family' }, ctx)) as GroupSettingsView;
    expect(shown.usageToday).toEqual(familyToday);

    const status = (await handlers.status({}, ctx)) as CoreStatus;
    expect(status.usageToday).toMatchObject({ tokens: 103_520, calls: 2, costUsd: null });
    expect(status.budgetHeld).toEqual([]);
  });

  it('says the tokens, the cache share and the cost in one line, or why the cost is unknown', () => {
    const base: UsageToday = {
      inputTokens: 1_000,
      outputTokens: 500,
      cacheReadTokens: 100_000,
      cacheWriteTokens: 2_000,
      tokens: 103_500,
      calls: 3,
      costUsd: 0.048,
      knownCostUsd: 0.048,
      unpricedModels: [],
    };
    expect(formatUsageToday(base)).toBe(
      '103,500 tokens (100,000 cache reads, 2,000 cache writes) in 3 calls, about $0.05',
    );
    expect(
      formatUsageToday({ ...base, costUsd: null, unpricedModels: ['claude-mystery-1', ''] }),
    ).toBe(
      '103,500 tokens (100,000 cache reads, 2,000 cache writes) in 3 calls, cost unknown (no price for claude-mystery-1, an unrecorded model)',
    );
    expect(formatUsageToday({ ...base, tokens: 0 })).toBe('no tokens');
  });
});

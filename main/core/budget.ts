/**
 * The per-group daily budget (issue 10): a cap on the tokens or the estimated US dollars a
 * group's agent may use per local day (`Group.dailyBudget`, set with `clawbar groups set`).
 *
 * It is enforced in two places, from the usage the host recorded from the API's own answers:
 * - **Before a run starts** ({@link BudgetGuard.admit}): a group past its budget starts no run.
 *   Its messages are held here, stored and unanswered, until the budget resets or is raised;
 *   then they go to the queue as one batch. A scheduled task's run is skipped instead (a task
 *   due at 8:00 must not fire at midnight).
 * - **Between model calls** ({@link BudgetGuard.refuseCall}): the core's metered broker asks
 *   before each call, so a long tool loop stops at the next call once the budget is reached.
 *   The call fails as a final `billing` error: the runner does not retry it, and the open turn
 *   is not counted against its messages (a budget is not their fault), so they are answered
 *   after the reset.
 *
 * Either way the chat is told once per local day, with when it resets, and the tray hears a
 * `budget:reached` event. The budget resets at local midnight in `config.timezone`: a timer,
 * armed only while some group is past its budget, releases what was held and forgets who was
 * told. Usage a call makes past the cap (the call under way when it was reached) is recorded
 * all the same: the host never under-reports what the API billed.
 *
 * A token budget counts every token the API processed: input, output, cache reads and cache
 * writes. A dollar budget counts the estimated cost from the price table (pricing.ts); usage of
 * a model not in the table has no price, and only the priced part counts towards it.
 */
import type { CoreEventBus } from './events.js';
import type { Logger } from './logger.js';
import { estimateCostUsd, formatUsd, totalTokens } from './pricing.js';
import type { WorkItem } from './queue/group-queue.js';
import type { ModelUsage } from './store/run-state.js';
import type { Group, TokenUsage } from './store/types.js';
import { dayInZone } from './time.js';

/** A group's usage today, as `status` and `groups list/show` show it. */
export interface UsageToday extends TokenUsage {
  /** Every token processed: input, output, cache reads and writes. */
  tokens: number;
  /** Model calls recorded. */
  calls: number;
  /**
   * The estimated cost in US dollars; null when some of the usage was made with a model the
   * price table does not know (then `knownCostUsd` is the priced part).
   */
  costUsd: number | null;
  /** The estimated cost of the usage whose model has a price. */
  knownCostUsd: number;
  /** Models that made calls today without a price in the table. */
  unpricedModels: string[];
}

/** Why a group may not spend more today, in words for the chat and the tray. */
export interface BudgetReached {
  /** The cap that was reached, e.g. `200,000 tokens` or `$1.50`. */
  limit: string;
  /** What was used of it today, e.g. `201,345 tokens` or `$1.52`. */
  used: string;
  /** The local day (`YYYY-MM-DD`) it applies to. */
  day: string;
  /** When it resets: the next local midnight, epoch ms. */
  resetsAt: number;
}

export interface BudgetGuardDeps {
  store: {
    getGroup(jid: string): Group | undefined;
    usageOnDay(day: string): ModelUsage[];
  };
  events: CoreEventBus;
  log: Logger;
  /** IANA time zone of the day and its midnight (`config.timezone`). */
  timezone: string;
  now: () => number;
  /** Queues a notice for the group's chat (the outbox). */
  notify(groupJid: string, text: string): void;
  /** Held messages may go: the budget reset or was raised. */
  onRelease(groupJid: string, work: readonly WorkItem[]): void;
  /** A task's run was skipped because the budget is reached; `reason` says so. */
  onSkipTask(groupJid: string, taskId: string, reason: string): void;
}

/** Holds runs of groups past their daily budget, and lets them go at local midnight. */
export class BudgetGuard {
  private readonly log: Logger;
  /** Groups whose chat heard today that the budget is reached, with the day they heard it. */
  private readonly told = new Map<string, string>();
  /** Groups whose messages wait for the budget (at most one `messages` item each). */
  private readonly held = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  /** The local day the midnight timer was armed on: a timer that fires early finds it still. */
  private armedDay: string | null = null;
  private unsubscribe: (() => void) | null = null;
  private stopped = false;

  constructor(private readonly deps: BudgetGuardDeps) {
    this.log = deps.log.child({ mod: 'budget' });
  }

  /** Listens for settings changes: a raised or removed budget lets held work go at once. */
  start(): void {
    this.stopped = false;
    this.unsubscribe ??= this.deps.events.on('group:changed', (e) => {
      if (e.change === 'settings' || e.change === 'removed') this.recheck(e.groupJid);
    });
  }

  /** Clears the midnight timer and the listener; held messages stay stored for the next start. */
  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.held.clear();
  }

  /** Groups whose messages wait for the budget to reset, for `status`. */
  heldGroups(): string[] {
    return [...this.held];
  }

  /** The group's usage today (local day), summed over models, with its estimated cost. */
  usageToday(groupJid: string): UsageToday {
    return summarize(
      this.deps.store.usageOnDay(this.today()).filter((row) => row.groupJid === groupJid),
    );
  }

  /** Every group's usage today, summed: for `status`. */
  usageTodayAll(): UsageToday {
    return summarize(this.deps.store.usageOnDay(this.today()));
  }

  /** Whether the group's budget for today is reached, and how; null when it may go on. */
  reached(group: Group): BudgetReached | null {
    const { tokens, usd } = group.dailyBudget;
    if (tokens === null && usd === null) return null;
    const usage = this.usageToday(group.jid);
    const now = this.deps.now();
    const day = dayInZone(now, this.deps.timezone);
    const resetsAt = nextLocalMidnight(now, this.deps.timezone);
    if (tokens !== null && usage.tokens >= tokens) {
      return {
        limit: tokenCount(tokens),
        used: tokenCount(usage.tokens),
        day,
        resetsAt,
      };
    }
    if (usd !== null && usage.knownCostUsd >= usd) {
      return { limit: formatUsd(usd), used: formatUsd(usage.knownCostUsd), day, resetsAt };
    }
    return null;
  }

  /**
   * Asked before each run: may this work start now? False when the budget is reached: the
   * messages are held until it resets (or is raised), a task's run is skipped; the chat is told
   * once a day.
   */
  admit(group: Group, work: WorkItem): boolean {
    const reached = this.reached(group);
    if (!reached) return true;
    this.announce(group, reached);
    if (work.kind === 'task') {
      this.deps.onSkipTask(
        group.jid,
        work.taskId,
        `the group's daily budget of ${reached.limit} is reached`,
      );
    } else {
      this.held.add(group.jid);
      this.log.info({ group: group.folder }, 'messages held: the daily budget is reached');
    }
    this.armMidnight();
    return false;
  }

  /**
   * Asked before each model call of a run: the chat's message when the budget is reached (the
   * call must not be made), or null. The chat is told here too, once a day.
   */
  refuseCall(groupJid: string): string | null {
    const group = this.deps.store.getGroup(groupJid);
    if (!group) return null;
    const reached = this.reached(group);
    if (!reached) return null;
    this.announce(group, reached);
    // However the run then ends, the messages it was answering wait for the reset.
    this.held.add(groupJid);
    this.armMidnight();
    return budgetMessage(reached, this.deps.timezone);
  }

  /** Held messages of the group go now if its budget no longer stops them. */
  private recheck(groupJid: string): void {
    if (!this.held.has(groupJid)) return;
    const group = this.deps.store.getGroup(groupJid);
    if (group && this.reached(group)) return;
    this.held.delete(groupJid);
    if (group) this.deps.onRelease(groupJid, [{ kind: 'messages' }]);
  }

  /** Tells the chat and the tray, once per group and local day. */
  private announce(group: Group, reached: BudgetReached): void {
    if (this.told.get(group.jid) === reached.day) return;
    this.told.set(group.jid, reached.day);
    this.log.info(
      { group: group.folder, limit: reached.limit, used: reached.used },
      'daily budget reached',
    );
    this.deps.notify(
      group.jid,
      `${budgetMessage(reached, this.deps.timezone)} Your messages are kept and will be answered then.`,
    );
    this.deps.events.emit('budget:reached', {
      groupJid: group.jid,
      limit: reached.limit,
      used: reached.used,
      day: reached.day,
      resetsAt: reached.resetsAt,
    });
  }

  /** One timer, to the next local midnight, while any group is held or was told. */
  private armMidnight(): void {
    if (this.timer || this.stopped) return;
    const now = this.deps.now();
    this.armedDay = dayInZone(now, this.deps.timezone);
    const delay = Math.max(1, nextLocalMidnight(now, this.deps.timezone) - now);
    this.timer = setTimeout(() => this.onMidnight(), delay);
    // The reset must not keep a CLI process alive; `serve` lives on its own.
    this.timer.unref();
  }

  /** A new local day: every held group's messages go, and each chat may be told again. */
  private onMidnight(): void {
    this.timer = null;
    if (this.stopped) return;
    const today = this.today();
    if (today === this.armedDay) {
      // Fired a hair early by the wall clock: the day has not turned yet.
      this.armMidnight();
      return;
    }
    for (const [jid, day] of this.told) if (day !== today) this.told.delete(jid);
    const groups = [...this.held];
    this.held.clear();
    this.log.info({ groups: groups.length }, 'a new day: the daily budgets reset');
    for (const jid of groups) {
      const group = this.deps.store.getGroup(jid);
      if (!group) continue;
      if (this.reached(group)) this.held.add(jid);
      else this.deps.onRelease(jid, [{ kind: 'messages' }]);
    }
    if (this.held.size > 0 || this.told.size > 0) this.armMidnight();
  }

  private today(): string {
    return dayInZone(this.deps.now(), this.deps.timezone);
  }
}

/**
 * Today's usage in one line, for `status` and `groups list/show`:
 * `12,345 tokens (10,000 cache reads, 1,200 cache writes) in 7 calls, about $0.0123`.
 */
export function formatUsageToday(usage: UsageToday): string {
  if (usage.tokens === 0) return 'no tokens';
  const cache = [
    usage.cacheReadTokens > 0
      ? `${usage.cacheReadTokens.toLocaleString('en-US')} cache reads`
      : null,
    usage.cacheWriteTokens > 0
      ? `${usage.cacheWriteTokens.toLocaleString('en-US')} cache writes`
      : null,
  ].filter(Boolean);
  const calls = usage.calls > 0 ? ` in ${usage.calls} call${usage.calls === 1 ? '' : 's'}` : '';
  const cost =
    usage.costUsd === null
      ? `cost unknown (no price for ${usage.unpricedModels.map((m) => m || 'an unrecorded model').join(', ')})`
      : `about ${formatUsd(usage.costUsd)}`;
  return `${tokenCount(usage.tokens)}${cache.length ? ` (${cache.join(', ')})` : ''}${calls}, ${cost}`;
}

/** The chat's message when the budget is reached: what, how much, and when it resets. */
export function budgetMessage(reached: BudgetReached, timezone: string): string {
  return (
    `The daily budget of ${reached.limit} for this group is reached (${reached.used} used today); ` +
    `it resets at midnight (${timezone}).`
  );
}

/** Sums a day's usage rows into one, with the cost from the price table. */
function summarize(rows: readonly ModelUsage[]): UsageToday {
  const sum: UsageToday = {
    inputTokens: 0,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheWriteTokens: 0,
    tokens: 0,
    calls: 0,
    costUsd: 0,
    knownCostUsd: 0,
    unpricedModels: [],
  };
  for (const row of rows) {
    sum.inputTokens += row.usage.inputTokens;
    sum.outputTokens += row.usage.outputTokens;
    sum.cacheReadTokens += row.usage.cacheReadTokens;
    sum.cacheWriteTokens += row.usage.cacheWriteTokens;
    sum.tokens += totalTokens(row.usage);
    sum.calls += row.calls;
    const cost = estimateCostUsd(row.model, row.usage);
    if (cost !== null) sum.knownCostUsd += cost;
    else if (totalTokens(row.usage) > 0 && !sum.unpricedModels.includes(row.model)) {
      sum.unpricedModels.push(row.model);
    }
  }
  sum.costUsd = sum.unpricedModels.length > 0 ? null : sum.knownCostUsd;
  return sum;
}

/**
 * The first millisecond of the next local day in `timeZone` after `now`. Found by bisection
 * over the next 26 hours, so days of 23 or 25 hours (daylight saving) come out right.
 */
export function nextLocalMidnight(now: number, timeZone: string): number {
  const today = dayInZone(now, timeZone);
  let before = now;
  let after = now + 26 * 60 * 60 * 1000;
  while (after - before > 1) {
    const middle = before + Math.floor((after - before) / 2);
    if (dayInZone(middle, timeZone) === today) before = middle;
    else after = middle;
  }
  return after;
}

function tokenCount(n: number): string {
  return `${n.toLocaleString('en-US')} token${n === 1 ? '' : 's'}`;
}

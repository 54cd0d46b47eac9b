/**
 * What model calls cost: one table of Anthropic's list prices per model, and the estimated
 * cost of recorded usage. A model not in the table has no estimate (null), said as
 * "cost unknown": a guess would make a budget in dollars stop too early or too late.
 *
 * Prices are US dollars per million tokens (MTok), from Anthropic's pricing page
 * (docs.anthropic.com/en/docs/about-claude/pricing, read 2026-03): cache writes are the 5-minute
 * ones (1.25 × input), cache reads (hits and refreshes) 0.1 × input. Long-context (> 200K input
 * tokens) and batch prices are not modelled: Clawbar makes neither kind of call.
 */
import type { TokenUsage } from './store/types.js';

/** One model's list prices, in US dollars per million tokens. */
export interface ModelPrice {
  input: number;
  output: number;
  /** Writing a prefix to the 5-minute prompt cache. */
  cacheWrite: number;
  /** Reading a prefix from the prompt cache. */
  cacheRead: number;
}

function price(input: number, output: number): ModelPrice {
  return { input, output, cacheWrite: input * 1.25, cacheRead: input * 0.1 };
}

/**
 * Prices by model id, without its date suffix: `claude-sonnet-4-5-20250929` and
 * `claude-sonnet-4-5-latest` are priced as `claude-sonnet-4-5`.
 */
export const MODEL_PRICES: Readonly<Record<string, ModelPrice>> = {
  'claude-opus-4-6': price(5, 25),
  'claude-opus-4-5': price(5, 25),
  'claude-opus-4-1': price(15, 75),
  'claude-opus-4-0': price(15, 75),
  'claude-opus-4': price(15, 75),
  'claude-sonnet-4-6': price(3, 15),
  'claude-sonnet-4-5': price(3, 15),
  'claude-sonnet-4-0': price(3, 15),
  'claude-sonnet-4': price(3, 15),
  'claude-3-7-sonnet': price(3, 15),
  'claude-haiku-4-5': price(1, 5),
  'claude-3-5-haiku': price(0.8, 4),
  'claude-3-haiku': price(0.25, 1.25),
};

/** A date (`-20250929`) or `-latest` after a model id in the table. */
const VERSION_SUFFIX = /-(?:\d{8}|latest)$/;

/**
 * The list prices of `model`, or null when it is not in the table. Only an exact id, with or
 * without a date or `-latest`, matches: `claude-opus-4-7` is unknown, not Opus 4.
 */
export function priceOf(model: string): ModelPrice | null {
  return MODEL_PRICES[model] ?? MODEL_PRICES[model.replace(VERSION_SUFFIX, '')] ?? null;
}

/**
 * The estimated cost in US dollars of `usage` made with `model`, or null when the model's
 * price is unknown.
 */
export function estimateCostUsd(model: string, usage: TokenUsage): number | null {
  const prices = priceOf(model);
  if (!prices) return null;
  return (
    (usage.inputTokens * prices.input +
      usage.outputTokens * prices.output +
      usage.cacheWriteTokens * prices.cacheWrite +
      usage.cacheReadTokens * prices.cacheRead) /
    1_000_000
  );
}

/** All tokens of `usage`: input, output, and cache reads and writes. */
export function totalTokens(usage: TokenUsage): number {
  return usage.inputTokens + usage.outputTokens + usage.cacheReadTokens + usage.cacheWriteTokens;
}

/** A dollar amount for people: `$0.0042`, `$1.27`; `cost unknown` for null. */
export function formatUsd(usd: number | null): string {
  if (usd === null) return 'cost unknown';
  if (usd === 0) return '$0';
  return usd < 0.01 ? `$${usd.toPrecision(2)}` : `$${usd.toFixed(2)}`;
}

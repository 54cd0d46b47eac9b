/**
 * The fake Messages API's prompt cache: it bills a request's input tokens the way Anthropic's
 * prompt caching does, so the cache-read ratio a test or bench measures against the fake says
 * something true about the real API. It is the yardstick, and has tests of its own
 * (test/unit/fake-prompt-cache.test.ts).
 *
 * The rules, from Anthropic's prompt-caching docs (platform.claude.com, build-with-claude/
 * prompt-caching, read 2026):
 * - A prompt is one sequence of blocks, in the order tools → system → messages. Each tool
 *   definition, each system text block and each message content block is one block; a string
 *   system prompt or message content is one text block (the API renders both alike).
 * - A block with `cache_control` is a breakpoint; at most 4 per request (more is a 400).
 * - A cache entry is the prefix that ends at a breakpoint. It is written when a request carries
 *   that breakpoint and the prefix is not cached yet (`cache_creation_input_tokens`), and only
 *   when the prefix reaches the model's minimum cacheable length.
 * - For each breakpoint the API looks back for the longest previously written prefix, at that
 *   block and up to 19 before it (20 positions in all); an entry further back is not found.
 *   The longest hit over all breakpoints is read (`cache_read_input_tokens`).
 * - `cache_creation_input_tokens` is what lies between the read prefix and the last breakpoint
 *   written; `input_tokens` is the rest (after the last breakpoint, or all that was not cached).
 * - An entry lives 5 minutes from its last use; a hit refreshes it. Entries are per key and
 *   model.
 *
 * Tokens are estimated, not tokenized: a block's JSON length / 4, rounded up. The estimate is
 * the same for every request, which is all the ratios need.
 */
import { createHash } from 'node:crypto';
import type { Usage } from '../../main/core/agent/protocol.js';

/** Anthropic's limit on `cache_control` blocks in one request. */
export const MAX_CACHE_BREAKPOINTS = 4;

/** How far back from a breakpoint a hit is looked for, the breakpoint itself included. */
export const CACHE_LOOKBACK_BLOCKS = 20;

/** The default lifetime of an ephemeral cache entry after its last use. */
export const CACHE_TTL_MS = 5 * 60 * 1000;

export interface PromptCacheOptions {
  /**
   * Tokens a prefix needs before it is cached. The real API's minimum is 1024 tokens for most
   * models (2048 or 4096 for some); the fake's default of 0 caches any prefix.
   * @default 0
   */
  minCacheableTokens?: number;
  /** How long an entry lives after its last use. @default 300_000 (5 minutes) */
  ttlMs?: number;
  /** The cache's clock, in epoch ms; tests move it to expire entries. @default Date.now */
  now?: () => number;
}

/** The parts of a Messages request body the cache looks at. */
export interface CacheableRequest {
  model: string;
  tools?: ReadonlyArray<Record<string, unknown>> | undefined;
  system?: string | ReadonlyArray<Record<string, unknown>> | undefined;
  messages: ReadonlyArray<{
    role: string;
    content: string | ReadonlyArray<Record<string, unknown>>;
  }>;
}

/** What one request was billed, in the protocol's names. Output tokens are not the cache's. */
export type InputBilling = Pick<Usage, 'inputTokens' | 'cacheReadTokens' | 'cacheWriteTokens'>;

/** A request the API would refuse for its cache marks (more than 4 breakpoints). */
export class CacheRequestError extends Error {
  override readonly name = 'CacheRequestError';
}

interface PromptBlock {
  /** The cumulative hash of the prompt through this block: the cache key of its prefix. */
  prefixKey: string;
  /** Tokens of the prompt through this block. */
  prefixTokens: number;
  breakpoint: boolean;
}

/** A prompt cache for one fake server: entries by key, with their last use. */
export class PromptCache {
  private readonly entries = new Map<string, number>();
  private readonly minTokens: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(opts: PromptCacheOptions = {}) {
    this.minTokens = opts.minCacheableTokens ?? 0;
    this.ttlMs = opts.ttlMs ?? CACHE_TTL_MS;
    this.now = opts.now ?? Date.now;
  }

  /** Live entries (for tests). */
  get size(): number {
    this.evictExpired(this.now());
    return this.entries.size;
  }

  /** Forgets every entry. */
  clear(): void {
    this.entries.clear();
  }

  /**
   * Bills one request and updates the cache as the API would: the longest hit within the
   * lookback of any breakpoint is read (and refreshed), every breakpoint past it is written.
   * @param account the credential: caches are never shared between accounts
   * @throws {CacheRequestError} when the request has more than 4 breakpoints
   */
  bill(request: CacheableRequest, account = ''): InputBilling {
    const problem = cacheBreakpointProblem(request);
    if (problem) throw new CacheRequestError(problem);
    const blocks = promptBlocks(request, `${account}\u0000${request.model}`);
    const breakpoints = blocks.flatMap((block, index) => (block.breakpoint ? [index] : []));
    const now = this.now();
    this.evictExpired(now);
    const total = blocks.at(-1)?.prefixTokens ?? 0;

    let hit = -1;
    for (const breakpoint of breakpoints) {
      const oldest = Math.max(0, breakpoint - CACHE_LOOKBACK_BLOCKS + 1);
      for (let at = breakpoint; at >= oldest && at > hit; at--) {
        if (this.entries.has(blocks[at]!.prefixKey)) {
          hit = at;
          break;
        }
      }
    }
    const read = hit >= 0 ? blocks[hit]!.prefixTokens : 0;
    if (hit >= 0) this.entries.set(blocks[hit]!.prefixKey, now);

    let written = read;
    for (const breakpoint of breakpoints) {
      const block = blocks[breakpoint]!;
      if (breakpoint <= hit) {
        // Already cached (a hit at or past it): its use refreshes it.
        if (this.entries.has(block.prefixKey)) this.entries.set(block.prefixKey, now);
        continue;
      }
      if (block.prefixTokens < this.minTokens) continue;
      this.entries.set(block.prefixKey, now);
      written = Math.max(written, block.prefixTokens);
    }
    return {
      cacheReadTokens: read,
      cacheWriteTokens: written - read,
      inputTokens: total - written,
    };
  }

  private evictExpired(now: number): void {
    for (const [key, lastUsed] of this.entries) {
      if (now - lastUsed >= this.ttlMs) this.entries.delete(key);
    }
  }
}

/**
 * Why the API would refuse the request's cache marks (more than 4 breakpoints), or null.
 * Only top-level blocks count: a mark nested in a tool result is not one the API reads.
 */
export function cacheBreakpointProblem(request: CacheableRequest): string | null {
  const marked = (block: Record<string, unknown>): boolean =>
    block.cache_control !== undefined && block.cache_control !== null;
  const count =
    (request.tools ?? []).filter(marked).length +
    asBlocks(request.system).filter(marked).length +
    request.messages.reduce(
      (sum, message) => sum + asBlocks(message.content).filter(marked).length,
      0,
    );
  return count > MAX_CACHE_BREAKPOINTS
    ? `A maximum of ${MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found ${count}.`
    : null;
}

/** The estimated tokens of one block: its JSON length / 4, rounded up, at least 1. */
export function estimateTokens(block: unknown): number {
  return Math.max(1, Math.ceil(JSON.stringify(block).length / 4));
}

/**
 * The request as one sequence of blocks in cache order (tools → system → messages), each
 * with the key and size of the prefix ending at it. `cache_control` is not part of a block's
 * content: moving a breakpoint does not change the prompt.
 */
function promptBlocks(request: CacheableRequest, scope: string): PromptBlock[] {
  const parts: Array<{ text: string; tokens: number; breakpoint: boolean }> = [];
  const add = (kind: string, block: Record<string, unknown>): void => {
    const { cache_control: mark, ...content } = block;
    parts.push({
      text: `${kind}\u0000${JSON.stringify(content)}`,
      tokens: estimateTokens(content),
      breakpoint: mark !== undefined && mark !== null,
    });
  };
  for (const tool of request.tools ?? []) add('tool', tool);
  for (const block of asBlocks(request.system)) add('system', block);
  request.messages.forEach((message, index) => {
    asBlocks(message.content).forEach((block, at) => {
      // The role and where a message starts are part of the rendered prompt.
      add(`${message.role}${at === 0 ? `#${index}` : ''}`, block);
    });
  });

  const blocks: PromptBlock[] = [];
  let key = createHash('sha256').update(scope).digest('hex');
  let tokens = 0;
  for (const part of parts) {
    key = createHash('sha256').update(key).update(part.text).digest('hex');
    tokens += part.tokens;
    blocks.push({ prefixKey: key, prefixTokens: tokens, breakpoint: part.breakpoint });
  }
  return blocks;
}

function asBlocks(
  content: string | ReadonlyArray<Record<string, unknown>> | undefined,
): ReadonlyArray<Record<string, unknown>> {
  if (content === undefined) return [];
  return typeof content === 'string' ? [{ type: 'text', text: content }] : content;
}

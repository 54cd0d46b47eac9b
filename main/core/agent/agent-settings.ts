/**
 * What a group's settings change in its model calls: the model, and Anthropic's server-side web
 * tools (DESIGN.md §1: "Web search and fetch go through Anthropic's server-side tools, via the
 * broker").
 *
 * The container keeps `--network none`. When a group has web search (on by default) or web fetch
 * (off by default) on, the broker adds the server tool to the group's requests; Anthropic runs
 * it, and answers with `server_tool_use` and `web_search_tool_result` / `web_fetch_tool_result`
 * blocks that the runner keeps in the conversation and sends back. The container never asks for
 * a server tool itself: its tool definitions are custom tools only (content-policy.ts).
 *
 * Web fetch is off by default because a prompt-injected agent can put data into a URL it
 * fetches. When a group has a feature off, none of that feature's blocks reach the API, not even
 * old ones from its stored conversation ({@link withoutDisabledWebBlocks}): a forged
 * `server_tool_use` at the end of an assistant message would otherwise ask Anthropic to run it.
 */
import { EMPTY_REPLY } from './conversation.js';
import type { HostFeatures } from './content-policy.js';
import type { ContentBlock, MessageParam } from './protocol.js';

/** The settings of a group that shape its model calls (from the store's `Group`). */
export interface GroupModelSettings {
  /** The group's model; null for the configured default (`CLAWBAR_MODEL`). */
  model: string | null;
  /** Anthropic's server-side web search. */
  webSearch: boolean;
  /** Anthropic's server-side web fetch. */
  webFetch: boolean;
}

/**
 * What a model name must look like: Anthropic's own names (`claude-sonnet-4-6`,
 * `claude-3-5-haiku-latest`, `claude-opus-4-1-20250805`). Checked where a name comes in (the CLI)
 * and again before each call, so that nothing else reaches the request's `model` field.
 */
export const MODEL_NAME_PATTERN = /^claude-[a-z0-9.-]{1,80}$/;

/** Why `name` is not a model name, in words that say how to fix it; null when it is one. */
export function modelNameProblem(name: string): string | null {
  if (MODEL_NAME_PATTERN.test(name)) return null;
  const shown = JSON.stringify(name.length > 90 ? `${name.slice(0, 90)}…` : name);
  return `${shown} is not a model name: give an Anthropic model id such as claude-sonnet-4-6 (lowercase, "claude-" then letters, digits, dots and dashes)`;
}

/**
 * The most web searches one model request may run (each is billed by Anthropic on top of the
 * tokens). Past it the API answers the search with a `max_uses_exceeded` error block.
 * @default 5
 */
export const WEB_SEARCH_MAX_USES = 5;

/**
 * The most pages one model request may fetch. Low on purpose: every fetch is a request to a URL
 * the model picked, and each page's text costs input tokens.
 * @default 3
 */
export const WEB_FETCH_MAX_USES = 3;

/**
 * The most tokens of one fetched page that go into the context; longer pages are cut by the
 * API, so one huge page cannot fill a turn's budget.
 * @default 20000
 */
export const WEB_FETCH_MAX_CONTENT_TOKENS = 20_000;

/**
 * The beta header the web fetch tool was introduced under. Sent only with requests that offer
 * web fetch; the SDK's types list the tool as generally available, and the API ignores a
 * beta it no longer needs.
 */
export const WEB_FETCH_BETA = 'web-fetch-2025-09-10';

/** Anthropic's web search tool, as the broker offers it. */
export interface WebSearchToolDefinition {
  type: 'web_search_20250305';
  name: 'web_search';
  max_uses: number;
}

/** Anthropic's web fetch tool, as the broker offers it. */
export interface WebFetchToolDefinition {
  type: 'web_fetch_20250910';
  name: 'web_fetch';
  max_uses: number;
  max_content_tokens: number;
}

export type ServerToolDefinition = WebSearchToolDefinition | WebFetchToolDefinition;

/** The names the server tools take; a container's custom tool may not use one. */
export const SERVER_TOOL_NAMES: ReadonlySet<string> = new Set(['web_search', 'web_fetch']);

/** The server tools the broker adds to a request of a group with these settings. */
export function serverToolsFor(settings: GroupModelSettings): ServerToolDefinition[] {
  const tools: ServerToolDefinition[] = [];
  if (settings.webSearch) {
    tools.push({ type: 'web_search_20250305', name: 'web_search', max_uses: WEB_SEARCH_MAX_USES });
  }
  if (settings.webFetch) {
    tools.push({
      type: 'web_fetch_20250910',
      name: 'web_fetch',
      max_uses: WEB_FETCH_MAX_USES,
      max_content_tokens: WEB_FETCH_MAX_CONTENT_TOKENS,
    });
  }
  return tools;
}

/** The beta headers a request of a group with these settings needs; none without web fetch. */
export function betasFor(settings: GroupModelSettings): string[] {
  return settings.webFetch ? [WEB_FETCH_BETA] : [];
}

/** The content features a request of a group with these settings may carry and bring back. */
export function hostFeaturesFor(settings: GroupModelSettings | undefined): HostFeatures {
  return {
    thinking: false,
    webSearch: settings?.webSearch ?? false,
    webFetch: settings?.webFetch ?? false,
  };
}

/** Which server tool a block belongs to: the feature that produces it, or null for none. */
function webFeatureOf(block: ContentBlock): 'webSearch' | 'webFetch' | null {
  switch (block.type) {
    case 'web_search_tool_result':
      return 'webSearch';
    case 'web_fetch_tool_result':
      return 'webFetch';
    case 'server_tool_use':
      return block.name === 'web_search'
        ? 'webSearch'
        : block.name === 'web_fetch'
          ? 'webFetch'
          : null;
    default:
      return null;
  }
}

/**
 * The messages without the blocks of web features that are off for this request: the calls
 * and results of a server tool the group no longer has, and search citations on text when
 * search is off. A group that turns a feature off keeps its conversation (the text around the
 * searches stays), and the API never sees a call to a tool it was not offered. An assistant
 * message left with nothing says {@link EMPTY_REPLY}, as an empty answer does. Pure.
 */
export function withoutDisabledWebBlocks(
  messages: readonly MessageParam[],
  features: HostFeatures,
): MessageParam[] {
  const enabled = { webSearch: features.webSearch, webFetch: features.webFetch ?? false };
  return messages.map((message) => {
    if (typeof message.content === 'string') return message;
    let changed = false;
    const kept: ContentBlock[] = [];
    for (const block of message.content) {
      const feature = webFeatureOf(block);
      if (feature !== null && !enabled[feature]) {
        changed = true;
        continue;
      }
      if (block.type === 'text' && !enabled.webSearch && Array.isArray(block.citations)) {
        // Citations point into search results that are no longer sent.
        const { citations: _dropped, ...plain } = block;
        kept.push(plain as ContentBlock);
        changed = true;
        continue;
      }
      kept.push(block);
    }
    if (!changed) return message;
    const content: ContentBlock[] = kept.length > 0 ? kept : [{ type: 'text', text: EMPTY_REPLY }];
    return { role: message.role, content };
  });
}

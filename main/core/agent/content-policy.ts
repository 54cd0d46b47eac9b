/**
 * What the model broker lets through to the Anthropic API, and what it passes back.
 *
 * Any process in a container can forge a `model.request` frame, and the API acts on some
 * content by itself: an `image` or `document` whose source is a URL is fetched by Anthropic's
 * servers, so data would leave through the host even with the container's network off, and a
 * `file` or `container_upload` block reaches into the account's stored files. So the broker
 * forwards only what the runner needs, as an allowlist: text, tool_use, tool_result, base64
 * images and PDFs, and the blocks that features the host itself turned on produce (thinking,
 * server-side tools). Everything else, at any depth, is refused with a sentence that says where
 * and why, before any call is made.
 *
 * Each allowed block is a zod strict schema, so a field the API would act on but the runner
 * never sends (a `citations` config, `image` transformations, a `caller` of another kind) is
 * refused too. The nesting (messages, their blocks, a tool_result's items) is walked here,
 * so that each refusal names the block it is about.
 *
 * The fields are those the runner sends (sandbox-images/agent/runner/agent-loop.ts and its
 * tools) plus those the API returns in answers that the runner sends back in the next request
 * (`citations: null` on text, `caller: { type: 'direct' }` on tool_use). `cache_control` is
 * accepted and dropped: where the cache breakpoints go, and so what is billed, is the broker's
 * choice.
 */
import { z } from 'zod';
import type { ContentBlock, MessageParam, ToolDefinition } from './protocol.js';

/**
 * Features the host turns on in its API calls, which make the API answer with block types of
 * their own that the runner then sends back. Turning one on here only lets those blocks
 * through; the broker must also ask for the feature in its request body.
 */
export interface HostFeatures {
  /** Extended thinking: `thinking` and `redacted_thinking` blocks in answers. */
  thinking: boolean;
  /**
   * Anthropic's server-side web search: `server_tool_use` and `web_search_tool_result` blocks,
   * and `web_search_result_location` citations on text.
   */
  webSearch: boolean;
  /**
   * Anthropic's server-side web fetch: `server_tool_use` blocks named `web_fetch` and
   * `web_fetch_tool_result` blocks (the fetched page as a plain-text or PDF document).
   * @default false
   */
  webFetch?: boolean;
}

/** Plain tool use, nothing more. */
export const NO_HOST_FEATURES: Readonly<HostFeatures> = Object.freeze({
  thinking: false,
  webSearch: false,
  webFetch: false,
});

/**
 * Every feature the model broker can turn on in its requests (web search and web fetch, per
 * group: web-tools.ts), and so the blocks their answers bring. Everything that judges a stored
 * conversation by what the broker would forward (the turn check, the stored transcript, the
 * shape check of a request's history) uses this set, so that nothing is kept that a later
 * request would be refused for; the broker then sends a group only the blocks of the features
 * that group has on (`withoutDisabledWebBlocks`), and accepts answers by that narrower set.
 */
export const BROKER_FEATURES: Readonly<HostFeatures> = Object.freeze({
  thinking: false,
  webSearch: true,
  webFetch: true,
});

/** The image types the Messages API takes in a base64 source. */
export const IMAGE_MEDIA_TYPES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'] as const;

/** A request as it may be sent: every block checked, every `cache_control` dropped. */
export interface CheckedRequest {
  system: string;
  messages: MessageParam[];
  tools: ToolDefinition[];
}

export type PolicyResult<T> = { ok: true; value: T } | { ok: false; reason: string };

// ── block shapes ────────────────────────────────────────────────────────────

/** Accepted and then dropped: the broker sets its own breakpoints. */
const cacheControl = z
  .strictObject({ type: z.literal('ephemeral'), ttl: z.enum(['5m', '1h']).optional() })
  .nullable()
  .optional();

/** Standard base64, as the API takes it; checked so nothing else hides in `data`. */
const base64Data = z
  .string()
  .min(1)
  .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'is not base64 data');

/** Ids as the API makes them; it refuses others, and they appear in error messages. */
const blockId = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[a-zA-Z0-9_-]+$/, 'is not a valid id');

/** Who made a tool call. Only the model itself: other callers need server tools. */
const directCaller = z.strictObject({ type: z.literal('direct') }).optional();

const webSearchCitation = z.strictObject({
  type: z.literal('web_search_result_location'),
  url: z.string(),
  title: z.string().nullable(),
  encrypted_index: z.string(),
  cited_text: z.string(),
});

function textBlock(features: HostFeatures) {
  return z.strictObject({
    type: z.literal('text'),
    text: z.string(),
    cache_control: cacheControl,
    // The API answers with `citations: null` when nothing is cited; citations themselves only
    // come from features the host turned on.
    citations: features.webSearch
      ? z.array(webSearchCitation).nullable().optional()
      : z.null().optional(),
  });
}

const imageBlock = z.strictObject({
  type: z.literal('image'),
  source: z.strictObject({
    type: z.literal('base64'),
    media_type: z.enum(IMAGE_MEDIA_TYPES),
    data: base64Data,
  }),
  cache_control: cacheControl,
});

/** A PDF, base64 only. No `citations` config: the host has no use for document citations. */
const documentBlock = z.strictObject({
  type: z.literal('document'),
  source: z.strictObject({
    type: z.literal('base64'),
    media_type: z.literal('application/pdf'),
    data: base64Data,
  }),
  title: z.string().nullable().optional(),
  context: z.string().nullable().optional(),
  cache_control: cacheControl,
});

const toolUseBlock = z.strictObject({
  type: z.literal('tool_use'),
  id: blockId,
  name: z.string().min(1).max(200),
  input: z.record(z.string(), z.unknown()),
  caller: directCaller,
  cache_control: cacheControl,
});

/** Its `content` array is checked item by item against {@link TOOL_RESULT_ITEMS}. */
const toolResultBlock = z.strictObject({
  type: z.literal('tool_result'),
  tool_use_id: blockId,
  content: z.union([z.string(), z.array(z.unknown())]).optional(),
  is_error: z.boolean().optional(),
  cache_control: cacheControl,
});

const thinkingBlock = z.strictObject({
  type: z.literal('thinking'),
  thinking: z.string(),
  signature: z.string(),
});

const redactedThinkingBlock = z.strictObject({
  type: z.literal('redacted_thinking'),
  data: z.string(),
});

/** A call of one of the server tools the host turned on (`web_search`, `web_fetch`). */
function serverToolUseBlock(names: readonly [string, ...string[]]) {
  return z.strictObject({
    type: z.literal('server_tool_use'),
    id: blockId,
    name: z.enum(names),
    input: z.record(z.string(), z.unknown()),
    caller: directCaller,
    cache_control: cacheControl,
  });
}

const webSearchToolResultBlock = z.strictObject({
  type: z.literal('web_search_tool_result'),
  tool_use_id: blockId,
  content: z.union([
    z.array(
      z.strictObject({
        type: z.literal('web_search_result'),
        url: z.string(),
        title: z.string(),
        encrypted_content: z.string(),
        page_age: z.string().nullable().optional(),
      }),
    ),
    z.strictObject({ type: z.literal('web_search_tool_result_error'), error_code: z.string() }),
  ]),
  caller: directCaller,
  cache_control: cacheControl,
});

/**
 * A fetched page as the API returns it: plain text, or a PDF in base64. Its content is data for
 * the model; only the API's own fetch (which the broker offers per group) makes a request.
 */
const fetchedDocument = z.strictObject({
  type: z.literal('document'),
  source: z.union([
    z.strictObject({
      type: z.literal('text'),
      media_type: z.literal('text/plain'),
      data: z.string(),
    }),
    z.strictObject({
      type: z.literal('base64'),
      media_type: z.literal('application/pdf'),
      data: base64Data,
    }),
  ]),
  title: z.string().nullable().optional(),
  citations: z.strictObject({ enabled: z.boolean() }).nullable().optional(),
});

const webFetchToolResultBlock = z.strictObject({
  type: z.literal('web_fetch_tool_result'),
  tool_use_id: blockId,
  content: z.union([
    z.strictObject({
      type: z.literal('web_fetch_result'),
      url: z.string(),
      content: fetchedDocument,
      retrieved_at: z.string().nullable().optional(),
    }),
    z.strictObject({ type: z.literal('web_fetch_tool_result_error'), error_code: z.string() }),
  ]),
  caller: directCaller,
  cache_control: cacheControl,
});

type BlockSchema = z.ZodObject;
type Role = MessageParam['role'];

/** The block types each role may carry, for the features the host turned on. */
interface Allowlist {
  user: ReadonlyMap<string, BlockSchema>;
  assistant: ReadonlyMap<string, BlockSchema>;
  /** What a tool_result's content array may hold: text and base64 images. */
  toolResultItems: ReadonlyMap<string, BlockSchema>;
}

function allowlistFor(features: HostFeatures): Allowlist {
  const text = textBlock(features);
  const assistant = new Map<string, BlockSchema>([
    ['text', text],
    ['tool_use', toolUseBlock],
  ]);
  if (features.thinking) {
    assistant.set('thinking', thinkingBlock);
    assistant.set('redacted_thinking', redactedThinkingBlock);
  }
  const serverTools = [
    ...(features.webSearch ? ['web_search'] : []),
    ...(features.webFetch ? ['web_fetch'] : []),
  ];
  const [firstServerTool, ...moreServerTools] = serverTools;
  if (firstServerTool !== undefined) {
    assistant.set('server_tool_use', serverToolUseBlock([firstServerTool, ...moreServerTools]));
  }
  if (features.webSearch) assistant.set('web_search_tool_result', webSearchToolResultBlock);
  if (features.webFetch) assistant.set('web_fetch_tool_result', webFetchToolResultBlock);
  return {
    user: new Map<string, BlockSchema>([
      ['text', text],
      ['image', imageBlock],
      ['document', documentBlock],
      ['tool_result', toolResultBlock],
    ]),
    assistant,
    toolResultItems: new Map<string, BlockSchema>([
      ['text', text],
      ['image', imageBlock],
    ]),
  };
}

/** Built once per feature set: the schemas are immutable. */
const allowlists = new Map<string, Allowlist>();

function allowlist(features: HostFeatures): Allowlist {
  const key = `${features.thinking ? 't' : '-'}${features.webSearch ? 'w' : '-'}${features.webFetch ? 'f' : '-'}`;
  let list = allowlists.get(key);
  if (!list) {
    list = allowlistFor(features);
    allowlists.set(key, list);
  }
  return list;
}

/** Block types that a host feature produces, and the feature's name for the refusal. */
const FEATURE_BLOCKS: Record<string, string> = {
  thinking: 'extended thinking',
  redacted_thinking: 'extended thinking',
  server_tool_use: 'server-side tools',
  web_search_tool_result: 'server-side tools',
  web_fetch_tool_result: 'server-side tools',
  code_execution_tool_result: 'server-side tools',
  bash_code_execution_tool_result: 'server-side tools',
  text_editor_code_execution_tool_result: 'server-side tools',
  tool_search_tool_result: 'server-side tools',
};

// ── requests ────────────────────────────────────────────────────────────────

const messageShape = z.strictObject({
  role: z.enum(['user', 'assistant']),
  content: z.union([z.string(), z.array(z.unknown())]),
});

const toolShape = z.strictObject({
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'is not a valid tool name'),
  description: z.string().max(10_000),
  input_schema: z.looseObject({ type: z.literal('object') }),
});

/** How deep a tool's JSON schema may nest; the runner's are 3 or 4 levels deep. */
const MAX_SCHEMA_DEPTH = 32;

/**
 * Checks a request against the allowlist and returns the copy to send: only checked fields,
 * no `cache_control`. Fields of the request other than system, messages and tools are not
 * looked at; the broker never forwards them. Pure; never throws.
 */
export function checkRequest(
  request: { system: unknown; messages: unknown; tools: unknown },
  features: HostFeatures = NO_HOST_FEATURES,
): PolicyResult<CheckedRequest> {
  if (typeof request.system !== 'string') {
    return refuse('the system prompt is not plain text');
  }
  const tools = checkTools(request.tools);
  if (!tools.ok) return tools;
  if (!Array.isArray(request.messages) || request.messages.length === 0) {
    return refuse('there are no messages');
  }
  const messages = checkMessages(request.messages, features);
  if (!messages.ok) return messages;
  return {
    ok: true,
    value: { system: request.system, messages: messages.value, tools: tools.value },
  };
}

/**
 * Checks a list of messages against the allowlist, as {@link checkRequest} does for a request's,
 * and returns the copy to send. An empty list passes. For what is kept to be sent later: a turn
 * before it joins the stored transcript, and the stored transcript as it is read back, so that
 * a block the broker refuses can never wedge a group's conversation. Pure; never throws.
 */
export function checkMessages(
  raw: unknown,
  features: HostFeatures = NO_HOST_FEATURES,
): PolicyResult<MessageParam[]> {
  if (!Array.isArray(raw)) return refuse('the messages are not a list');
  const list = allowlist(features);
  const messages: MessageParam[] = [];
  for (const [index, message] of raw.entries()) {
    const where = `message ${index + 1}`;
    const parsed = messageShape.safeParse(message);
    if (!parsed.success) return refuse(`${where} ${describeIssue(parsed.error)}`);
    const { role, content } = parsed.data;
    if (typeof content === 'string') {
      messages.push({ role, content });
      continue;
    }
    const blocks: ContentBlock[] = [];
    for (const [blockIndex, block] of content.entries()) {
      const checked = checkBlock(block, role, list, `content block ${blockIndex + 1} of ${where}`);
      if (!checked.ok) return checked;
      blocks.push(checked.value);
    }
    messages.push({ role, content: blocks });
  }
  return { ok: true, value: messages };
}

function checkTools(raw: unknown): PolicyResult<ToolDefinition[]> {
  if (!Array.isArray(raw)) return refuse('the tool list is not a list');
  const tools: ToolDefinition[] = [];
  const names = new Map<string, number>();
  for (const [index, tool] of raw.entries()) {
    const name = (tool as { name?: unknown } | null)?.name;
    const where = `tool ${index + 1}${typeof name === 'string' ? ` (${quote(name)})` : ''}`;
    const parsed = toolShape.safeParse(tool);
    if (!parsed.success) return refuse(`${where} ${describeIssue(parsed.error)}`);
    const earlier = names.get(parsed.data.name);
    if (earlier !== undefined) return refuse(`${where} has the same name as tool ${earlier}`);
    names.set(parsed.data.name, index + 1);
    const schemaProblem = jsonSchemaProblem(parsed.data.input_schema, 0);
    if (schemaProblem) return refuse(`${where} has an input_schema that ${schemaProblem}`);
    tools.push(parsed.data);
  }
  return { ok: true, value: tools };
}

/**
 * Why a tool's JSON schema is not plain, or null. A `$ref` must point inside the schema
 * (`#…`): the API has no business resolving anything else.
 */
function jsonSchemaProblem(value: unknown, depth: number): string | null {
  if (depth > MAX_SCHEMA_DEPTH) return `nests deeper than ${MAX_SCHEMA_DEPTH} levels`;
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = jsonSchemaProblem(item, depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  for (const [key, inner] of Object.entries(value)) {
    if (
      (key === '$ref' || key === '$dynamicRef' || key === '$recursiveRef') &&
      !(typeof inner === 'string' && inner.startsWith('#'))
    ) {
      return `has a ${key} outside the schema (${quote(String(inner))})`;
    }
    const problem = jsonSchemaProblem(inner, depth + 1);
    if (problem) return problem;
  }
  return null;
}

function checkBlock(
  block: unknown,
  role: Role,
  list: Allowlist,
  where: string,
): PolicyResult<ContentBlock> {
  const kind = blockKind(block);
  if (kind === null) return refuse(`${where} is not a content block (it has no type)`);
  const schema = list[role].get(kind);
  if (!schema) return refuse(`${where} ${whyNotAllowed(kind, role, list)}`);
  const source = sourceProblem(kind, block);
  if (source) return refuse(`${where} ${source}`);
  const parsed = schema.safeParse(block);
  if (!parsed.success) {
    return refuse(`${where} (${article(kind)} ${kind} block) ${describeIssue(parsed.error)}`);
  }
  const checked = withoutCacheControl(parsed.data as ContentBlock);
  if (kind === 'tool_result' && Array.isArray(checked.content)) {
    const items: ContentBlock[] = [];
    for (const [index, item] of checked.content.entries()) {
      const itemWhere = `item ${index + 1} of the tool_result content in ${where}`;
      const checkedItem = checkItem(item, list, itemWhere);
      if (!checkedItem.ok) return checkedItem;
      items.push(checkedItem.value);
    }
    checked.content = items;
  }
  return { ok: true, value: checked };
}

function checkItem(item: unknown, list: Allowlist, where: string): PolicyResult<ContentBlock> {
  const kind = blockKind(item);
  if (kind === null) return refuse(`${where} is not a content block (it has no type)`);
  const schema = list.toolResultItems.get(kind);
  if (!schema) {
    return refuse(
      `${where} is a block of type ${quote(kind)}; a tool_result may hold only text and base64 images`,
    );
  }
  const source = sourceProblem(kind, item);
  if (source) return refuse(`${where} ${source}`);
  const parsed = schema.safeParse(item);
  if (!parsed.success)
    return refuse(`${where} (${article(kind)} ${kind} block) ${describeIssue(parsed.error)}`);
  return { ok: true, value: withoutCacheControl(parsed.data as ContentBlock) };
}

/** Says why a block type is refused in this role, naming the feature it would need. */
function whyNotAllowed(kind: string, role: Role, list: Allowlist): string {
  const other: Role = role === 'user' ? 'assistant' : 'user';
  if (list[other].has(kind)) {
    return `is a ${kind} block in a ${role} message, where the API does not take it`;
  }
  const feature = FEATURE_BLOCKS[kind];
  if (feature) return `is a ${kind} block, but the host has not turned ${feature} on`;
  return `is a block of type ${quote(kind)}, which the host does not forward`;
}

/**
 * The refusal for an image or document whose source is not base64, worded for the one attack
 * that matters: a `url` source makes Anthropic's servers fetch it.
 */
function sourceProblem(kind: string, block: unknown): string | null {
  if (kind !== 'image' && kind !== 'document') return null;
  const source = (block as { source?: unknown }).source;
  const type = (source as { type?: unknown } | null | undefined)?.type;
  if (type === 'base64') return null;
  const article = kind === 'image' ? 'an image' : 'a document';
  if (typeof type !== 'string') return `is ${article} without a source type`;
  return `is ${article} with a ${quote(type, false)} source; only base64 sources are allowed`;
}

/** Removes `cache_control` from a checked block; a tool_result's items are checked on their own. */
function withoutCacheControl(block: ContentBlock): ContentBlock {
  const { cache_control: _dropped, ...rest } = block;
  return rest as ContentBlock;
}

// ── answers ─────────────────────────────────────────────────────────────────

/**
 * Checks the content of an API answer before it goes to the runner, which sends it back in
 * its next request: a block the request check would refuse then would wedge the group's
 * conversation. Fields the API added that the host does not know are dropped (the API takes
 * the block without them); a block type the host does not know refuses the answer.
 */
export function checkAnswer(
  content: readonly unknown[],
  features: HostFeatures = NO_HOST_FEATURES,
): PolicyResult<ContentBlock[]> {
  const list = allowlist(features);
  const blocks: ContentBlock[] = [];
  for (const [index, block] of content.entries()) {
    const where = `content block ${index + 1} of the answer`;
    const kind = blockKind(block);
    const schema = kind === null ? undefined : list.assistant.get(kind);
    if (kind === null || !schema) {
      return refuse(`${where} is of type ${quote(kind ?? 'none')}, which the host does not handle`);
    }
    const known = Object.fromEntries(
      Object.entries(block as object).filter(([key]) => key in schema.shape),
    );
    const parsed = schema.safeParse(known);
    if (!parsed.success)
      return refuse(`${where} (${article(kind)} ${kind} block) ${describeIssue(parsed.error)}`);
    blocks.push(parsed.data as ContentBlock);
  }
  return { ok: true, value: blocks };
}

// ── wording ─────────────────────────────────────────────────────────────────

function refuse(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

/** "a" or "an", by how the block type is spelt: "an image block", "a text block". */
function article(kind: string): string {
  return /^[aeiou]/i.test(kind) ? 'an' : 'a';
}

function blockKind(block: unknown): string | null {
  if (typeof block !== 'object' || block === null || Array.isArray(block)) return null;
  const type = (block as { type?: unknown }).type;
  return typeof type === 'string' && type !== '' ? type : null;
}

/** The first problem zod found, as the end of a sentence about the block or message. */
function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'is malformed';
  if (issue.code === 'unrecognized_keys') {
    const fields = issue.keys.map((key) => quote(key)).join(', ');
    const at = issue.path.length > 0 ? ` in ${fieldPath(issue.path)}` : '';
    return issue.keys.length === 1
      ? `has a field the host does not forward${at}: ${fields}`
      : `has fields the host does not forward${at}: ${fields}`;
  }
  if (issue.path.length === 0) return `is malformed (${issue.message})`;
  return `has an invalid ${fieldPath(issue.path)} (${issue.message})`;
}

function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((part) => (typeof part === 'number' ? `[${part}]` : String(part))).join('.');
}

/**
 * A container-chosen string, quoted and cut short, for a refusal: it goes to logs and back to
 * the container, so it must stay one short line.
 */
function quote(text: string, json = true): string {
  const short = text.length > 64 ? `${text.slice(0, 64)}…` : text;
  return json ? JSON.stringify(short) : JSON.stringify(short).slice(1, -1);
}

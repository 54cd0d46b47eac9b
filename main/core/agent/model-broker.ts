/**
 * The model broker: the host makes every model call on the agents' behalf.
 *
 * Containers have no network and never see the API key. A runner sends a `model.request`
 * frame (system, messages, tools, max tokens); the host passes it to
 * {@link ModelBroker.complete}, which calls Anthropic through the real SDK and returns the
 * content, stop reason and usage for the `model.result` frame, or throws a {@link ModelError}
 * for `model.error`.
 *
 * A request is untrusted: any process in the container can forge one. So:
 * - Only an allowlist of content reaches the API (content-policy.ts): a URL or file source,
 *   which Anthropic would fetch or read on the container's behalf, or any block or field the
 *   runner does not need, is refused before any call, as a non-retryable `refused` error.
 * - Everything that costs money is the broker's choice: the model comes from config or the
 *   group's settings, the output ceiling is the host's (the run's `maxTokens` limit, applied by
 *   AgentRun before the request gets here), server-side web tools and their `max_uses` caps are
 *   added here per the group's settings (agent-settings.ts), and prompt-cache breakpoints are
 *   set here.
 * - Usage is taken from the API's own answer and handed to the caller's `recordUsage` for
 *   every call, failed ones included when the API reported any; the container's own figures
 *   are never used.
 * - A {@link ModelError}'s message, which goes back to the container, carries no host detail.
 */
import Anthropic, { type ClientOptions } from '@anthropic-ai/sdk';
import type { Logger } from '../logger.js';
import { redactSecrets, registerSecret, serializeError } from '../redact.js';
import {
  betasFor,
  hostFeaturesFor,
  modelNameProblem,
  SERVER_TOOL_NAMES,
  serverToolsFor,
  withoutDisabledWebBlocks,
  type GroupModelSettings,
} from './agent-settings.js';
import { BROKER_FEATURES, checkAnswer, checkRequest } from './content-policy.js';
import {
  ModelError,
  abortedError,
  badAnswerError,
  refusedError,
  timeoutError,
  toModelError,
  type ModelErrorContext,
} from './model-errors.js';
import type { ContentBlock, MessageParam, ToolDefinition, Usage } from './protocol.js';

// Re-exported so that importers of the broker keep finding the error type here.
export { ModelError, type ModelErrorKind } from './model-errors.js';

/** @default 10 minutes */
export const DEFAULT_MODEL_TIMEOUT_MS = 10 * 60 * 1000;

/** Where the API lives when no base URL is configured. */
export const DEFAULT_ANTHROPIC_BASE_URL = 'https://api.anthropic.com';

export interface ModelBrokerDeps {
  /**
   * The Anthropic API key. It stays on the host: it is registered for redaction from every
   * log line ({@link registerSecret}), never put in an error message, and never sent to a
   * container. An empty key makes every call fail at once with a `no_key` {@link ModelError}.
   */
  apiKey: string;
  /**
   * The API's base URL. The environment is not read here (the config layer resolves
   * `ANTHROPIC_BASE_URL`), so what the broker calls is exactly what it was given.
   * @default 'https://api.anthropic.com'
   */
  baseURL?: string;
  /**
   * The model for every call whose group has none of its own ({@link CompleteOptions.settings}).
   * Requests cannot override it.
   */
  model: string;
  log: Logger;
  /**
   * The longest one {@link ModelBroker.complete} call may take, from sending the request to the
   * last streamed token, the SDK's retries included. Past it the call fails as `timeout`.
   * @default 600_000 (10 minutes)
   */
  timeoutMs?: number;
  /**
   * How many times the SDK retries a connection error, 408, 409, 429 or 5xx before giving up.
   * @default 2
   */
  maxRetries?: number;
  /**
   * Mark the system prompt and the conversation so far as cacheable, so that each step of a
   * tool loop re-reads the shared prefix from Anthropic's prompt cache instead of paying for it
   * again in full.
   * @default true
   */
  promptCaching?: boolean;
}

/** What a runner may ask for: the payload of a `model.request` frame. */
export interface ModelRequest {
  system: string;
  messages: MessageParam[];
  tools: ToolDefinition[];
  /**
   * Sent as is: the caller applies the host's cap first (`RunLimits.maxTokens`, per run, in
   * AgentRun), so there is one limit and its setting is the one that holds. A value that is
   * not a whole number of at least 1 is refused.
   */
  maxTokens: number;
}

export interface CompleteOptions {
  /** Aborting it cancels the call; it then fails as `aborted`. */
  signal?: AbortSignal;
  /** The group the call is for; only used in logs. */
  group?: string;
  /**
   * The group's settings that shape the call: its model (null: the configured one) and which
   * server-side web tools the broker adds. Read by the caller at each call, so a change applies
   * from the next one. Absent: the configured model and no web tools.
   */
  settings?: GroupModelSettings;
  /**
   * Told the tokens of each API answer, from the API's own figures: once per successful call,
   * and for a call that failed after the API reported usage (a stream cut off half-way).
   * The core records them per group and day. A throw is logged, never passed on: the call
   * itself succeeded.
   */
  recordUsage?: (usage: Usage) => void;
}

/**
 * What the core needs of a broker: {@link ModelBroker.complete}, with usage recording. An
 * interface so tests can stand in for it.
 */
export interface MeteredModelCaller {
  complete(req: ModelRequest, opts?: CompleteOptions): Promise<ModelResult>;
  /**
   * False when no API key is configured, so no call can succeed: the core then starts no run
   * at all and says what to fix. Absent means a key is there.
   */
  readonly hasKey?: boolean;
  /**
   * Uses this key for every call from now on (none: every call is refused). Calls already
   * under way finish with the key they started with. Absent where the key cannot change.
   */
  setApiKey?(key: string | undefined): void;
}

/** The payload of a `model.result` frame. */
export interface ModelResult {
  content: ContentBlock[];
  stopReason: string | null;
  usage: Usage;
}

/** Content block types that accept `cache_control` in a request. */
const CACHEABLE_BLOCK_TYPES = new Set([
  'text',
  'image',
  'document',
  'tool_use',
  'tool_result',
  'server_tool_use',
  'web_search_tool_result',
  'web_fetch_tool_result',
]);

/** Makes model calls for the agents with the host's key and the configured model. */
export class ModelBroker {
  private client: Anthropic | null;
  private readonly maxRetries: number;
  private readonly log: Logger;
  private readonly model: string;
  private readonly baseURL: string;
  private readonly timeoutMs: number;
  private readonly promptCaching: boolean;
  private readonly errorContext: ModelErrorContext;

  /** Whether a key was given; without one every call is refused (`no_key`). */
  get hasKey(): boolean {
    return this.client !== null;
  }

  constructor(deps: ModelBrokerDeps) {
    this.log = deps.log.child({ mod: 'broker' });
    this.model = deps.model;
    this.baseURL = deps.baseURL ?? DEFAULT_ANTHROPIC_BASE_URL;
    this.timeoutMs = deps.timeoutMs ?? DEFAULT_MODEL_TIMEOUT_MS;
    this.promptCaching = deps.promptCaching ?? true;
    this.maxRetries = deps.maxRetries ?? 2;
    this.errorContext = { baseURL: this.baseURL, model: this.model, timeoutMs: this.timeoutMs };
    this.client = this.clientFor(deps.apiKey);
  }

  /** A key the user entered in the app's Settings (or removed), without restarting. */
  setApiKey(key: string | undefined): void {
    this.client = this.clientFor(key ?? '');
    this.log.info({ keySet: this.client !== null }, 'the API key changed');
  }

  private clientFor(rawKey: string): Anthropic | null {
    const apiKey = rawKey.trim();
    // The API or a proxy may echo the key back in an error body; from here on every log line
    // and error message built with redactSecrets hides it.
    registerSecret(apiKey);
    // No client without a key: the SDK would otherwise fall back to its own credential chain
    // (environment, profile files) and the call would go out with credentials we did not choose.
    return apiKey
      ? new Anthropic({
          apiKey,
          baseURL: this.baseURL,
          timeout: this.timeoutMs,
          maxRetries: this.maxRetries,
          // The SDK logs to console by default; route it to pino, and only warnings and errors
          // (its debug lines carry request bodies).
          logger: sdkLogger(this.log),
          logLevel: 'warn',
          openTelemetry: false,
        })
      : null;
  }

  /**
   * Runs one model call and returns the whole assistant message. Streams under the hood, so
   * long answers do not hit the SDK's non-streaming limits.
   * @throws {ModelError} on every failure, with `retryable` set; `refused` (no call made) when
   *   the request holds content the host does not forward.
   */
  async complete(req: ModelRequest, opts: CompleteOptions = {}): Promise<ModelResult> {
    const { group } = opts;
    if (!this.client) {
      const error = new ModelError(
        'No Anthropic API key is set. Set ANTHROPIC_API_KEY or add the key in Settings.',
        { kind: 'no_key', retryable: false },
      );
      this.log.warn({ group, kind: error.kind }, 'model call refused: no API key');
      throw error;
    }
    if (opts.signal?.aborted) throw abortedError();

    const { settings } = opts;
    const model = settings?.model ?? this.model;
    // Checked again here, though the CLI checks it: a bad name must never reach the body.
    const modelProblem = settings?.model ? modelNameProblem(settings.model) : null;
    if (modelProblem) {
      const error = refusedError(`the group's model setting: ${modelProblem}`);
      this.log.warn({ group, kind: error.kind, reason: error.message }, 'model request refused');
      throw error;
    }
    const features = hostFeaturesFor(settings);
    // The history may hold blocks of any web feature the broker ever turned on for this group;
    // those of features now off are left out below, so the API sees only what it was offered.
    const checked = checkRequest(req, BROKER_FEATURES);
    const clash = checked.ok
      ? checked.value.tools.find((tool) => SERVER_TOOL_NAMES.has(tool.name))
      : undefined;
    if (!checked.ok || clash) {
      const reason = checked.ok
        ? `tool "${clash?.name}" has the name of a server-side tool the host adds itself`
        : checked.reason;
      const error = refusedError(reason);
      this.log.warn({ group, kind: error.kind, reason }, 'model request refused');
      throw error;
    }
    const { system, tools } = checked.value;
    const messages = withoutDisabledWebBlocks(checked.value.messages, features);
    const serverTools = settings ? serverToolsFor(settings) : [];
    const maxTokens = req.maxTokens;
    if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) {
      const error = refusedError(
        `max_tokens must be a whole number of at least 1, not ${maxTokens}`,
      );
      this.log.warn({ group, kind: error.kind, reason: error.message }, 'model request refused');
      throw error;
    }
    // Built field by field from the checked request, so nothing but these reaches the API: the
    // container cannot pick the model, the service tier, thinking budgets or anything else
    // billed.
    const apiTools: Anthropic.ToolUnion[] = [...tools.map(toApiTool), ...serverTools];
    const body: Anthropic.MessageStreamParams = {
      model,
      max_tokens: maxTokens,
      messages: this.withCacheBreakpoint(messages),
      ...(system ? { system: [this.withCacheMark({ type: 'text' as const, text: system })] } : {}),
      ...(apiTools.length > 0 ? { tools: this.withToolsBreakpoint(apiTools) } : {}),
    };
    const betas = settings ? betasFor(settings) : [];

    // One deadline over the whole call. The SDK's own timeout only covers the wait for response
    // headers of each attempt, so a stream that stalls half-way would otherwise hang forever.
    const deadline = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort();
    }, this.timeoutMs);
    const forwardAbort = (): void => deadline.abort();
    opts.signal?.addEventListener('abort', forwardAbort, { once: true });

    const started = Date.now();
    this.log.debug(
      {
        group,
        model,
        messages: messages.length,
        tools: tools.length,
        serverTools: serverTools.map((tool) => tool.name),
        maxTokens,
      },
      'model call started',
    );
    let stream: ReturnType<Anthropic['messages']['stream']> | null = null;
    let recorded = false;
    try {
      stream = this.client.messages.stream(body, {
        signal: deadline.signal,
        ...(betas.length > 0 ? { headers: { 'anthropic-beta': betas.join(',') } } : {}),
      });
      const message = await stream.finalMessage();
      const usage = usageOf(message.usage);
      recorded = true;
      this.record(opts, usage);
      // Checked on the way out too: the runner sends this content back in its next request,
      // where a block the check refuses would wedge the conversation.
      // By the group's features: the API answers only with blocks of the tools it was offered.
      const content = checkAnswer(message.content, features);
      if (!content.ok) throw badAnswerError(content.reason);
      const result: ModelResult = {
        // Plain objects, rebuilt by the check: the SDK gives tool_use blocks a lazily parsed
        // `input` getter and hidden fields; what crosses to the runner must be plain JSON data.
        content: content.value,
        stopReason: message.stop_reason,
        usage,
      };
      this.log.info(
        {
          group,
          requestId: stream.request_id ?? null,
          stopReason: result.stopReason,
          usage,
          ms: Date.now() - started,
        },
        'model call done',
      );
      return result;
    } catch (err) {
      // The API may have reported usage before the call broke (message_start carries the input
      // tokens): it processed them, so they count, as the API's own figures, never guessed.
      const partial = recorded ? null : stream?.currentMessage?.usage;
      if (partial) this.record(opts, usageOf(partial));
      const error =
        err instanceof ModelError
          ? err
          : timedOut
            ? timeoutError(this.timeoutMs, err)
            : toModelError(err, { ...this.errorContext, model });
      const fields = {
        group,
        kind: error.kind,
        status: error.status,
        retryable: error.retryable,
        retryAfterMs: error.retryAfterMs,
        ms: Date.now() - started,
      };
      if (error.kind === 'aborted') this.log.info(fields, 'model call cancelled');
      // Serialized here, not left to the logger's own serializer: the broker's errors carry
      // the API's words, and any logger may be handed in.
      else this.log.warn({ ...fields, err: serializeError(error) }, 'model call failed');
      throw error;
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', forwardAbort);
    }
  }

  /** Hands a call's usage to the caller's recorder; a failure there never fails the call. */
  private record(opts: CompleteOptions, usage: Usage): void {
    if (!opts.recordUsage) return;
    try {
      opts.recordUsage(usage);
    } catch (err) {
      this.log.error(
        { group: opts.group, usage, err: serializeError(err) },
        'could not record the usage of a model call',
      );
    }
  }

  /**
   * Cache breakpoints on the conversation (the check dropped the container's): on the last
   * block of the last message, so the next request reads this whole prompt back; and on the
   * last block of the message three from the end, which is where the previous request ended
   * (its last user message, before the model's answer and the new user message or tool
   * results). The API looks back only 20 blocks from a breakpoint for an earlier entry, so an
   * answer with many tool calls would otherwise push that entry out of reach; with the second
   * mark it is an exact hit whatever came after it. With the tools and system marks that makes
   * 4, the API's limit per request.
   */
  private withCacheBreakpoint(messages: MessageParam[]): Anthropic.MessageParam[] {
    const copied = messages.map((message) => ({
      role: message.role,
      content: typeof message.content === 'string' ? message.content : [...message.content],
    }));
    if (this.promptCaching) {
      for (const message of [copied.at(-3), copied.at(-1)]) {
        if (message) this.markLastBlock(message);
      }
    }
    // The content policy checked every block against the API's own shapes.
    return copied as Anthropic.MessageParam[];
  }

  /** Puts a cache mark on a message's last block, when that block can carry one. */
  private markLastBlock(message: { content: string | ContentBlock[] }): void {
    if (typeof message.content === 'string') {
      // An empty text block is a 400, so an empty string stays a string.
      if (message.content) {
        message.content = [this.withCacheMark({ type: 'text', text: message.content })];
      }
      return;
    }
    const lastBlock = message.content.at(-1);
    if (lastBlock && CACHEABLE_BLOCK_TYPES.has(lastBlock.type)) {
      message.content[message.content.length - 1] = this.withCacheMark(lastBlock);
    }
  }

  /**
   * A cache breakpoint on the last tool: tools come first in the cached prompt, so they stay
   * cached when the system prompt changes (a memory file edited).
   */
  private withToolsBreakpoint(tools: Anthropic.ToolUnion[]): Anthropic.ToolUnion[] {
    const last = tools.at(-1);
    return last ? [...tools.slice(0, -1), this.withCacheMark(last)] : tools;
  }

  private withCacheMark<T extends object>(block: T): T {
    return this.promptCaching ? { ...block, cache_control: { type: 'ephemeral' } } : block;
  }
}

function toApiTool(tool: ToolDefinition): Anthropic.Tool {
  // Copied field by field: only a custom tool's name, description and schema may come from the
  // container, never server tools or other billed options.
  return { name: tool.name, description: tool.description, input_schema: tool.input_schema };
}

function usageOf(usage: Anthropic.Usage): Usage {
  return {
    inputTokens: usage.input_tokens,
    outputTokens: usage.output_tokens,
    cacheReadTokens: usage.cache_read_input_tokens ?? 0,
    cacheWriteTokens: usage.cache_creation_input_tokens ?? 0,
  };
}

/**
 * The SDK's logger interface, backed by pino. Extra arguments are dropped: the SDK passes
 * response bodies and raw stream chunks there, which may hold message contents.
 */
function sdkLogger(log: Logger): ClientOptions['logger'] {
  const sdk = log.child({ sdk: true });
  return {
    error: (message: string) => sdk.error(redactSecrets(message)),
    warn: (message: string) => sdk.warn(redactSecrets(message)),
    info: (message: string) => sdk.info(redactSecrets(message)),
    debug: (message: string) => sdk.debug(redactSecrets(message)),
  };
}

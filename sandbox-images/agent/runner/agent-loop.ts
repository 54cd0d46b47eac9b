/**
 * The tool loop: one turn is a user message, then model calls and tool calls until the model
 * gives a final answer.
 *
 * The history only ever holds completed turns. A turn builds its messages on the side and
 * joins them to the history when it succeeds; a failed turn is dropped whole, so the history
 * always ends with an assistant message and the next request is valid. Dropping the failed
 * turn's prompt also suits the host, whose retry sends the same prompt again.
 *
 * The runner keeps no transcript of its own: it starts from the history the host sends in
 * `start` and reports each completed turn in `done`, and the host, which checks that turn
 * against its own records, keeps the transcript where no container can rewrite it.
 */
import { z } from 'zod';
import {
  EMPTY_REPLY,
  TRANSCRIPT_MAX_BYTES,
  dropOldestTurn,
  promptMessage,
  trimConversation,
  usableContent,
} from '../../../main/core/agent/conversation.js';
import {
  addUsage,
  encodeFrame,
  MAX_FRAME_BYTES,
  RunnerToHostSchema,
  stripInternal,
  type ContentBlock,
  type MessageParam,
  type RunnerToHost,
  type Usage,
} from '../../../main/core/agent/protocol.js';
import {
  DEFAULT_RUN_LIMITS,
  describeBytes,
  MAX_CHAT_MESSAGE_CHARS,
} from '../../../main/core/agent/run-limits.js';
import { ModelCallError, clampMessage, type RunnerHost } from './host-link.js';
import { describeError, type RunnerLog } from './log.js';
import {
  DEFAULT_MODEL_RETRY,
  requestModelWithRetry,
  type ModelRetryPolicy,
} from './model-retry.js';
import { TOOL_DEFINITIONS, executeTool, type ToolContext } from './tools/index.js';

/**
 * Limits on one turn and on what is kept between turns. The host enforces its own limits
 * (`DEFAULT_RUN_LIMITS` in main/core/agent/run-limits.ts) whatever the runner does; these keep
 * a well-behaved agent inside them, so a long turn is trimmed or fails here with a reason
 * rather than being refused (or the run stopped) by the host.
 */
export interface TurnLimits {
  /**
   * Model calls allowed in one turn before it is stopped as a runaway. Below the host's
   * `maxModelCallsPerTurn` (60 answered calls); with every call retried as often as
   * {@link DEFAULT_MODEL_RETRY} allows, also below its `maxModelAttemptsPerTurn` (300 requests).
   * @default 50
   */
  maxModelCalls: number;
  /** `maxTokens` of every model request: the host's cap. @default DEFAULT_RUN_LIMITS.maxTokens (8192) */
  maxTokens: number;
  /** JSON size of the history kept in memory between turns, as the host trims its copy. @default 400 KB */
  transcriptMaxBytes: number;
  /**
   * JSON size a model request (system prompt, messages, tools) may reach; the oldest turns are
   * dropped to stay under it. The host answers a larger one with a `model.error` and the turn
   * fails, so this is the host's limit, not the (larger) frame limit.
   * @default DEFAULT_RUN_LIMITS.maxRequestBytes (2 MiB)
   */
  maxRequestBytes: number;
}

export const DEFAULT_TURN_LIMITS: TurnLimits = {
  maxModelCalls: 50,
  maxTokens: DEFAULT_RUN_LIMITS.maxTokens,
  transcriptMaxBytes: TRANSCRIPT_MAX_BYTES,
  maxRequestBytes: DEFAULT_RUN_LIMITS.maxRequestBytes,
};

/** What an {@link AgentSession} needs from its surroundings. */
export interface AgentSessionDeps {
  host: RunnerHost;
  /** The group folder the tools work in. */
  groupDir: string;
  /** Builds the system prompt; called at the start of each turn, so memory edits show up. */
  systemPrompt(): string;
  log: RunnerLog;
  limits?: Partial<TurnLimits>;
  /**
   * How a model request the host answered with a retryable `model.error` is sent again within
   * the turn. Tests inject `sleep` and short delays.
   * @default DEFAULT_MODEL_RETRY (4 retries, backoff from 2 s, at most 3 minutes of waiting)
   */
  retry?: Partial<ModelRetryPolicy>;
}

/** A turn that ends without a final answer; its message goes to the host in an `error` frame. */
export class TurnError extends Error {
  override readonly name = 'TurnError';
}

const ToolUseBlockSchema = z.object({
  type: z.literal('tool_use'),
  id: z.string().min(1),
  name: z.string(),
  input: z.unknown(),
});
type ToolUseBlock = z.infer<typeof ToolUseBlockSchema>;

/** One conversation with the model, spanning the turns of one container. */
export class AgentSession {
  private history: MessageParam[];
  private readonly limits: TurnLimits;
  private readonly retry: ModelRetryPolicy;

  /**
   * @param history completed turns to resume, from the host's `start`; empty for a fresh chat.
   */
  constructor(
    private readonly deps: AgentSessionDeps,
    history: MessageParam[],
  ) {
    this.history = history;
    this.limits = { ...DEFAULT_TURN_LIMITS, ...deps.limits };
    this.retry = { ...DEFAULT_MODEL_RETRY, ...deps.retry };
  }

  /** The completed turns so far. */
  get messages(): readonly MessageParam[] {
    return this.history;
  }

  /**
   * Runs one turn for `userText` and reports it to the host: `output` with the final answer
   * (unless it is empty), then `error` if the turn failed or is too large to report, and always
   * exactly one `done` with the usage of every model call the turn made and the turn's
   * messages (none when it failed). Never rejects.
   *
   * @param signal aborts the turn (shutdown): waits stop, running commands are killed, and the
   *   turn ends as failed.
   */
  async runTurn(userText: string, signal: AbortSignal): Promise<void> {
    const usage: Usage = {
      inputTokens: 0,
      outputTokens: 0,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
    };
    const turn: MessageParam[] = [promptMessage(userText)];
    let status: 'ok' | 'failed' = 'ok';
    let reported: MessageParam[] = [];
    try {
      const answer = await this.toolLoop(turn, usage, signal);
      // Kept for this container's next turn, trimmed as the host trims its own copy.
      this.history = trimConversation([...this.history, ...turn], this.limits.transcriptMaxBytes);
      // The host strips `<internal>` notes again; doing it here too means a reply that is all
      // notes sends no `output` at all.
      const visible = stripInternal(answer).trim();
      if (visible !== '') this.deps.host.send({ type: 'output', text: clampReply(visible) });
      reported = this.reportableTurn(turn, usage);
    } catch (err) {
      const reason = signal.aborted
        ? `turn cancelled: ${describeError(signal.reason)}`
        : turnFailure(err);
      this.deps.log.error(reason);
      this.deps.host.send({ type: 'error', message: clampMessage(reason) });
      status = 'failed';
    }
    this.deps.host.send({ type: 'done', usage, turn: reported, status });
  }

  /**
   * The completed turn as `done` can carry it. A turn whose `done` frame would break the
   * protocol (over the frame size limit, say) is reported as empty, with a warning: the host
   * would drop the whole frame and wait for a `done` that never comes. The answer has been
   * given; only the next container's memory of this turn is lost.
   */
  private reportableTurn(turn: MessageParam[], usage: Usage): MessageParam[] {
    const frame: RunnerToHost = { type: 'done', usage, turn, status: 'ok' };
    const bytes = Buffer.byteLength(encodeFrame(frame));
    const problem = !RunnerToHostSchema.safeParse(frame).success
      ? 'it breaks the protocol schema'
      : bytes > MAX_FRAME_BYTES
        ? `its done frame of ${bytes} bytes is over the ${MAX_FRAME_BYTES}-byte limit`
        : null;
    if (problem === null) return turn;
    const message = `this turn cannot be handed to the host for the transcript (${problem}); the next conversation will not remember it`;
    this.deps.log.warn(message);
    this.deps.host.send({ type: 'error', message: clampMessage(message) });
    return [];
  }

  /** Calls the model and runs tools until a final answer; returns the answer's text. */
  private async toolLoop(turn: MessageParam[], usage: Usage, signal: AbortSignal): Promise<string> {
    const context: ToolContext = {
      groupDir: this.deps.groupDir,
      callHost: (name, args, callSignal) => this.deps.host.callHost(name, args, callSignal),
      signal,
    };
    const system = this.deps.systemPrompt();
    let paused = false;
    for (let call = 1; ; call++) {
      // A retryable failure re-sends this same request: tools already run are not run again.
      const reply = await requestModelWithRetry(
        this.deps.host,
        {
          system,
          messages: this.fitRequest(system, turn),
          tools: [...TOOL_DEFINITIONS],
          maxTokens: this.limits.maxTokens,
        },
        signal,
        this.retry,
        this.deps.log,
      );
      addUsage(usage, reply.usage);
      const content = usableContent(reply.content);
      const last = turn[turn.length - 1];
      if (paused && last?.role === 'assistant' && Array.isArray(last.content)) {
        // The API continues a paused turn (a long server-side tool such as web search) in a
        // new response; keeping it in the same assistant message keeps the roles alternating.
        // The host rebuilds these messages the same way to check the turn
        // (`expectedAssistantMessages` in main/core/agent/turn-check.ts): change both together.
        last.content = [...last.content, ...content];
      } else {
        turn.push({ role: 'assistant', content });
      }
      paused = reply.stopReason === 'pause_turn';

      const toolUses = content.filter((block) => block.type === 'tool_use').map(parseToolUse);
      if (!paused && toolUses.length === 0) return answerText(turn[turn.length - 1]);
      if (call >= this.limits.maxModelCalls) {
        throw new TurnError(
          `stopped after ${call} model calls in one turn without a final answer (a runaway tool loop?)`,
        );
      }
      if (paused) continue;
      const results: ContentBlock[] = [];
      for (const toolUse of toolUses) {
        // Every tool_use needs a tool_result, or the next request is invalid. A tool_use in a
        // response that stopped for another reason (max_tokens) may be cut short, so it is
        // answered without running it: half a command can do harm.
        const outcome =
          reply.stopReason === 'tool_use'
            ? await executeTool(toolUse.name, toolUse.input, context)
            : {
                content: `Not run: the response stopped (${reply.stopReason ?? 'no stop reason'}) before this call was complete. Send it again.`,
                isError: true,
              };
        signal.throwIfAborted();
        results.push({
          type: 'tool_result',
          tool_use_id: toolUse.id,
          content: outcome.content,
          ...(outcome.isError ? { is_error: true } : {}),
        });
      }
      turn.push({ role: 'user', content: results });
    }
  }

  /**
   * The messages for the next request: the history plus this turn, dropping the oldest turns
   * from the history while the frame would be too large for the host to accept.
   */
  private fitRequest(system: string, turn: readonly MessageParam[]): MessageParam[] {
    // Room for the frame's other fields (type, requestId, maxTokens) and their JSON.
    const overhead = 512 + Buffer.byteLength(JSON.stringify({ system, tools: TOOL_DEFINITIONS }));
    for (;;) {
      const messages = [...this.history, ...turn];
      if (overhead + Buffer.byteLength(JSON.stringify(messages)) <= this.limits.maxRequestBytes)
        return messages;
      // With a single turn left in the history, drop that too: only the current turn is kept.
      const shorter = dropOldestTurn(this.history) ?? (this.history.length > 0 ? [] : null);
      if (shorter === null) {
        throw new TurnError(
          `this turn has grown past the ${describeBytes(this.limits.maxRequestBytes)} request limit; ask for smaller steps or a new conversation`,
        );
      }
      this.deps.log.warn(
        'dropped the oldest turn from the conversation to fit the request size limit',
      );
      this.history = shorter;
    }
  }
}

function parseToolUse(block: ContentBlock): ToolUseBlock {
  const parsed = ToolUseBlockSchema.safeParse(block);
  if (!parsed.success) throw new TurnError('the model returned a malformed tool_use block');
  return parsed.data;
}

/**
 * The text of a final assistant message. Adjacent text blocks are joined as they are (the API
 * splits one paragraph into several blocks around citations); text separated by other blocks,
 * such as a server-side tool call, starts a new paragraph.
 */
function answerText(message: MessageParam | undefined): string {
  if (!message) return '';
  if (typeof message.content === 'string') return message.content;
  let text = '';
  let afterOtherBlock = false;
  for (const block of message.content) {
    if (block.type === 'text' && typeof block.text === 'string') {
      if (afterOtherBlock && text !== '') text += '\n\n';
      text += block.text;
      afterOtherBlock = false;
    } else {
      afterOtherBlock = true;
    }
  }
  return text === EMPTY_REPLY ? '' : text;
}

const TRUNCATED_MARK = '\n[… message truncated]';

/**
 * An answer cut to what one chat message holds ({@link MAX_CHAT_MESSAGE_CHARS} UTF-16 units,
 * the mark included). The host stops the whole run for an `output` frame longer than that, so
 * a long answer is trimmed here, where the reader at least gets its start.
 */
export function clampReply(text: string): string {
  if (text.length <= MAX_CHAT_MESSAGE_CHARS) return text;
  let end = MAX_CHAT_MESSAGE_CHARS - TRUNCATED_MARK.length;
  // Never keep half of a surrogate pair: it is not a character, and shows as garbage.
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}${TRUNCATED_MARK}`;
}

function turnFailure(err: unknown): string {
  if (err instanceof ModelCallError) return `model call failed: ${err.message}`;
  if (err instanceof TurnError) return err.message;
  return `turn failed: ${describeError(err)}`;
}

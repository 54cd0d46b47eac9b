/**
 * The tool loop: one turn is a user message, then model calls and tool calls until the model
 * gives a final answer.
 *
 * The history only ever holds completed turns. A turn builds its messages on the side and
 * joins them to the history when it succeeds; a failed turn is dropped whole, so the history
 * always ends with an assistant message and the next request is valid. Dropping the failed
 * turn's prompt also suits the host, whose retry sends the same prompt again.
 */
import { z } from 'zod';
import {
  addUsage,
  MAX_FRAME_BYTES,
  stripInternal,
  type ContentBlock,
  type MessageParam,
  type Usage,
} from '../../../main/core/agent/protocol.js';
import { ModelCallError, clampMessage, type RunnerHost } from './host-link.js';
import { describeError, type RunnerLog } from './log.js';
import {
  DEFAULT_MODEL_RETRY,
  requestModelWithRetry,
  type ModelRetryPolicy,
} from './model-retry.js';
import { TOOL_DEFINITIONS, executeTool, type ToolContext } from './tools/index.js';
import { TRANSCRIPT_FILE, dropOldestTurn, trimConversation } from './transcript.js';

/** Limits on one turn and on what is kept between turns. */
export interface TurnLimits {
  /** Model calls allowed in one turn before it is stopped as a runaway. @default 50 */
  maxModelCalls: number;
  /** `maxTokens` of every model request. @default 8192 */
  maxTokens: number;
  /** JSON size of the history kept in the transcript. @default 400 KB */
  transcriptMaxBytes: number;
  /** Size a `model.request` frame may reach; the host drops larger lines. @default MAX_FRAME_BYTES */
  maxRequestBytes: number;
}

export const DEFAULT_TURN_LIMITS: TurnLimits = {
  maxModelCalls: 50,
  maxTokens: 8192,
  transcriptMaxBytes: 400_000,
  maxRequestBytes: MAX_FRAME_BYTES,
};

/** What an {@link AgentSession} needs from its surroundings. */
export interface AgentSessionDeps {
  host: RunnerHost;
  /** The group folder the tools work in. */
  groupDir: string;
  /** Builds the system prompt; called at the start of each turn, so memory edits show up. */
  systemPrompt(): string;
  /** Persists the history. @throws when it cannot be written; the message says why. */
  saveTranscript(messages: readonly MessageParam[]): void;
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
  private sessionRef: string | null;
  /** True when the history holds turns the transcript file does not (a save failed). */
  private unsaved = false;
  private readonly limits: TurnLimits;
  private readonly retry: ModelRetryPolicy;

  /**
   * @param history completed turns to resume, e.g. from the transcript; empty for a fresh chat.
   * @param sessionRef the transcript the history came from, or null when nothing is saved yet.
   */
  constructor(
    private readonly deps: AgentSessionDeps,
    history: MessageParam[],
    sessionRef: string | null,
  ) {
    this.history = history;
    this.sessionRef = sessionRef;
    this.limits = { ...DEFAULT_TURN_LIMITS, ...deps.limits };
    this.retry = { ...DEFAULT_MODEL_RETRY, ...deps.retry };
  }

  /** The completed turns so far. */
  get messages(): readonly MessageParam[] {
    return this.history;
  }

  /**
   * Runs one turn for `userText` and reports it to the host: `output` with the final answer
   * (unless it is empty), then `error` if the turn failed or could not be saved, and always
   * exactly one `done` with the usage of every model call the turn made. Never rejects.
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
    const turn: MessageParam[] = [{ role: 'user', content: userText }];
    let status: 'ok' | 'failed' = 'ok';
    try {
      const answer = await this.toolLoop(turn, usage, signal);
      this.history = [...this.history, ...turn];
      // The host strips `<internal>` notes again; doing it here too means a reply that is all
      // notes sends no `output` at all.
      const visible = stripInternal(answer).trim();
      if (visible !== '') this.deps.host.send({ type: 'output', text: clampText(visible) });
      this.save();
    } catch (err) {
      const reason = signal.aborted
        ? `turn cancelled: ${describeError(signal.reason)}`
        : turnFailure(err);
      this.deps.log.error(reason);
      this.deps.host.send({ type: 'error', message: clampMessage(reason) });
      status = 'failed';
    }
    this.deps.host.send({ type: 'done', usage, sessionRef: this.sessionRef, status });
  }

  /**
   * Retries a save that failed after an earlier turn; used on shutdown. A second failure is
   * only logged: the host heard about the first one, and no turn is running to report it on.
   * Never throws.
   */
  saveIfUnsaved(): void {
    if (this.unsaved) this.save({ tellHost: false });
  }

  /**
   * Trims the history to its budget and writes it. A failure is logged and, by default,
   * reported to the host; `sessionRef` keeps pointing at the last good transcript, because
   * resuming one turn behind beats starting over.
   */
  private save({ tellHost }: { tellHost: boolean } = { tellHost: true }): void {
    this.history = trimConversation(this.history, this.limits.transcriptMaxBytes);
    try {
      this.deps.saveTranscript(this.history);
      this.sessionRef = TRANSCRIPT_FILE;
      this.unsaved = false;
    } catch (err) {
      this.unsaved = true;
      const message = `${describeError(err)}. The conversation goes on in memory but will not survive this container; the session folder must be writable by the runner's user.`;
      this.deps.log.error(message);
      if (tellHost) this.deps.host.send({ type: 'error', message: clampMessage(message) });
    }
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
          `this turn has grown past the ${this.limits.maxRequestBytes}-byte request limit; ask for smaller steps or a new conversation`,
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

/** Stands in for a reply with no content, which the API would refuse in later requests. */
const EMPTY_REPLY = '(no reply)';

/**
 * The model's content as it can be sent back: the API rejects empty text blocks, and an
 * assistant message with no content at all, in later requests.
 */
function usableContent(content: readonly ContentBlock[]): ContentBlock[] {
  const kept = content.filter(
    (block) =>
      block.type !== 'text' || (typeof block.text === 'string' && block.text.trim() !== ''),
  );
  return kept.length > 0 ? kept : [{ type: 'text', text: EMPTY_REPLY }];
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

/** The protocol caps text fields at 1,000,000 characters. */
function clampText(text: string): string {
  return text.length > 1_000_000 ? `${text.slice(0, 999_000)}\n[… message truncated]` : text;
}

function turnFailure(err: unknown): string {
  if (err instanceof ModelCallError) return `model call failed: ${err.message}`;
  if (err instanceof TurnError) return err.message;
  return `turn failed: ${describeError(err)}`;
}

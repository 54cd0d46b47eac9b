/**
 * The host ↔ runner protocol: JSON lines over the container's stdin and stdout.
 *
 * This module is shared: the host imports it, and the in-container runner is bundled with it,
 * so both sides validate the very same schemas. It must stay free of Node-only and
 * Electron imports beyond what a plain bundle can carry.
 *
 * Every frame is untrusted on arrival. {@link FrameDecoder} turns a byte stream into
 * validated frames and reports garbage or oversized lines as errors without throwing.
 */
import { z } from 'zod';

/**
 * Bumped when a frame changes shape incompatibly. The runner reports it in `ready`.
 * 2: the transcript moved to the host (`start.history`, `done.turn` instead of session refs).
 */
export const PROTOCOL_VERSION = 2;

/**
 * The longest line either side accepts. A line past this is dropped whole and reported.
 * @default 4 MiB
 */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

const id = z.string().min(1).max(128);
const text = z.string().max(1_000_000);

/** One Anthropic content block. Passed through opaquely; only its `type` is checked here. */
export const ContentBlockSchema = z.looseObject({ type: z.string().min(1).max(64) });
export type ContentBlock = z.infer<typeof ContentBlockSchema>;

export const MessageParamSchema = z.object({
  role: z.enum(['user', 'assistant']),
  content: z.union([text, z.array(ContentBlockSchema).max(1000)]),
});
export type MessageParam = z.infer<typeof MessageParamSchema>;

export const ToolDefinitionSchema = z.object({
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/),
  description: z.string().max(10_000),
  input_schema: z.looseObject({ type: z.literal('object') }),
});
export type ToolDefinition = z.infer<typeof ToolDefinitionSchema>;

export const UsageSchema = z.object({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  cacheReadTokens: z.number().int().nonnegative(),
  cacheWriteTokens: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof UsageSchema>;

/** Adds `more` into `total`, field by field. */
export function addUsage(total: Usage, more: Usage): void {
  total.inputTokens += more.inputTokens;
  total.outputTokens += more.outputTokens;
  total.cacheReadTokens += more.cacheReadTokens;
  total.cacheWriteTokens += more.cacheWriteTokens;
}

export const GroupFactsSchema = z.object({
  jid: z.string().min(1).max(256),
  name: z.string().min(1).max(256),
  folder: z.string().min(1).max(64),
});

// ── host → runner ──────────────────────────────────────────────────────────

export const StartFrameSchema = z.object({
  type: z.literal('start'),
  runId: id,
  group: GroupFactsSchema,
  prompt: text.min(1),
  isMain: z.boolean(),
  assistantName: z.string().min(1).max(64),
  /**
   * The conversation to resume, from the host's store; empty for a fresh one. The host trims
   * it so that the frame stays under {@link MAX_FRAME_BYTES}.
   */
  history: z.array(MessageParamSchema).max(10_000),
});

export const HostToRunnerSchema = z.discriminatedUnion('type', [
  StartFrameSchema,
  z.object({ type: z.literal('message'), text: text.min(1) }),
  z.object({
    type: z.literal('model.result'),
    requestId: id,
    content: z.array(ContentBlockSchema).max(1000),
    stopReason: z.string().max(64).nullable(),
    usage: UsageSchema,
  }),
  z.object({
    type: z.literal('model.error'),
    requestId: id,
    message: z.string().max(10_000),
    retryable: z.boolean(),
    /**
     * How long the API asked us to wait before trying again (its `retry-after`), when it said.
     * The runner waits at least this long before it retries the same request.
     */
    retryAfterMs: z.number().int().nonnegative().max(3_600_000).optional(),
  }),
  z.object({
    type: z.literal('tool.result'),
    callId: id,
    ok: z.boolean(),
    result: text,
  }),
  z.object({ type: z.literal('shutdown') }),
]);
export type HostToRunner = z.infer<typeof HostToRunnerSchema>;
export type StartFrame = z.infer<typeof StartFrameSchema>;

// ── runner → host ──────────────────────────────────────────────────────────

/** Names of the calls the runner may make to the host. Authorization happens on the host. */
export const HOST_CALLS = [
  'send_message',
  'list_chats',
  'schedule_task',
  'list_tasks',
  'update_task',
  'pause_task',
  'resume_task',
  'cancel_task',
  'register_group',
  'unregister_group',
  'send_file',
] as const;
export type HostCallName = (typeof HOST_CALLS)[number];

export const RunnerToHostSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready'), protocol: z.number().int() }),
  z.object({
    type: z.literal('model.request'),
    requestId: id,
    system: text,
    messages: z.array(MessageParamSchema).min(1).max(10_000),
    tools: z.array(ToolDefinitionSchema).max(64),
    maxTokens: z.number().int().positive().max(128_000),
  }),
  z.object({
    type: z.literal('host.call'),
    callId: id,
    // The name is checked by the host's tool table, so that an unknown call gets a
    // tool.result error the model can read instead of killing the run.
    name: z.string().min(1).max(64),
    args: z.unknown(),
  }),
  z.object({ type: z.literal('output'), text }),
  z.object({
    type: z.literal('done'),
    usage: UsageSchema,
    /**
     * The completed turn's messages: the user's prompt message, then assistant messages and
     * tool_result user messages. Empty when the turn failed. The host checks it against its
     * own records before it joins the stored transcript: a container's claim, never trusted.
     */
    turn: z.array(MessageParamSchema).max(10_000),
    /**
     * Whether the turn completed. `error` frames also carry warnings (a bad frame, a turn too
     * large to report after a good answer), so only this field says the turn failed.
     * Absent means ok, for runners built before it existed.
     */
    status: z.enum(['ok', 'failed']).optional(),
  }),
  z.object({
    type: z.literal('error'),
    message: z.string().max(10_000),
    /**
     * `bad_frame`: the runner refused a frame from the host (it failed the schema), so whatever
     * that frame asked for will never happen: a refused `start` or `message` gets no `done`.
     * Absent for warnings and turn failures, which a `done` follows.
     */
    code: z.enum(['bad_frame']).optional(),
  }),
]);
export type RunnerToHost = z.infer<typeof RunnerToHostSchema>;

/**
 * The most chats one `list_chats` answer shows, so that an account in thousands of chats
 * cannot flood the model's context. A query narrows the list.
 * @default 200
 */
export const LIST_CHATS_MAX = 200;

/**
 * The longest prompt a scheduled task takes: the store's `MAX_TASK_PROMPT_CHARS`, repeated
 * here because this module may not import the store (it is bundled into the runner).
 */
export const TASK_PROMPT_MAX_CHARS = 10_000;

/**
 * The most tasks one `list_tasks` answer shows, so the model's context stays bounded.
 * @default 200
 */
export const LIST_TASKS_MAX = 200;

/**
 * Bounds only: what a schedule means is checked by the host's TaskAdmin, whose errors say
 * what is wrong and how to fix it, so that the model can correct itself.
 */
const taskScheduleArgs = {
  /** 5 fields: minute hour day-of-month month day-of-week, e.g. `0 8 * * 1-5`. */
  cron: z.string().min(1).max(200).optional(),
  /** A duration such as `30s`, `15m`, `2h`, `1d` or `1h30m`. */
  every: z.string().min(1).max(50).optional(),
  /** An ISO 8601 date-time; without an offset it is read in the task's timezone. */
  at: z.string().min(1).max(64).optional(),
  /** An IANA timezone name; defaults to the user's (or, for update_task, the task's own). */
  timezone: z.string().min(1).max(64).optional(),
};
const taskOptionArgs = {
  /** `group`: the run sees and joins the chat's conversation; `isolated`: a fresh one. */
  context_mode: z.enum(['group', 'isolated']).optional(),
  /** Whether the run's final answer is posted to the chat. */
  post_result: z.boolean().optional(),
};
const taskIdArg = z.string().min(1).max(64);
/** A registered group's folder; only the main group may name another group than its own. */
const groupFolderArg = z.string().min(1).max(64);

/** Arguments of each host call, parsed on the host before authorization. */
export const HostCallArgsSchemas = {
  send_message: z.object({
    text: z.string().min(1).max(65_536),
    /** Defaults to the group's own chat. Only the main group may name another. */
    chatJid: z.string().min(1).max(256).optional(),
  }),
  /** Main group only. `query` keeps the chats whose name or jid contains it, ignoring case. */
  list_chats: z.object({
    query: z.string().max(100).optional(),
  }),
  // The task calls are strict: a field the host does not know is refused, not ignored, so a
  // misspelt option never silently does nothing.
  /** A new task in the caller's group, or (main only) in the group with `group_folder`. */
  schedule_task: z.strictObject({
    prompt: z.string().min(1).max(TASK_PROMPT_MAX_CHARS),
    ...taskScheduleArgs,
    ...taskOptionArgs,
    group_folder: groupFolderArg.optional(),
  }),
  /** The caller's group's tasks; main sees every group's, or the group with `group_folder`. */
  list_tasks: z.strictObject({
    group_folder: groupFolderArg.optional(),
  }),
  /** Changes to one task; at least one field besides `task_id`. */
  update_task: z.strictObject({
    task_id: taskIdArg,
    prompt: z.string().min(1).max(TASK_PROMPT_MAX_CHARS).optional(),
    ...taskScheduleArgs,
    ...taskOptionArgs,
  }),
  pause_task: z.strictObject({ task_id: taskIdArg }),
  resume_task: z.strictObject({ task_id: taskIdArg }),
  /** Removes the task and its run log. */
  cancel_task: z.strictObject({ task_id: taskIdArg }),
  /** Main group only: enables a chat the channels know (list_chats) as a group. */
  register_group: z.strictObject({
    chat_jid: z.string().min(1).max(256),
    name: z.string().min(1).max(64).optional(),
    trigger: z.string().min(1).max(64).optional(),
    requires_trigger: z.boolean().optional(),
  }),
  /** Main group only: disables a group; its chat history and folder are kept. */
  unregister_group: z.strictObject({ group_folder: groupFolderArg }),
  /**
   * A file from the group's own folder to the group's own chat: `path` relative to
   * /workspace/group or absolute under it. The host checks the path against the group's real
   * folder (agent/send-file.ts); the chat is always the run's own.
   */
  send_file: z.strictObject({
    path: z.string().min(1).max(4096),
    caption: z.string().max(1024).optional(),
  }),
} satisfies Record<HostCallName, z.ZodType>;

// ── text shared by both sides ──────────────────────────────────────────────

/** A closed `<internal>…</internal>` note: the agent's reasoning, never shown in the chat. */
const INTERNAL_NOTE = /<internal>[\s\S]*?<\/internal>/gi;
/** An `<internal>` note left open: everything after it is hidden too. */
const UNCLOSED_INTERNAL_NOTE = /<internal>[\s\S]*$/i;

/**
 * Removes the agent's `<internal>` notes, closed or left open at the end. The runner does it
 * before sending `output`, and the host again before anything reaches a chat, since the host
 * trusts nothing a container sends.
 */
export function stripInternal(text: string): string {
  return text.replace(INTERNAL_NOTE, '').replace(UNCLOSED_INTERNAL_NOTE, '');
}

// ── framing ────────────────────────────────────────────────────────────────

/** Serialises one frame as a single JSON line. */
export function encodeFrame(frame: HostToRunner | RunnerToHost): string {
  return `${JSON.stringify(frame)}\n`;
}

/** Why a line was refused: it grew past the limit, was not JSON, or failed the schema. */
export type DecodeFailure = 'too_large' | 'not_json' | 'invalid';

export type DecodeResult<T> =
  { ok: true; frame: T } | { ok: false; kind: DecodeFailure; error: string };

/**
 * Whether `text` takes more than `maxBytes` in UTF-8, without encoding it: a UTF-16 unit
 * takes 1 to 3 bytes, so only strings near the limit need counting.
 */
function exceedsUtf8(text: string, maxBytes: number): boolean {
  if (text.length * 3 <= maxBytes) return false;
  if (text.length > maxBytes) return true;
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A surrogate pair is 4 bytes over two units: 2 each.
    bytes += unit < 0x80 ? 1 : unit < 0x800 || (unit >= 0xd800 && unit <= 0xdfff) ? 2 : 3;
    if (bytes > maxBytes) return true;
  }
  return false;
}

/**
 * Splits a text stream into lines and validates each as a frame.
 *
 * Never throws on bad input: a line that is not JSON, fails the schema, or grows past
 * `maxBytes` yields `{ ok: false }` and decoding carries on at the next line.
 */
export class FrameDecoder<T> {
  private buffer = '';
  private discarding = false;

  constructor(
    private readonly schema: z.ZodType<T>,
    private readonly maxBytes: number = MAX_FRAME_BYTES,
  ) {}

  /** Feeds decoded text (callers set the stream encoding to utf8) and returns complete frames. */
  push(chunk: string): DecodeResult<T>[] {
    const results: DecodeResult<T>[] = [];
    let rest = chunk;
    for (;;) {
      const newline = rest.indexOf('\n');
      if (newline === -1) {
        if (!this.discarding) {
          this.buffer += rest;
          if (exceedsUtf8(this.buffer, this.maxBytes)) {
            results.push(this.tooLarge());
            this.buffer = '';
            this.discarding = true;
          }
        }
        return results;
      }
      const piece = rest.slice(0, newline);
      rest = rest.slice(newline + 1);
      if (this.discarding) {
        // The tail of an oversized line: drop it and resume at the next line.
        this.discarding = false;
        continue;
      }
      const line = this.buffer + piece;
      this.buffer = '';
      if (exceedsUtf8(line, this.maxBytes)) {
        results.push(this.tooLarge());
        continue;
      }
      if (line.trim() === '') continue;
      results.push(this.parseLine(line));
    }
  }

  private tooLarge(): DecodeResult<T> {
    return {
      ok: false,
      kind: 'too_large',
      error: `frame larger than ${this.maxBytes} bytes dropped`,
    };
  }

  private parseLine(line: string): DecodeResult<T> {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return { ok: false, kind: 'not_json', error: `not JSON: ${preview(line)}` };
    }
    const parsed = this.schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? issue.path.join('.') : 'frame';
      return {
        ok: false,
        kind: 'invalid',
        error: `invalid frame (${where}: ${issue?.message ?? 'bad shape'}): ${preview(line)}`,
      };
    }
    return { ok: true, frame: parsed.data };
  }
}

function preview(line: string): string {
  const short = line.length > 120 ? `${line.slice(0, 120)}…` : line;
  return JSON.stringify(short);
}

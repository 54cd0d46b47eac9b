/**
 * The control socket protocol: JSON lines over a unix socket in `$CLAWBAR_HOME`.
 * A request is `{ id, method, params }`; the answer is `{ id, ok: true, result }` or
 * `{ id, ok: false, error: { message, code } }`. Each method's params have a schema,
 * parsed at the server before anything acts on them.
 */
import { z } from 'zod';
import { MAX_TASK_PROMPT_CHARS } from '../store/tasks.js';

/** The longest request line the server reads. @default 1 MiB */
export const MAX_REQUEST_BYTES = 1024 * 1024;

const groupRef = z.string().trim().min(1, 'a group is required').max(256);
/** One allowlist entry as typed: a phone number, a jid or (local chat) a name. */
const senderEntry = z.string().trim().min(1, 'a sender is required').max(256);
/** A task id as typed; the store says whether a task has it. */
const taskId = z.string().trim().min(1, 'a task id is required').max(64);

export const ControlMethods = {
  status: z.object({}),
  'groups.list': z.object({}),
  'groups.add': z.object({
    name: z.string().max(256),
    jid: z.string().max(256).optional(),
    main: z.boolean().optional(),
    trigger: z.string().max(256).optional(),
    requiresTrigger: z.boolean().optional(),
  }),
  'groups.remove': z.object({ group: groupRef }),
  'groups.pause': z.object({ group: groupRef }),
  'groups.resume': z.object({ group: groupRef }),
  'groups.stop': z.object({ group: groupRef }),
  /**
   * Shows, and with `allow`/`deny`/`everyone` changes, who may wake a group's agent. Entries
   * are phone numbers or WhatsApp user jids (names in a local-chat group); the core checks and
   * normalizes them.
   */
  'groups.senders': z.object({
    group: groupRef,
    allow: z.array(senderEntry).max(256, 'at most 256 senders at a time').optional(),
    deny: z.array(senderEntry).max(256, 'at most 256 senders at a time').optional(),
    everyone: z.boolean().optional(),
  }),
  /**
   * A group's extra mounts, each with the allowlist's verdict; with `add` (a
   * `PATH[:CONTAINER_PATH][:rw]` spec, checked at once) or `remove` (a host path), changed first.
   */
  'groups.mounts': z.object({
    group: groupRef,
    add: z.string().trim().min(1, 'a mount is required').max(4300).optional(),
    remove: z.string().trim().min(1, 'a path is required').max(4300).optional(),
  }),
  /** A group's agent settings: model, web tools, network, daily budget, extra mounts. */
  'groups.show': z.object({ group: groupRef }),
  /**
   * Changes a group's agent settings; fields left out stay. `model` null goes back to the
   * configured default; a budget null removes that cap. The core checks what each value means.
   */
  'groups.set': z.object({
    group: groupRef,
    model: z.string().max(256).nullable().optional(),
    webSearch: z.boolean().optional(),
    webFetch: z.boolean().optional(),
    networkAllowed: z.boolean().optional(),
    budgetTokens: z.number().nullable().optional(),
    budgetUsd: z.number().nullable().optional(),
  }),
  send: z.object({
    group: groupRef,
    from: z.string().max(256).optional(),
    text: z.string().max(65_536, 'a message may be at most 65536 characters'),
    wait: z.boolean().optional(),
    /** How long `wait` waits. @default 600000 */
    timeoutMs: z.number().int().positive().max(86_400_000).optional(),
  }),
  messages: z.object({
    group: groupRef,
    limit: z.number().int().min(1).max(10_000).optional(),
  }),
  /** The chats the channels know, each with whether it is a group Clawbar answers in. */
  chats: z.object({}),
  /**
   * Links a phone to WhatsApp (serve only): progress frames carry each QR payload or the
   * pairing code; the answer comes once the link is made.
   */
  'whatsapp.pair': z.object({
    /** Pair by code for this number (digits with the country code) instead of by QR. */
    phone: z.string().max(32).optional(),
    /** How long to wait for the phone. @default 600000 */
    timeoutMs: z.number().int().positive().max(3_600_000).optional(),
  }),
  /** Logs WhatsApp out and wipes its stored auth state (serve only). */
  'whatsapp.unlink': z.object({}),
  /** Scheduled tasks, all or one group's. */
  'tasks.list': z.object({ group: groupRef.optional() }),
  /**
   * Adds a scheduled task. Exactly one of `cron`, `every`, `at`; the core checks what each
   * means (scheduler/schedule.ts) and the prompt's content (scheduler/task-admin.ts).
   */
  'tasks.add': z.object({
    group: groupRef,
    prompt: z
      .string()
      .max(MAX_TASK_PROMPT_CHARS, `a prompt may be at most ${MAX_TASK_PROMPT_CHARS} characters`),
    cron: z.string().max(200).optional(),
    every: z.string().max(200).optional(),
    at: z.string().max(200).optional(),
    timezone: z.string().max(200).optional(),
    contextMode: z.enum(['group', 'isolated']).optional(),
    postResult: z.boolean().optional(),
  }),
  'tasks.pause': z.object({ id: taskId }),
  'tasks.resume': z.object({ id: taskId }),
  'tasks.remove': z.object({ id: taskId }),
  /** Runs a task now, outside its schedule; its next due time stays. Needs serve. */
  'tasks.run': z.object({ id: taskId }),
  /** A task's run log, latest first. */
  'tasks.runs': z.object({ id: taskId, limit: z.number().int().min(1).max(1000).optional() }),
} as const;

export type ControlMethod = keyof typeof ControlMethods;
export type ControlParams<M extends ControlMethod> = z.infer<(typeof ControlMethods)[M]>;

export const ControlRequestSchema = z.object({
  id: z.number().int().nonnegative(),
  method: z.string().max(64),
  params: z.unknown().optional(),
});

export type ControlErrorCode = 'bad_request' | 'not_found' | 'failed' | 'unavailable';

/**
 * Where a long request is, sent before its answer. `send --wait`: the message is stored, it
 * waits in line or for the set-up, the container starts, the model thinks, a tool runs.
 * `whatsapp.pair`: connecting, a (new) QR to show, the pairing code, paired.
 */
export interface ControlProgress {
  stage:
    | 'stored'
    | 'queued'
    | 'setup'
    | 'starting'
    | 'thinking'
    | 'tool'
    | 'connecting'
    | 'qr'
    | 'pairing-code'
    | 'paired';
  /**
   * One line for a person; for `qr` the raw QR payload (to draw), for `pairing-code` the code
   * (to type on the phone).
   */
  text: string;
}

export type ControlResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { message: string; code: ControlErrorCode } }
  /** Not an answer: progress of request `id`, whose answer comes later. */
  | { id: number; progress: ControlProgress };

export function isControlMethod(name: string): name is ControlMethod {
  return Object.hasOwn(ControlMethods, name);
}

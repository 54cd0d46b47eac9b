/**
 * The tools that are calls to the host: send_message, send_file, list_chats, and the
 * scheduled-task tools.
 * The host authorizes each call.
 */
import { z } from 'zod';
import {
  HostCallArgsSchemas,
  LIST_CHATS_MAX,
  type HostCallName,
} from '../../../../main/core/agent/protocol.js';
import { defineTool, type ToolContext, type ToolOutcome } from './define.js';

// ── send_message ───────────────────────────────────────────────────────────

export const sendMessageTool = defineTool({
  name: 'send_message',
  description:
    'Sends a message to the chat right away, while you keep working: to acknowledge a long task or report progress. ' +
    'Your final answer is sent anyway; do not repeat in it what you sent here.',
  input: z.strictObject({
    text: HostCallArgsSchemas.send_message.shape.text.describe('The message text.'),
  }),
  async run(input, context) {
    const reply = await context.callHost('send_message', { text: input.text }, context.signal);
    if (!reply.ok) return { content: reply.result || 'send_message failed', isError: true };
    return reply.result || 'Message sent.';
  },
});

// ── send_file ──────────────────────────────────────────────────────────────

export const sendFileTool = defineTool({
  name: 'send_file',
  description:
    'Sends a file from your folder to this chat: a JPEG or PNG arrives as an image, MP3/M4A/Opus as audio, anything else as a document. ' +
    'Give a path relative to your folder or absolute under it; files elsewhere (and symbolic links) are refused, so copy or save the file into your folder first. ' +
    'At most 16 MiB. The file is copied when you call this, so later changes to it are not sent.',
  input: z.strictObject({
    path: HostCallArgsSchemas.send_file.shape.path.describe(
      'The file, e.g. "report.pdf" or "/workspace/group/charts/sales.png".',
    ),
    caption: HostCallArgsSchemas.send_file.shape.caption.describe(
      'Optional text shown with the file.',
    ),
  }),
  async run(input, context) {
    const args = {
      path: pathForHost(context.groupDir, input.path),
      ...(input.caption === undefined ? {} : { caption: input.caption }),
    };
    const reply = await context.callHost('send_file', args, context.signal);
    if (!reply.ok) return { content: reply.result || 'send_file failed', isError: true };
    return reply.result || 'File sent.';
  },
});

/**
 * The host reads paths in container terms (relative to /workspace/group, or under it). Where
 * the group folder is mounted elsewhere (the runner run outside a container, in tests), an
 * absolute path inside it is passed on relative. The host checks the path either way.
 */
function pathForHost(groupDir: string, toolPath: string): string {
  const prefix = groupDir.endsWith('/') ? groupDir : `${groupDir}/`;
  return toolPath.startsWith(prefix) ? toolPath.slice(prefix.length) : toolPath;
}

// ── list_chats ─────────────────────────────────────────────────────────────

export const listChatsTool = defineTool({
  name: 'list_chats',
  description:
    'For the main group only; other groups are refused. Lists the chats the assistant can reach, most recently active first: ' +
    'jid, group or direct, channel, name, last activity, and whether each is enabled (with its folder). ' +
    "Use it to find a chat's jid from its name, e.g. when your owner asks which chats exist or which one to enable. " +
    `At most ${LIST_CHATS_MAX} chats; pass a query to narrow.`,
  input: z.strictObject({
    query: HostCallArgsSchemas.list_chats.shape.query.describe(
      'Optional: show only chats whose name or jid contains this text, ignoring case.',
    ),
  }),
  async run(input, context) {
    const args = input.query === undefined ? {} : { query: input.query };
    const reply = await context.callHost('list_chats', args, context.signal);
    if (!reply.ok) return { content: reply.result || 'list_chats failed', isError: true };
    return reply.result || 'No chats.';
  },
});

// ── scheduled tasks ────────────────────────────────────────────────────────
//
// The host checks every call: a group manages only its own tasks; the main group may also
// name another group's folder. The inputs mirror the host's argument schemas, with
// descriptions written so that "remind me every weekday at 8 to stretch" reads as one call:
// schedule_task { cron: "0 8 * * 1-5", prompt: "Remind the user to stretch." }.

const taskArgs = HostCallArgsSchemas.schedule_task.shape;
const updateArgs = HostCallArgsSchemas.update_task.shape;

const SCHEDULE_HELP =
  'Give exactly one of cron, every or at. ' +
  'cron: 5 fields "minute hour day-of-month month day-of-week", e.g. "0 8 * * 1-5" every weekday at 08:00, "30 17 * * 5" Fridays at 17:30, "0 9 1 * *" the 1st of each month at 09:00 (day-of-week 0 or 7 is Sunday; * , - and / work; no seconds field, no @daily). ' +
  'every: a duration counted from now, e.g. "30s", "15m", "2h", "1d", "1h30m" (at least 30s). ' +
  'at: once, an ISO date-time such as "2026-11-25T17:00"; without an offset it is read in the timezone. ' +
  "timezone: an IANA name such as Europe/Berlin; leave it out to use the user's timezone (the one the message times are in).";

const cronField = taskArgs.cron.describe(
  'Repeat on a cron schedule: 5 fields, minute hour day-of-month month day-of-week, e.g. "0 8 * * 1-5" (weekdays at 08:00).',
);
const everyField = taskArgs.every.describe(
  'Repeat at a fixed interval counted from now: "30s", "15m", "2h", "1d" or combinations like "1h30m".',
);
const atField = taskArgs.at.describe(
  'Run once at this ISO 8601 date-time, e.g. "2026-11-25T17:00"; without a Z or +01:00 offset it is read in the timezone.',
);
const contextField = taskArgs.context_mode.describe(
  '"group" (default): the run sees this chat\'s conversation and its answer joins it, good for reminders and follow-ups. "isolated": a fresh conversation with only the prompt, good for self-contained reports.',
);
const postResultField = taskArgs.post_result.describe(
  "Whether the run's final answer is posted to the chat (default true). Set false for a job that only does work, or that sends its own messages.",
);

/** Calls the host with the tool's input as its arguments, and turns a refusal into an error. */
async function forward(
  name: Exclude<HostCallName, 'send_message' | 'list_chats'>,
  input: Record<string, unknown>,
  context: ToolContext,
): Promise<string | ToolOutcome> {
  // Only the fields given: the host refuses unknown ones, and undefined is not JSON.
  const args = Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined));
  const reply = await context.callHost(name, args, context.signal);
  if (!reply.ok) return { content: reply.result || `${name} failed`, isError: true };
  return reply.result || 'Done.';
}

export const scheduleTaskTool = defineTool({
  name: 'schedule_task',
  description:
    'Schedules a task: at the times given, the prompt is run as a message to you, in this chat, and your answer is posted here. ' +
    'Use it for reminders and recurring jobs, e.g. "remind me every weekday at 8 to stretch" is ' +
    '{"cron": "0 8 * * 1-5", "prompt": "Remind the user to stretch."}. ' +
    'Write the prompt as an instruction to your future self that makes sense on its own. ' +
    SCHEDULE_HELP +
    ' The answer gives the task id and its next run.',
  input: z.strictObject({
    prompt: taskArgs.prompt.describe(
      'What to do each time, as an instruction to yourself, e.g. "Remind the user to stretch."',
    ),
    cron: cronField,
    every: everyField,
    at: atField,
    timezone: taskArgs.timezone.describe(
      "IANA timezone such as Europe/Berlin. Leave it out to use the user's timezone.",
    ),
    context_mode: contextField,
    post_result: postResultField,
    group_folder: taskArgs.group_folder.describe(
      'Main group only: the folder of another group to schedule the task in. Leave it out for this chat.',
    ),
  }),
  run: (input, context) => forward('schedule_task', input, context),
});

export const listTasksTool = defineTool({
  name: 'list_tasks',
  description:
    "Lists this chat's scheduled tasks, one line each: id, group, schedule, next run (in the task's timezone and UTC), status, last run and prompt. " +
    "The main group sees every group's tasks. Use it to find a task's id before changing, pausing or cancelling it.",
  input: z.strictObject({
    group_folder: HostCallArgsSchemas.list_tasks.shape.group_folder.describe(
      "Main group only: list just this group's tasks.",
    ),
  }),
  run: (input, context) => forward('list_tasks', input, context),
});

export const updateTaskTool = defineTool({
  name: 'update_task',
  description:
    'Changes a scheduled task; give its id and only what changes: the prompt, the schedule (one of cron, every or at), the timezone, context_mode or post_result. ' +
    "A new schedule is read in the task's timezone unless you give one; the next run is computed from now. " +
    SCHEDULE_HELP,
  input: z.strictObject({
    task_id: updateArgs.task_id.describe(
      'The id list_tasks or schedule_task gave, e.g. "t_k3m9p2xq".',
    ),
    prompt: updateArgs.prompt.describe('A new instruction for each run.'),
    cron: cronField,
    every: everyField,
    at: atField,
    timezone: updateArgs.timezone.describe(
      'IANA timezone such as Europe/Berlin. Alone, it moves a cron task to that zone (08:00 there).',
    ),
    context_mode: contextField,
    post_result: postResultField,
  }),
  run: (input, context) => forward('update_task', input, context),
});

const taskIdOnly = z.strictObject({
  task_id: HostCallArgsSchemas.pause_task.shape.task_id.describe(
    'The id list_tasks or schedule_task gave, e.g. "t_k3m9p2xq".',
  ),
});

export const pauseTaskTool = defineTool({
  name: 'pause_task',
  description: 'Pauses a scheduled task: it does not run until resumed. Nothing is deleted.',
  input: taskIdOnly,
  run: (input, context) => forward('pause_task', input, context),
});

export const resumeTaskTool = defineTool({
  name: 'resume_task',
  description:
    'Resumes a paused task. Its next run is the first due time from now; runs missed while paused are not made up.',
  input: taskIdOnly,
  run: (input, context) => forward('resume_task', input, context),
});

export const cancelTaskTool = defineTool({
  name: 'cancel_task',
  description:
    'Cancels a scheduled task for good: it is removed with its run log. To stop it for a while, use pause_task.',
  input: taskIdOnly,
  run: (input, context) => forward('cancel_task', input, context),
});

// ── register_group, unregister_group (main only) ───────────────────────────

export const registerGroupTool = defineTool({
  name: 'register_group',
  description:
    'For the main group only; other groups are refused. Enables a WhatsApp chat as a group, so the assistant answers there ' +
    "(by default when a message starts with the trigger, like @Andy). Find the chat's jid with list_chats first. " +
    "Only do this when your owner asks for it: the assistant then reads that chat's messages.",
  input: z.strictObject({
    chat_jid: HostCallArgsSchemas.register_group.shape.chat_jid.describe(
      'The chat\'s jid as list_chats shows it, e.g. "120363012345678901@g.us".',
    ),
    name: HostCallArgsSchemas.register_group.shape.name.describe(
      "The group's name in Clawbar; defaults to the chat's own name.",
    ),
    trigger: HostCallArgsSchemas.register_group.shape.trigger.describe(
      'The word that wakes the assistant, like "@Andy"; defaults to @ and the assistant\'s name.',
    ),
    requires_trigger: HostCallArgsSchemas.register_group.shape.requires_trigger.describe(
      'false: every message wakes the assistant (for a chat with only the owner). Default true.',
    ),
  }),
  run: (input, context) => forward('register_group', input, context),
});

export const unregisterGroupTool = defineTool({
  name: 'unregister_group',
  description:
    'For the main group only; other groups are refused. Stops the assistant answering in a group. ' +
    'Its chat history and folder are kept; its scheduled tasks are removed. The main group cannot unregister itself.',
  input: z.strictObject({
    group_folder: HostCallArgsSchemas.unregister_group.shape.group_folder.describe(
      "The group's folder, as list_chats or list_tasks shows it.",
    ),
  }),
  run: (input, context) => forward('unregister_group', input, context),
});

/**
 * `clawbar tasks …`: scheduled tasks (DESIGN.md §6). Each command is one control request, which
 * `serve` answers or, when it is not running, the core in-process (control.ts).
 *
 * Loaded with index.ts for `--help`, so it imports only the CLI's small modules and types.
 */
import type { CommandSpec } from './args.js';
import { withControl } from './control.js';
import { CliError, type Output } from './output.js';
import { ControlRequestError } from '../core/control/client.js';
import type { TaskChangeView, TaskRunStarted, TaskRunsView } from '../core/control/handlers.js';
import type { TaskListing, TaskRunView, TaskView } from '../core/scheduler/task-admin.js';

/** How much of a prompt `tasks list` shows on its line. */
const PROMPT_PREVIEW_CHARS = 60;

/** Text from the store on a terminal: control characters (a prompt's line breaks) as spaces. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}

function preview(text: string): string {
  const line = oneLine(text);
  return line.length > PROMPT_PREVIEW_CHARS ? `${line.slice(0, PROMPT_PREVIEW_CHARS)}…` : line;
}

function groupName(task: TaskView): string {
  return task.group.name ?? task.group.jid;
}

function nextRunText(task: TaskView): string {
  if (task.nextRunLocal === null) {
    return task.status === 'done' ? 'none (a one-off that has run)' : 'none';
  }
  return task.timezone === 'UTC' || task.timezone === 'Etc/UTC'
    ? task.nextRunLocal
    : `${task.nextRunLocal} (${task.nextRunUtc})`;
}

function statusText(task: TaskView): string {
  if (task.status === 'paused') return `paused${task.pausedReason ? `: ${task.pausedReason}` : ''}`;
  return task.status;
}

function lastRunText(task: TaskView): string {
  if (task.lastStatus === null) return 'never';
  const error = task.lastError ? `: ${preview(task.lastError)}` : '';
  const streak =
    task.consecutiveFailures > 1 ? ` (${task.consecutiveFailures} failures in a row)` : '';
  return `${task.lastStatus}${task.lastStatus === 'success' ? '' : error}${streak}`;
}

function taskBlock(task: TaskView): string {
  return [
    `${task.id}  ${groupName(task)}  ${statusText(task)}`,
    `  schedule: ${task.schedule}`,
    `  next run: ${nextRunText(task)}`,
    `  last run: ${lastRunText(task)}`,
    `  prompt:   ${preview(task.prompt)}`,
  ].join('\n');
}

function listingText(listing: TaskListing): string {
  const blocks = listing.tasks.map(taskBlock);
  for (const bad of listing.unreadable) blocks.push(`${bad.id}  unreadable: ${oneLine(bad.error)}`);
  return blocks.length === 0
    ? 'no tasks yet; add one with `clawbar tasks add --group G --cron EXPR PROMPT`'
    : blocks.join('\n\n');
}

function durationText(ms: number | null): string {
  if (ms === null) return '-';
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60_000).toFixed(1)} min`;
}

function runLine(run: TaskRunView): string {
  const tokens =
    run.inputTokens === null && run.outputTokens === null
      ? ''
      : `  ${run.inputTokens ?? 0} in / ${run.outputTokens ?? 0} out`;
  const note = run.error ?? run.summary;
  return `${run.dueLocal}  ${run.status.padEnd(7)}  ${durationText(run.durationMs).padStart(8)}${tokens}${note ? `  ${preview(note)}` : ''}`;
}

/** `tasks add`'s input mistakes (a bad cron, an unknown zone, a past time) exit 2, as usage errors do. */
async function asUsageError<T>(request: Promise<T>): Promise<T> {
  try {
    return await request;
  } catch (err) {
    if (err instanceof ControlRequestError && err.code === 'bad_request')
      throw new CliError(err.message, 2);
    throw err;
  }
}

export function taskCommands(out: Output): CommandSpec[] {
  const byId = (
    verb: 'pause' | 'resume' | 'remove',
    summary: string,
    done: string,
  ): CommandSpec => ({
    name: `tasks ${verb}`,
    synopsis: 'ID',
    summary,
    details: 'ID is the task id `clawbar tasks list` shows, like t_ab2cd3ef.',
    options: {},
    positionals: { min: 1, max: 1 },
    async run({ positionals }) {
      const id = positionals[0] as string;
      const method = `tasks.${verb}` as const;
      const result = (await withControl((c) => c.request(method, { id }))) as TaskChangeView;
      out.print(result, () => {
        const task = result.task;
        if (!task) return `${done} task ${id}`;
        const next = verb === 'remove' ? '' : `; next run ${nextRunText(task)}`;
        return `${done} task ${id} (${groupName(task)}: ${task.schedule})${verb === 'pause' ? '' : next}`;
      });
    },
  });
  return [
    {
      name: 'tasks list',
      synopsis: '[--group G]',
      summary: 'the scheduled tasks, with their next run and last result',
      details: "Next runs show in the task's timezone and in UTC.",
      options: {
        group: { type: 'string', value: 'G', help: "only this group's (name, folder or jid)" },
      },
      positionals: { min: 0, max: 0 },
      async run({ values }) {
        const group = values.group as string | undefined;
        const listing = (await withControl((c) =>
          c.request('tasks.list', group !== undefined ? { group } : {}),
        )) as TaskListing;
        out.print(listing, () => listingText(listing));
      },
    },
    {
      name: 'tasks add',
      synopsis:
        '--group G --cron EXPR|--every DURATION|--at ISO [--tz Z] [--context group|isolated] [--post-result|--no-post-result] PROMPT',
      summary: 'schedule a prompt for a group',
      details: [
        'Exactly one of:',
        '  --cron "0 8 * * 1-5"    5 fields (minute hour day-of-month month day-of-week)',
        '  --every 15m             30s to 366d, e.g. 30s, 15m, 2h, 1d, 1h30m',
        '  --at 2026-11-25T17:00   once; without Z or an offset, read in the timezone',
        'The timezone defaults to yours (TZ). PROMPT is the rest of the line; text that starts',
        'with - goes after --. A task runs in its own fresh conversation unless --context group.',
      ].join('\n'),
      options: {
        group: { type: 'string', value: 'G', help: "the group's name, folder or jid" },
        cron: { type: 'string', value: 'EXPR', help: 'a 5-field cron expression' },
        every: { type: 'string', value: 'DURATION', help: 'run every DURATION, from now' },
        at: { type: 'string', value: 'ISO', help: 'run once at this ISO 8601 time' },
        tz: { type: 'string', value: 'Z', help: 'an IANA timezone, like Europe/Berlin' },
        context: {
          type: 'string',
          value: 'group|isolated',
          help: "group: continue the chat's conversation; isolated (default): a fresh one",
        },
        'post-result': { type: 'boolean', help: 'post the final result to the chat (default)' },
        'no-post-result': { type: 'boolean', help: 'do not post the final result' },
      },
      positionals: { min: 1, max: Number.MAX_SAFE_INTEGER },
      dashHint: 'to give a prompt that starts with -, put -- before it',
      async run({ values, positionals }) {
        const usage = `usage: clawbar tasks add ${this.synopsis}`;
        if (!values.group) throw new CliError(`--group is required\n${usage}`);
        const kinds = (['cron', 'every', 'at'] as const).filter((k) => values[k] !== undefined);
        if (kinds.length !== 1)
          throw new CliError(
            `${kinds.length === 0 ? 'give' : 'give only'} one of --cron, --every or --at\n${usage}`,
          );
        if (values['post-result'] && values['no-post-result'])
          throw new CliError('--post-result and --no-post-result contradict each other');
        const context = values.context as string | undefined;
        if (context !== undefined && context !== 'group' && context !== 'isolated')
          throw new CliError(`--context must be group or isolated, got "${oneLine(context)}"`);
        const prompt = positionals.join(' ');
        if (prompt.trim() === '') throw new CliError('the prompt is empty; nothing was scheduled');
        const task = (await asUsageError(
          withControl((c) =>
            c.request('tasks.add', {
              group: values.group as string,
              prompt,
              ...(values.cron !== undefined ? { cron: values.cron as string } : {}),
              ...(values.every !== undefined ? { every: values.every as string } : {}),
              ...(values.at !== undefined ? { at: values.at as string } : {}),
              ...(values.tz !== undefined ? { timezone: values.tz as string } : {}),
              ...(context !== undefined ? { contextMode: context as 'group' | 'isolated' } : {}),
              ...(values['no-post-result'] ? { postResult: false } : {}),
            }),
          ),
        )) as TaskView;
        out.print(
          task,
          () =>
            `added task ${task.id} to ${groupName(task)}: ${task.schedule}; next run ${nextRunText(task)}`,
        );
      },
    },
    byId('pause', 'stop firing a task until it is resumed', 'paused'),
    byId('resume', 'fire a paused task again, from now on', 'resumed'),
    byId('remove', 'delete a task and its run log', 'removed'),
    {
      name: 'tasks run',
      synopsis: 'ID',
      summary: 'run a task now, outside its schedule',
      details: [
        'Queues one run of the task in its group now (needs `clawbar serve`). Its next scheduled',
        'run stays as it was. The run shows in `clawbar tasks runs ID` when it ends.',
      ].join('\n'),
      options: {},
      positionals: { min: 1, max: 1 },
      async run({ positionals }) {
        const id = positionals[0] as string;
        const result = (await withControl((c) => c.request('tasks.run', { id }))) as TaskRunStarted;
        out.print(
          result,
          () =>
            `queued a run of task ${id} in ${groupName(result.task)}; see \`clawbar tasks runs ${id}\` for how it went`,
        );
      },
    },
    {
      name: 'tasks runs',
      synopsis: 'ID [--limit N]',
      summary: "a task's run log, latest first",
      details:
        "Each run: its due time in the task's timezone, status, duration, tokens, and the\nresult summary or the error.",
      options: {
        limit: { type: 'string', value: 'N', help: 'at most N runs (default 20)' },
      },
      positionals: { min: 1, max: 1 },
      async run({ values, positionals }) {
        const raw = values.limit as string | undefined;
        if (raw !== undefined && (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 1000))
          throw new CliError(
            `--limit must be a whole number from 1 to 1000, got "${oneLine(raw)}"`,
          );
        const id = positionals[0] as string;
        const result = (await withControl((c) =>
          c.request('tasks.runs', { id, ...(raw !== undefined ? { limit: Number(raw) } : {}) }),
        )) as TaskRunsView;
        out.print(result, () =>
          result.runs.length === 0
            ? `task ${id} has not run yet`
            : result.runs.map(runLine).join('\n'),
        );
      },
    },
  ];
}

/**
 * The agent's scheduled-task host calls: schedule_task, list_tasks, update_task, pause_task,
 * resume_task and cancel_task. They act on real tasks through {@link TaskAdmin}, never the store
 * directly, so a task is validated the same way as from the CLI and the scheduler hears of every
 * change (it re-arms its timers from TaskAdmin's `onChange`).
 *
 * Authorization comes only from the run's binding, never from the payload:
 * - every group schedules, sees and manages its own group's tasks;
 * - only the main group may name another group (`group_folder`) or touch another group's task.
 *
 * A non-main group asking about another group's task is told there is no such task in its
 * group, the same answer as for an id that does not exist, so it learns nothing about other
 * groups' tasks (not even that the id exists). Every refusal is logged as a warning.
 *
 * Errors from TaskAdmin (a bad cron, a past time, an unknown timezone, …) come back as
 * `ok: false` with their message, so the model can correct the call and try again.
 */
import { CoreInputError } from '../errors.js';
import type { Logger } from '../logger.js';
import { UnknownTaskError, type TaskAdmin, type TaskView } from '../scheduler/task-admin.js';
import { CorruptTaskError, type Group, type Store, type Task } from '../store/index.js';
import { LIST_TASKS_MAX, type HostCallArgsSchemas } from './protocol.js';
import type { HostCallResult, RunBinding } from './host-tools.js';
import type { z } from 'zod';
import { clip, oneLine } from '../text.js';

type Args<Name extends keyof typeof HostCallArgsSchemas> = z.output<
  (typeof HostCallArgsSchemas)[Name]
>;

/**
 * The context a task made by the agent runs in when the call does not say. `group`: the agent
 * schedules from a conversation ("remind me every weekday at 8 to stretch"), so the run sees
 * that conversation and becomes part of it; when the user answers the reminder, the assistant
 * knows what it sent and why. Self-contained jobs (a report, a briefing) can ask for
 * `isolated`, which keeps their runs small and out of the chat's history.
 */
export const AGENT_TASK_DEFAULT_CONTEXT = 'group' as const;

/**
 * The most live tasks (active or paused) a group may have when an agent schedules one more. A
 * prompt-injected agent could otherwise fill the scheduler with tasks that each call the model
 * every 30 seconds. The CLI is not bound by it: a person adding tasks knows what they cost.
 */
export const MAX_AGENT_TASKS_PER_GROUP = 50;

/** Characters of a task's prompt `list_tasks` shows; the whole prompt is in the task. */
const PROMPT_PREVIEW_CHARS = 120;
/** Characters of a task's last error `list_tasks` shows. */
const ERROR_PREVIEW_CHARS = 160;

export interface TaskToolsDeps {
  store: Pick<Store, 'getGroup' | 'listGroups'>;
  tasks: TaskAdmin;
  log: Logger;
}

type Refusal = { ok: false; result: string };

export class TaskTools {
  constructor(private readonly deps: TaskToolsDeps) {}

  schedule(binding: RunBinding, args: Args<'schedule_task'>): HostCallResult {
    const group = this.targetGroup(binding, args.group_folder, 'schedule a task for');
    if ('ok' in group) return group;
    const live = this.deps.tasks
      .list({ groupJid: group.jid })
      .tasks.filter((task) => task.status !== 'done').length;
    if (live >= MAX_AGENT_TASKS_PER_GROUP) {
      this.deps.log.warn(
        { group: binding.groupJid, target: group.jid, tasks: live },
        'refused: the group has as many tasks as an agent may schedule',
      );
      return {
        ok: false,
        result:
          `not scheduled: group ${oneLine(group.folder)} already has ${live} tasks, the most an assistant may set up; ` +
          'cancel ones that are no longer needed (list_tasks shows them), or ask the user to add it with `clawbar tasks add`',
      };
    }
    return this.admin(() => {
      const task = this.deps.tasks.add({
        group,
        prompt: args.prompt,
        ...scheduleOf(args),
        contextMode: args.context_mode ?? AGENT_TASK_DEFAULT_CONTEXT,
        postResult: args.post_result ?? true,
        createdBy: `agent:${binding.folder}`,
      });
      this.deps.log.info(
        { group: binding.groupJid, target: group.jid, task: task.id },
        'agent scheduled a task',
      );
      const view = this.deps.tasks.view(task);
      return `Scheduled task ${task.id} for ${groupLabel(view)}: ${describe(view)}.`;
    });
  }

  list(binding: RunBinding, args: Args<'list_tasks'>): HostCallResult {
    let groupJid: string | undefined;
    if (args.group_folder !== undefined || !binding.isMain) {
      const group = this.targetGroup(binding, args.group_folder, 'list the tasks of');
      if ('ok' in group) return group;
      groupJid = group.jid;
    }
    const { tasks, unreadable } = this.deps.tasks.list(groupJid === undefined ? {} : { groupJid });
    const scope =
      groupJid === undefined
        ? 'in all groups'
        : `in group ${oneLine(args.group_folder ?? binding.folder)}`;
    if (tasks.length === 0 && unreadable.length === 0) {
      return { ok: true, result: `No scheduled tasks ${scope}.` };
    }
    const shown = tasks.slice(0, LIST_TASKS_MAX);
    const header =
      `${tasks.length} task${tasks.length === 1 ? '' : 's'} ${scope}` +
      (shown.length < tasks.length ? `; the ${shown.length} oldest are shown` : '') +
      ". Each line: id | group | schedule | next run (in the task's timezone, and UTC) | status | last run | prompt";
    const lines = shown.map((task) => taskLine(this.deps.tasks.view(task)));
    for (const err of unreadable) {
      lines.push(
        `${err.taskId} | unreadable: its stored schedule is corrupt; cancel it and schedule it again`,
      );
    }
    return { ok: true, result: [header, ...lines].join('\n') };
  }

  update(binding: RunBinding, args: Args<'update_task'>): HostCallResult {
    const task = this.ownTask(binding, args.task_id, 'update');
    if ('ok' in task) return task;
    return this.admin(() => {
      const updated = this.deps.tasks.update(task.id, {
        ...(args.prompt !== undefined ? { prompt: args.prompt } : {}),
        ...scheduleOf(args),
        ...(args.context_mode !== undefined ? { contextMode: args.context_mode } : {}),
        ...(args.post_result !== undefined ? { postResult: args.post_result } : {}),
      });
      this.logChange(binding, updated, 'agent updated a task');
      return `Updated task ${updated.id}: ${describe(this.deps.tasks.view(updated))}.`;
    });
  }

  pause(binding: RunBinding, args: Args<'pause_task'>): HostCallResult {
    const task = this.ownTask(binding, args.task_id, 'pause');
    if ('ok' in task) return task;
    return this.admin(() => {
      this.deps.tasks.pause(task.id, `paused by the assistant in ${binding.folder}`);
      this.logChange(binding, task, 'agent paused a task');
      return `Paused task ${task.id}: it will not run until resumed with resume_task.`;
    });
  }

  resume(binding: RunBinding, args: Args<'resume_task'>): HostCallResult {
    const task = this.ownTask(binding, args.task_id, 'resume');
    if ('ok' in task) return task;
    return this.admin(() => {
      const resumed = this.deps.tasks.resume(task.id);
      this.logChange(binding, resumed, 'agent resumed a task');
      return `Resumed task ${resumed.id}: ${describe(this.deps.tasks.view(resumed))}.`;
    });
  }

  cancel(binding: RunBinding, args: Args<'cancel_task'>): HostCallResult {
    const task = this.ownTask(binding, args.task_id, 'cancel');
    if ('ok' in task) return task;
    return this.admin(() => {
      this.deps.tasks.remove(task.id);
      this.logChange(binding, task, 'agent cancelled a task');
      return `Cancelled task ${task.id}: it is removed and will not run again.`;
    });
  }

  /**
   * The group a task is for: the caller's own, or (main only) the registered group with
   * `folder`. A non-main group naming another group is refused and the refusal logged.
   */
  private targetGroup(
    binding: RunBinding,
    folder: string | undefined,
    action: string,
  ): Group | Refusal {
    if (folder === undefined || folder === binding.folder) {
      const own = this.deps.store.getGroup(binding.groupJid);
      return own ?? { ok: false, result: 'this group is no longer registered' };
    }
    if (!binding.isMain) {
      this.deps.log.warn(
        { group: binding.groupJid, folder: oneLine(folder) },
        `denied: non-main group tried to ${action} another group`,
      );
      return {
        ok: false,
        result: `not allowed: this group may only ${action} itself; leave out group_folder`,
      };
    }
    const group = this.deps.store.listGroups().find((candidate) => candidate.folder === folder);
    if (!group) {
      const known = this.deps.store
        .listGroups()
        .map((candidate) => candidate.folder)
        .join(', ');
      return {
        ok: false,
        result: `no registered group has the folder ${JSON.stringify(oneLine(folder))}; the groups are: ${known}`,
      };
    }
    return group;
  }

  /**
   * The task with this id, if the caller may manage it: any task for main, the group's own
   * otherwise. Another group's task is answered as unknown, so a non-main group learns nothing
   * about it; the refusal is logged.
   */
  private ownTask(binding: RunBinding, id: string, action: string): Task | Refusal {
    const unknown: Refusal = {
      ok: false,
      result: binding.isMain
        ? `no task has the id ${JSON.stringify(oneLine(id))}; list_tasks shows the ids`
        : `no task of this group has the id ${JSON.stringify(oneLine(id))}; list_tasks shows this group's tasks`,
    };
    let task: Task;
    try {
      task = this.deps.tasks.get(id);
    } catch (err) {
      if (err instanceof UnknownTaskError) return unknown;
      if (err instanceof CorruptTaskError) {
        // Its group cannot be read either, so only main, which may manage any task, is told.
        return binding.isMain ? { ok: false, result: err.message } : unknown;
      }
      throw err;
    }
    if (!binding.isMain && task.groupJid !== binding.groupJid) {
      this.deps.log.warn(
        { group: binding.groupJid, task: task.id, owner: task.groupJid },
        `denied: non-main group tried to ${action} another group's task`,
      );
      return unknown;
    }
    return task;
  }

  /** Runs a TaskAdmin change; its input errors become answers the model can act on. */
  private admin(change: () => string): HostCallResult {
    try {
      return { ok: true, result: change() };
    } catch (err) {
      if (err instanceof UnknownTaskError) {
        return { ok: false, result: 'that task no longer exists; list_tasks shows the ids' };
      }
      if (err instanceof CoreInputError || err instanceof CorruptTaskError) {
        return { ok: false, result: err.message };
      }
      throw err;
    }
  }

  private logChange(binding: RunBinding, task: Task, message: string): void {
    this.deps.log.info({ group: binding.groupJid, owner: task.groupJid, task: task.id }, message);
  }
}

/** The schedule fields of a call, only those given (TaskAdmin insists on exactly one). */
function scheduleOf(args: { cron?: string; every?: string; at?: string; timezone?: string }): {
  cron?: string;
  every?: string;
  at?: string;
  timezone?: string;
} {
  return {
    ...(args.cron !== undefined ? { cron: args.cron } : {}),
    ...(args.every !== undefined ? { every: args.every } : {}),
    ...(args.at !== undefined ? { at: args.at } : {}),
    ...(args.timezone !== undefined ? { timezone: args.timezone } : {}),
  };
}

function groupLabel(view: TaskView): string {
  return `group ${oneLine(view.group.folder ?? view.group.jid)}`;
}

/** "every weekday at 08:00 (Europe/Berlin); next run 2026-11-26 08:00 CET (07:00 UTC); …". */
function describe(view: TaskView): string {
  const next =
    view.nextRunLocal === null
      ? view.status === 'paused'
        ? 'paused, no next run until resumed'
        : 'no next run'
      : `next run ${view.nextRunLocal} (${view.nextRunUtc})`;
  return (
    `${view.schedule}; ${next}; context ${view.contextMode}; ` +
    (view.postResult ? 'the result is posted to the chat' : 'the result is not posted')
  );
}

/** One line of `list_tasks`. Prompts and errors are cleaned and clipped to stay one line. */
function taskLine(view: TaskView): string {
  const next =
    view.nextRunLocal === null ? 'no next run' : `${view.nextRunLocal} (${view.nextRunUtc})`;
  const status =
    view.status === 'paused' && view.pausedReason
      ? `paused (${oneLine(view.pausedReason)})`
      : view.status;
  const last =
    view.lastStatus === null
      ? 'never run'
      : `last ${view.lastStatus}` +
        (view.lastError ? `: ${clip(oneLine(view.lastError), ERROR_PREVIEW_CHARS)}` : '');
  return [
    view.id,
    groupLabel(view),
    view.schedule,
    next,
    status,
    last,
    JSON.stringify(clip(oneLine(view.prompt), PROMPT_PREVIEW_CHARS)),
  ].join(' | ');
}

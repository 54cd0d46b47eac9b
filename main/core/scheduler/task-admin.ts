/**
 * Adding, listing, pausing, resuming and removing scheduled tasks, and reading their run logs:
 * the one place that turns what a person (the CLI) or an agent (its host tools) asked for into
 * stored tasks. The control handlers call it, and the scheduler and the agent's host tools are
 * meant to share it, so a task is validated and its first due time computed the same way
 * whoever makes it.
 *
 * It arms no timer: the scheduler hears of each change through `onChange`.
 */
import { CoreInputError } from '../errors.js';
import {
  CorruptTaskError,
  MAX_TASK_PROMPT_CHARS,
  TaskValidationError,
  type Group,
  type Store,
  type Task,
  type TaskContextMode,
  type TaskRun,
  type TaskRunStatus,
  type TaskStatus,
} from '../store/index.js';
import {
  describeSchedule,
  formatInZone,
  nextRun,
  parseSchedule,
  type Schedule,
  type ScheduleInput,
  validateTimezone,
} from './schedule.js';

/** No task has the id a command named. */
export class UnknownTaskError extends CoreInputError {
  constructor(readonly taskId: string) {
    super(
      `no task has the id "${printable(taskId).slice(0, 40)}"; see \`clawbar tasks list\` for the ids`,
    );
    this.name = 'UnknownTaskError';
  }
}

/** What changed, for the scheduler to re-arm (or disarm) the task's timer. */
export interface TaskChange {
  kind: 'added' | 'updated' | 'paused' | 'resumed' | 'removed';
  taskId: string;
}

export interface TaskAdminDeps {
  store: Store;
  /** The user's timezone (`ClawbarConfig.timezone`): a task's zone unless it names its own. */
  timezone: string;
  /** @default Date.now */
  now?: () => number;
  /** Told after each change is stored; the scheduler re-arms from it. */
  onChange?: (change: TaskChange) => void;
}

/** A new task, as the CLI or a host tool gives it: a schedule, not yet checked. */
export interface AddTaskInput extends ScheduleInput {
  /** The group the task runs in, already resolved (and, for an agent, authorized). */
  group: Group;
  prompt: string;
  /** @default 'isolated' */
  contextMode?: TaskContextMode;
  /** Whether the final result is posted to the chat. @default true */
  postResult?: boolean;
  /** `cli`, or `agent:<group folder>`. */
  createdBy: string;
}

/**
 * Changes to a task, as the CLI or a host tool gives them; every field optional, at least one
 * given. A new schedule is at most one of `cron`, `every`, `at`.
 */
export interface UpdateTaskInput extends ScheduleInput {
  prompt?: string;
  contextMode?: TaskContextMode;
  postResult?: boolean;
}

/** A task as `tasks list` and the agent see it: times in the task's zone and in UTC. */
export interface TaskView {
  id: string;
  group: { jid: string; name: string | null; folder: string | null };
  prompt: string;
  kind: Task['schedule']['kind'];
  /** "every weekday at 08:00 (Europe/Berlin)", "every 15m", "once at 2026-11-25 17:00 (UTC)". */
  schedule: string;
  timezone: string;
  contextMode: TaskContextMode;
  postResult: boolean;
  status: TaskStatus;
  pausedReason: string | null;
  /** ISO UTC; null when none is due (paused, done). */
  nextRun: string | null;
  /** The next run as read in the task's timezone, e.g. "2026-11-25 08:00 CET". */
  nextRunLocal: string | null;
  /** The next run in UTC, e.g. "2026-11-25 07:00 UTC". */
  nextRunUtc: string | null;
  lastRun: string | null;
  lastStatus: TaskRunStatus | null;
  lastError: string | null;
  consecutiveFailures: number;
  createdBy: string;
  createdAt: string;
}

/** One entry of a task's run log. */
export interface TaskRunView {
  /** The due time the run stands for, ISO UTC. */
  dueAt: string;
  /** The due time in the task's timezone. */
  dueLocal: string;
  startedAt: string | null;
  durationMs: number | null;
  status: TaskRunStatus;
  summary: string | null;
  error: string | null;
  inputTokens: number | null;
  outputTokens: number | null;
}

/** `tasks list`: the tasks that can be read, and those that cannot (never hidden). */
export interface TaskListing {
  tasks: TaskView[];
  /** Tasks whose stored schedule is corrupt: shown with why, so they can be removed. */
  unreadable: Array<{ id: string; error: string }>;
}

// Tab and newline are allowed in a prompt (it may be a multi-line instruction); other control
// characters could forge log lines or terminal output, and no one types them.
// eslint-disable-next-line no-control-regex
const PROMPT_CONTROL_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f]/;
/** A pause reason is one line. */
const MAX_REASON_CHARS = 200;

/** Text from the user, safe to echo in an error: control characters shown as `?`. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function iso(epochMs: number | null): string | null {
  return epochMs === null ? null : new Date(epochMs).toISOString();
}

export class TaskAdmin {
  private readonly now: () => number;

  constructor(private readonly deps: TaskAdminDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Validates and stores a new task, active, with its first due time computed from now.
   * @throws ScheduleError (a CoreInputError) for a bad schedule; CoreInputError for a bad
   *   prompt or option.
   */
  add(input: AddTaskInput): Task {
    const prompt = checkPrompt(input.prompt);
    const now = this.now();
    const schedule = parseSchedule(
      {
        ...(input.cron !== undefined ? { cron: input.cron } : {}),
        ...(input.every !== undefined ? { every: input.every } : {}),
        ...(input.at !== undefined ? { at: input.at } : {}),
        ...(input.timezone !== undefined ? { timezone: input.timezone } : {}),
      },
      now,
      this.deps.timezone,
    );
    // A cron carries its own zone; for the others the zone is how times are shown (and how an
    // `at` without an offset was read).
    const timezone =
      schedule.kind === 'cron'
        ? schedule.timezone
        : validateTimezone(input.timezone ?? this.deps.timezone);
    const first = nextRun(schedule, now);
    if (first === null) {
      // parseSchedule refuses a past `at`, so this is a cron with no future match.
      throw new CoreInputError('this schedule has no future run; check the date it names');
    }
    const task = this.storeInput(() =>
      this.deps.store.createTask(
        {
          groupJid: input.group.jid,
          prompt,
          schedule,
          timezone,
          contextMode: input.contextMode ?? 'isolated',
          postResult: input.postResult ?? true,
          nextRun: first,
          createdBy: input.createdBy,
        },
        now,
      ),
    );
    this.deps.onChange?.({ kind: 'added', taskId: task.id });
    return task;
  }

  /** The task with this id. @throws UnknownTaskError; CorruptTaskError when it cannot be read. */
  get(id: string): Task {
    const task = this.deps.store.getTask(id);
    if (!task) throw new UnknownTaskError(id);
    return task;
  }

  /** Every task, or one group's, oldest first; corrupt ones listed apart, never dropped. */
  list(options: { groupJid?: string } = {}): { tasks: Task[]; unreadable: CorruptTaskError[] } {
    const unreadable: CorruptTaskError[] = [];
    const tasks = this.deps.store.listTasks({
      ...(options.groupJid !== undefined ? { groupJid: options.groupJid } : {}),
      onCorrupt: (err) => unreadable.push(err),
    });
    return { tasks, unreadable };
  }

  /**
   * Changes a task's prompt, schedule, timezone, context mode or whether its result is posted.
   *
   * A new schedule is validated like a new task's and read in the given timezone, else in the
   * task's own (not the user's: a task someone put in New York stays there). An active task's
   * next run is computed afresh from now; a paused one stays without a next run until resumed.
   * A timezone alone moves a cron to that zone (08:00 there); for an interval or a one-off it
   * only changes how times are shown, since those are fixed instants.
   *
   * @throws UnknownTaskError; CoreInputError when nothing is changed, for a one-off that has
   *   already run, or a bad prompt or option; ScheduleError for a bad schedule or timezone;
   *   CorruptTaskError when the task cannot be read (remove it and add it again).
   */
  update(id: string, changes: UpdateTaskInput): Task {
    const changesSomething = (
      ['prompt', 'cron', 'every', 'at', 'timezone', 'contextMode', 'postResult'] as const
    ).some((key) => changes[key] !== undefined);
    if (!changesSomething) {
      throw new CoreInputError(
        'nothing to change: give a new prompt, schedule (cron, every or at), timezone, context mode or post-result setting',
      );
    }
    const newSchedule =
      changes.cron !== undefined || changes.every !== undefined || changes.at !== undefined;
    const task = this.get(id);
    if (task.status === 'done') {
      throw new CoreInputError(
        `task ${id} is a one-off that has already run; add a new task instead of changing it`,
      );
    }
    const prompt = changes.prompt !== undefined ? checkPrompt(changes.prompt) : undefined;
    const now = this.now();
    const zone = validateTimezone(changes.timezone ?? task.timezone);
    let schedule: Schedule | undefined;
    if (newSchedule) {
      schedule = parseSchedule(
        {
          ...(changes.cron !== undefined ? { cron: changes.cron } : {}),
          ...(changes.every !== undefined ? { every: changes.every } : {}),
          ...(changes.at !== undefined ? { at: changes.at } : {}),
          timezone: zone,
        },
        now,
        this.deps.timezone,
      );
    } else if (changes.timezone !== undefined && task.schedule.kind === 'cron') {
      schedule = { ...task.schedule, timezone: zone };
    }
    // A paused task gets its next run when resumed; an active one from its (new) schedule now.
    let next: number | null | undefined;
    if (schedule !== undefined && task.status === 'active') {
      next = nextRun(schedule, now);
      if (next === null) {
        throw new CoreInputError('this schedule has no future run; check the date it names');
      }
    }
    const updated = this.storeInput(() =>
      this.deps.store.updateTask(
        id,
        {
          ...(prompt !== undefined ? { prompt } : {}),
          ...(schedule !== undefined ? { schedule } : {}),
          ...(changes.timezone !== undefined || schedule !== undefined ? { timezone: zone } : {}),
          ...(changes.contextMode !== undefined ? { contextMode: changes.contextMode } : {}),
          ...(changes.postResult !== undefined ? { postResult: changes.postResult } : {}),
          ...(next !== undefined ? { nextRun: next } : {}),
        },
        now,
      ),
    );
    if (!updated) throw new UnknownTaskError(id);
    this.deps.onChange?.({ kind: 'updated', taskId: id });
    return updated;
  }

  /**
   * Pauses a task: it is not fired until resumed, and has no next run meanwhile. Pausing a
   * paused task again just updates the reason. Works on a task whose schedule is corrupt.
   * @throws UnknownTaskError; CoreInputError for a one-off task that has already run.
   */
  pause(id: string, reason = 'paused by the user'): Task | null {
    const before = this.readable(id);
    if (before?.status === 'done') {
      throw new CoreInputError(
        `task ${id} is a one-off that has already run; there is nothing to pause (remove it with \`clawbar tasks remove ${id}\`)`,
      );
    }
    const changed = this.deps.store.setTaskStatus(id, 'paused', this.now(), {
      reason: printable(reason).slice(0, MAX_REASON_CHARS),
      nextRun: null,
    });
    if (!changed) throw new UnknownTaskError(id);
    this.deps.onChange?.({ kind: 'paused', taskId: id });
    return this.readable(id);
  }

  /**
   * Makes a task active again, its next run computed from now (due times that passed while it
   * was paused are not made up). Resets its failure count.
   * @throws UnknownTaskError; CoreInputError for a one-off whose time has passed or that ran;
   *   CorruptTaskError when its schedule cannot be read.
   */
  resume(id: string): Task {
    const task = this.get(id);
    if (task.status === 'done') {
      throw new CoreInputError(
        `task ${id} is a one-off that has already run; add a new task to run it again`,
      );
    }
    const now = this.now();
    const next = nextRun(task.schedule, now);
    if (next === null) {
      throw new CoreInputError(
        `task ${id} was due once, at ${formatInZone(task.schedule.kind === 'once' ? task.schedule.at : now, task.timezone)}, which has passed; remove it and add a new one`,
      );
    }
    this.deps.store.setTaskStatus(id, 'active', now, { nextRun: next });
    this.deps.onChange?.({ kind: 'resumed', taskId: id });
    return this.get(id);
  }

  /**
   * Removes a task and its run log; works on a corrupt task too.
   * @returns the task as it was, or null when it could not be read.
   * @throws UnknownTaskError
   */
  remove(id: string): Task | null {
    const before = this.readable(id);
    if (!this.deps.store.removeTask(id)) throw new UnknownTaskError(id);
    this.deps.onChange?.({ kind: 'removed', taskId: id });
    return before;
  }

  /** The task's run log, latest first, at most `limit`. @throws UnknownTaskError */
  runs(id: string, limit = 20): TaskRun[] {
    this.readable(id);
    return this.deps.store.listRuns(id, limit);
  }

  /** The task as it is for a person: times in its zone and in UTC. */
  view(task: Task): TaskView {
    const group = this.deps.store.getGroup(task.groupJid);
    return {
      id: task.id,
      group: { jid: task.groupJid, name: group?.name ?? null, folder: group?.folder ?? null },
      prompt: task.prompt,
      kind: task.schedule.kind,
      schedule: describeSchedule(task.schedule, task.timezone),
      timezone: task.timezone,
      contextMode: task.contextMode,
      postResult: task.postResult,
      status: task.status,
      pausedReason: task.pausedReason,
      nextRun: iso(task.nextRun),
      nextRunLocal: task.nextRun === null ? null : formatInZone(task.nextRun, task.timezone),
      nextRunUtc: task.nextRun === null ? null : formatInZone(task.nextRun, 'UTC'),
      lastRun: iso(task.lastRun),
      lastStatus: task.lastStatus,
      lastError: task.lastError,
      consecutiveFailures: task.consecutiveFailures,
      createdBy: task.createdBy,
      createdAt: new Date(task.createdAt).toISOString(),
    };
  }

  /** A run log entry for a person, its due time in `timezone`. */
  runView(run: TaskRun, timezone: string): TaskRunView {
    return {
      dueAt: new Date(run.dueAt).toISOString(),
      dueLocal: formatInZone(run.dueAt, timezone),
      startedAt: iso(run.startedAt),
      durationMs: run.durationMs,
      status: run.status,
      summary: run.resultSummary,
      error: run.error,
      inputTokens: run.inputTokens,
      outputTokens: run.outputTokens,
    };
  }

  /** The task, null when it exists but cannot be read. @throws UnknownTaskError */
  private readable(id: string): Task | null {
    try {
      return this.get(id);
    } catch (err) {
      if (err instanceof CorruptTaskError) return null;
      throw err;
    }
  }

  /** Runs a store write, turning its validation errors into input errors for the caller. */
  private storeInput<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      if (err instanceof TaskValidationError) throw new CoreInputError(err.message);
      throw err;
    }
  }
}

/** The prompt as given, refused when empty, too long, or carrying control characters. */
function checkPrompt(prompt: unknown): string {
  if (typeof prompt !== 'string' || prompt.trim() === '') {
    throw new CoreInputError('the prompt is empty: say what the task should ask the assistant');
  }
  if (prompt.length > MAX_TASK_PROMPT_CHARS) {
    throw new CoreInputError(
      `the prompt is ${prompt.length} characters long; a task's prompt may be at most ${MAX_TASK_PROMPT_CHARS}`,
    );
  }
  if (PROMPT_CONTROL_CHARS.test(prompt)) {
    throw new CoreInputError(
      'the prompt contains control characters; only text, tabs and line breaks are allowed',
    );
  }
  return prompt;
}

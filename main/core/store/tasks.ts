/**
 * Scheduled tasks and their run log.
 *
 * Firing a due time exactly once rests on {@link taskQueries} `claimRun`: a run is claimed by
 * inserting its `task_runs` row, unique per (task, due time), in a transaction, before the run
 * starts. A second claim of the same due time, after a restart or from a duplicate timer, finds
 * the row and gets null. A row still `running` at start was cut off by a crash: it is marked as
 * interrupted (`markInterrupted`), never run again.
 *
 * Everything that reaches these functions may come from an agent's tool call or the CLI, so each
 * input is checked here too, whatever the caller checked: the store is the last line before the
 * database. The store checks shapes and bounds; what a schedule means (a valid cron expression,
 * a known timezone) is the scheduler's to check.
 */
import crypto from 'node:crypto';
import { z } from 'zod';
import type { Db } from './database.js';
import type {
  NewTask,
  Task,
  TaskChanges,
  TaskContextMode,
  TaskKind,
  TaskRun,
  TaskRunOutcome,
  TaskRunStatus,
  TaskSchedule,
  TaskStatus,
} from './types.js';

/** The longest prompt a task may have: it is sent to the model at every run. */
export const MAX_TASK_PROMPT_CHARS = 10_000;
/** The longest result summary kept per run; it is shown in `tasks runs` and notifications. */
export const MAX_TASK_RESULT_CHARS = 2_000;
/**
 * The longest error kept per run. An error can carry a container's stderr, which is hostile and
 * unbounded.
 */
export const MAX_TASK_ERROR_CHARS = 1_000;
/** The longest reason kept for a pause. */
export const MAX_TASK_PAUSE_REASON_CHARS = 500;
/** The most runs {@link taskQueries} `listRuns` returns at once. */
export const MAX_TASK_RUNS_LISTED = 1_000;

/** What a run that was still running when the host stopped is marked with. */
export const INTERRUPTED_RUN_ERROR = 'interrupted by a restart';

/** `t_` and 8 characters of {@link ID_ALPHABET}; anything else is no task's id. */
const TASK_ID_PATTERN = /^t_[a-z0-9]{8}$/;
/** 32 letters and digits, without look-alikes (l, o, 0, 1): a byte's low 5 bits pick one evenly. */
const ID_ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789';
const ID_ATTEMPTS = 5;

/** Printable text: no control characters, which could forge log lines or terminal output. */
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex
const ANY_CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
/** IANA names such as `Europe/Paris`, `America/Argentina/Buenos_Aires`, `Etc/GMT+5`, `UTC`. */
const TIMEZONE_PATTERN = /^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/;
/** `cli`, `agent:<group folder>` and the like. */
const CREATED_BY_PATTERN = /^[a-z][a-z-]{0,31}(:[A-Za-z0-9_.-]{1,64})?$/;

/** A task's input is malformed: the message names the field and what is wrong with it. */
export class TaskValidationError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`invalid task ${field}: ${problem}`);
    this.name = 'TaskValidationError';
  }
}

/** No task has this id (or the id is not of a task's form). */
export class TaskNotFoundError extends Error {
  constructor(readonly taskId: string) {
    super(`no task has the id ${JSON.stringify(String(taskId).slice(0, 40))}`);
    this.name = 'TaskNotFoundError';
  }
}

/**
 * A stored task cannot be read: its schedule is not JSON, not of a schedule's shape, or not of
 * its row's kind. It is never guessed at: the scheduler pauses such a task and logs this.
 */
export class CorruptTaskError extends Error {
  constructor(
    readonly taskId: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(
      `task ${taskId} cannot be read: ${problem}. ` +
        `Remove it with \`clawbar tasks remove ${taskId}\` and add it again.`,
      options,
    );
    this.name = 'CorruptTaskError';
  }
}

const timeSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const ScheduleSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('cron'),
    expr: z
      .string()
      .min(1)
      .max(200)
      .refine((expr) => !ANY_CONTROL_CHARS.test(expr), 'contains control characters'),
    timezone: z.string().regex(TIMEZONE_PATTERN, 'is not an IANA timezone name'),
  }),
  z.strictObject({
    kind: z.literal('interval'),
    everyMs: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
    anchor: timeSchema,
  }),
  z.strictObject({ kind: z.literal('once'), at: timeSchema }),
]);

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length ? issue.path.join('.') : 'value'}: ${issue.message}`)
    .join('; ');
}

// --- input checks -----------------------------------------------------------------------------

function isTaskId(id: unknown): id is string {
  return typeof id === 'string' && TASK_ID_PATTERN.test(id);
}

function checkSchedule(schedule: unknown): TaskSchedule {
  const parsed = ScheduleSchema.safeParse(schedule);
  if (!parsed.success) throw new TaskValidationError('schedule', describeIssues(parsed.error));
  return parsed.data;
}

function checkPrompt(prompt: unknown): string {
  if (typeof prompt !== 'string') throw new TaskValidationError('prompt', 'must be text');
  if (prompt.trim() === '') throw new TaskValidationError('prompt', 'is empty');
  if (prompt.length > MAX_TASK_PROMPT_CHARS) {
    throw new TaskValidationError(
      'prompt',
      `is ${prompt.length} characters long; the most is ${MAX_TASK_PROMPT_CHARS}`,
    );
  }
  return prompt;
}

function checkTimezone(timezone: unknown): string {
  if (typeof timezone !== 'string' || !TIMEZONE_PATTERN.test(timezone)) {
    throw new TaskValidationError('timezone', 'must be an IANA timezone name such as Europe/Paris');
  }
  return timezone;
}

function checkContextMode(mode: unknown): TaskContextMode {
  if (mode !== 'group' && mode !== 'isolated') {
    throw new TaskValidationError('context mode', 'must be "group" or "isolated"');
  }
  return mode;
}

function checkBoolean(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TaskValidationError(field, 'must be true or false');
  return value;
}

function checkTime(field: string, value: unknown): number {
  if (!timeSchema.safeParse(value).success) {
    throw new TaskValidationError(field, 'must be a time in milliseconds since the epoch');
  }
  return value as number;
}

function checkOptionalTime(field: string, value: unknown): number | null {
  return value === null ? null : checkTime(field, value);
}

function checkCreatedBy(createdBy: unknown): string {
  if (typeof createdBy !== 'string' || !CREATED_BY_PATTERN.test(createdBy)) {
    throw new TaskValidationError('creator', 'must be like "cli" or "agent:<group folder>"');
  }
  return createdBy;
}

function checkGroupJid(jid: unknown): string {
  if (typeof jid !== 'string' || jid === '' || jid.length > 256 || ANY_CONTROL_CHARS.test(jid)) {
    throw new TaskValidationError('group', 'must be a group jid');
  }
  return jid;
}

/** A cron runs in its own timezone, and the task shows its times in the task's: one and the same. */
function checkTimezoneAgrees(schedule: TaskSchedule, timezone: string): void {
  if (schedule.kind === 'cron' && schedule.timezone !== timezone) {
    throw new TaskValidationError(
      'timezone',
      `is ${timezone}, but the cron schedule runs in ${schedule.timezone}; give both the same`,
    );
  }
}

/** Free text from a run (a result, an error, a reason): control characters out, cut to `max`. */
function boundedText(value: unknown, max: number): string | null {
  if (value === null || value === undefined) return null;
  const text = String(value).replace(new RegExp(CONTROL_CHARS.source, 'g'), ' ');
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function checkTokens(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TaskValidationError(field, 'must be a whole number of tokens, 0 or more');
  }
  return value;
}

// --- rows -------------------------------------------------------------------------------------

interface TaskRow {
  id: string;
  group_jid: string;
  prompt: string;
  kind: TaskKind;
  spec: string;
  timezone: string;
  context_mode: TaskContextMode;
  post_result: number;
  status: TaskStatus;
  paused_reason: string | null;
  next_run: number | null;
  last_run: number | null;
  last_status: TaskRunStatus | null;
  last_result: string | null;
  last_error: string | null;
  consecutive_failures: number;
  created_by: string;
  created_at: number;
  updated_at: number;
}

interface TaskRunRow {
  id: number;
  task_id: string;
  due_at: number;
  started_at: number | null;
  finished_at: number | null;
  duration_ms: number | null;
  status: TaskRunStatus;
  result_summary: string | null;
  error: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
}

/** Reads `tasks.spec`, refusing anything that is not a schedule of the row's own kind. */
function storedSchedule(row: TaskRow): TaskSchedule {
  let value: unknown;
  try {
    value = JSON.parse(row.spec);
  } catch (err) {
    throw new CorruptTaskError(row.id, 'its schedule (tasks.spec) is not JSON', { cause: err });
  }
  const parsed = ScheduleSchema.safeParse(value);
  if (!parsed.success) {
    throw new CorruptTaskError(
      row.id,
      `its schedule (tasks.spec) is not a valid schedule (${describeIssues(parsed.error)})`,
    );
  }
  if (parsed.data.kind !== row.kind) {
    throw new CorruptTaskError(
      row.id,
      `its schedule (tasks.spec) is a ${parsed.data.kind} schedule, but the task is of kind ${row.kind}`,
    );
  }
  return parsed.data;
}

function toTask(row: TaskRow): Task {
  return {
    id: row.id,
    groupJid: row.group_jid,
    prompt: row.prompt,
    schedule: storedSchedule(row),
    timezone: row.timezone,
    contextMode: row.context_mode,
    postResult: row.post_result === 1,
    status: row.status,
    pausedReason: row.paused_reason,
    nextRun: row.next_run,
    lastRun: row.last_run,
    lastStatus: row.last_status,
    lastResult: row.last_result,
    lastError: row.last_error,
    consecutiveFailures: row.consecutive_failures,
    createdBy: row.created_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toTaskRun(row: TaskRunRow): TaskRun {
  return {
    id: row.id,
    taskId: row.task_id,
    dueAt: row.due_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: row.duration_ms,
    status: row.status,
    resultSummary: row.result_summary,
    error: row.error,
    inputTokens: row.input_tokens,
    outputTokens: row.output_tokens,
  };
}

function newTaskId(): string {
  const bytes = crypto.randomBytes(8);
  let id = 't_';
  for (const byte of bytes) id += ID_ALPHABET[byte & 31];
  return id;
}

/** Options of {@link taskQueries} `listTasks`. */
export interface ListTasksOptions {
  /** Only this group's tasks. */
  groupJid?: string;
  /**
   * Told about each task that cannot be read, which is then left out of the list. Without it,
   * the first such task throws its {@link CorruptTaskError}: a listing never hides one silently.
   */
  onCorrupt?: (error: CorruptTaskError) => void;
}

export function taskQueries(db: Db) {
  const groupExists = db.prepare(`SELECT 1 FROM groups WHERE jid = ?`);
  const insertTask = db.prepare(`
    INSERT INTO tasks (id, group_jid, prompt, kind, spec, timezone, context_mode, post_result,
      status, next_run, consecutive_failures, created_by, created_at, updated_at)
    VALUES (@id, @groupJid, @prompt, @kind, @spec, @timezone, @contextMode, @postResult,
      'active', @nextRun, 0, @createdBy, @now, @now)
    ON CONFLICT (id) DO NOTHING`);
  const taskById = db.prepare(`SELECT * FROM tasks WHERE id = ?`);
  const allTasks = db.prepare(`SELECT * FROM tasks ORDER BY created_at, id`);
  const tasksOfGroup = db.prepare(
    `SELECT * FROM tasks WHERE group_jid = ? ORDER BY created_at, id`,
  );
  const updateDefinition = db.prepare(`
    UPDATE tasks SET prompt = @prompt, kind = @kind, spec = @spec, timezone = @timezone,
      context_mode = @contextMode, post_result = @postResult, next_run = @nextRun,
      updated_at = @now
    WHERE id = @id`);
  // Going back to active from paused or done starts the failure count afresh: the user has
  // looked at the task, and the 3-failure alert should be able to fire again.
  const updateStatus = db.prepare(`
    UPDATE tasks SET
      consecutive_failures = CASE WHEN @status = 'active' AND status != 'active' THEN 0
        ELSE consecutive_failures END,
      status = @status,
      paused_reason = @pausedReason,
      next_run = CASE WHEN @setNextRun = 1 THEN @nextRun ELSE next_run END,
      updated_at = @now
    WHERE id = @id`);
  const updateNextRun = db.prepare(
    `UPDATE tasks SET next_run = @nextRun, updated_at = @now WHERE id = @id`,
  );
  const deleteTask = db.prepare(`DELETE FROM tasks WHERE id = ?`);

  const insertRunning = db.prepare(`
    INSERT INTO task_runs (task_id, due_at, started_at, status)
    VALUES (@taskId, @dueAt, @now, 'running')
    ON CONFLICT (task_id, due_at) DO NOTHING
    RETURNING *`);
  const markClaimed = db.prepare(`
    UPDATE tasks SET last_run = @now, last_status = 'running',
      next_run = CASE WHEN @setNextRun = 1 THEN @nextRun ELSE next_run END,
      updated_at = @now
    WHERE id = @taskId`);
  const insertNotRun = db.prepare(`
    INSERT INTO task_runs (task_id, due_at, finished_at, status, error)
    VALUES (@taskId, @dueAt, @now, @status, @reason)
    ON CONFLICT (task_id, due_at) DO NOTHING
    RETURNING *`);
  const markNotRun = db.prepare(`
    UPDATE tasks SET last_status = @status,
      next_run = CASE WHEN @setNextRun = 1 THEN @nextRun ELSE next_run END,
      updated_at = @now
    WHERE id = @taskId`);
  // Only a running row is ended: a run already finished, or marked interrupted at start, stays
  // as it is, so a late report from a run cannot count its failure twice.
  const endRun = db.prepare(`
    UPDATE task_runs SET status = @status, finished_at = @finishedAt,
      duration_ms = CASE WHEN @durationKnown = 1 THEN MAX(@finishedAt - started_at, 0) END,
      result_summary = @resultSummary, error = @error,
      input_tokens = @inputTokens, output_tokens = @outputTokens
    WHERE id = @runId AND status = 'running'
    RETURNING task_id`);
  const recordOutcome = db.prepare(`
    UPDATE tasks SET last_status = @status, last_result = @resultSummary, last_error = @error,
      consecutive_failures = CASE WHEN @failed = 1 THEN consecutive_failures + 1 ELSE 0 END,
      updated_at = @finishedAt
    WHERE id = @taskId
    RETURNING consecutive_failures`);
  const runsOfTask = db.prepare(`
    SELECT * FROM task_runs WHERE task_id = ? ORDER BY due_at DESC, id DESC LIMIT ?`);
  const running = db.prepare(`SELECT * FROM task_runs WHERE status = 'running' ORDER BY id`);

  function rawTask(id: string): TaskRow | undefined {
    return isTaskId(id) ? (taskById.get(id) as TaskRow | undefined) : undefined;
  }

  function requireTask(id: string): TaskRow {
    const row = rawTask(id);
    if (!row) throw new TaskNotFoundError(id);
    return row;
  }

  /** The optional next run an operation sets with its other changes; undefined leaves it. */
  function nextRunParams(nextRun: number | null | undefined) {
    return nextRun === undefined
      ? { setNextRun: 0, nextRun: null }
      : { setNextRun: 1, nextRun: checkOptionalTime('next run', nextRun) };
  }

  /** Ends a running run and brings its task's last_* and failure count along, in one go. */
  const endRunAndRecord = db.transaction(
    (
      runId: number,
      outcome: {
        status: 'success' | 'error' | 'timeout';
        finishedAt: number;
        resultSummary: string | null;
        error: string | null;
        inputTokens: number | null;
        outputTokens: number | null;
        durationKnown: boolean;
      },
    ): number | null => {
      const ended = endRun.get({
        runId,
        status: outcome.status,
        finishedAt: outcome.finishedAt,
        durationKnown: outcome.durationKnown ? 1 : 0,
        resultSummary: outcome.resultSummary,
        error: outcome.error,
        inputTokens: outcome.inputTokens,
        outputTokens: outcome.outputTokens,
      }) as { task_id: string } | undefined;
      if (!ended) return null;
      const task = recordOutcome.get({
        taskId: ended.task_id,
        status: outcome.status,
        resultSummary: outcome.resultSummary,
        error: outcome.error,
        failed: outcome.status === 'success' ? 0 : 1,
        finishedAt: outcome.finishedAt,
      }) as { consecutive_failures: number } | undefined;
      return task ? task.consecutive_failures : null;
    },
  );

  function checkRunId(runId: unknown): number {
    if (typeof runId !== 'number' || !Number.isSafeInteger(runId) || runId < 1) {
      throw new TaskValidationError('run id', 'must be a positive whole number');
    }
    return runId;
  }

  const claim = db.transaction(
    (taskId: string, dueAt: number, now: number, nextRun: number | null | undefined) => {
      requireTask(taskId);
      const row = insertRunning.get({ taskId, dueAt, now }) as TaskRunRow | undefined;
      if (!row) return null;
      markClaimed.run({ taskId, now, ...nextRunParams(nextRun) });
      return toTaskRun(row);
    },
  );

  const recordNotRun = db.transaction(
    (
      taskId: string,
      dueAt: number,
      status: 'skipped' | 'missed',
      reason: string | null,
      now: number,
      nextRun: number | null | undefined,
    ) => {
      requireTask(taskId);
      const row = insertNotRun.get({ taskId, dueAt, status, reason, now }) as
        TaskRunRow | undefined;
      if (!row) return null;
      markNotRun.run({ taskId, status, now, ...nextRunParams(nextRun) });
      return toTaskRun(row);
    },
  );

  const create = db.transaction((task: NewTask, now: number): Task => {
    const groupJid = checkGroupJid(task.groupJid);
    const schedule = checkSchedule(task.schedule);
    const timezone = checkTimezone(task.timezone);
    checkTimezoneAgrees(schedule, timezone);
    const values = {
      groupJid,
      prompt: checkPrompt(task.prompt),
      kind: schedule.kind,
      spec: JSON.stringify(schedule),
      timezone,
      contextMode: checkContextMode(task.contextMode),
      postResult: checkBoolean('post result', task.postResult) ? 1 : 0,
      nextRun: checkOptionalTime('next run', task.nextRun),
      createdBy: checkCreatedBy(task.createdBy),
      now: checkTime('creation time', now),
    };
    if (!groupExists.get(groupJid)) {
      throw new TaskValidationError(
        'group',
        `no group is registered with the jid ${JSON.stringify(groupJid)}`,
      );
    }
    // 32^8 ids make a clash all but impossible; should one happen, draw again.
    for (let attempt = 0; attempt < ID_ATTEMPTS; attempt++) {
      const id = newTaskId();
      if (insertTask.run({ id, ...values }).changes === 1) return toTask(requireTask(id));
    }
    throw new Error(`could not draw an unused task id in ${ID_ATTEMPTS} attempts`);
  });

  const update = db.transaction((id: string, changes: TaskChanges, now: number) => {
    const row = rawTask(id);
    if (!row) return undefined;
    if (typeof changes !== 'object' || changes === null) {
      throw new TaskValidationError('changes', 'must be an object');
    }
    // The stored schedule is read only when it is kept; a corrupt one may be replaced.
    const schedule =
      changes.schedule !== undefined ? checkSchedule(changes.schedule) : storedSchedule(row);
    const timezone =
      changes.timezone !== undefined
        ? checkTimezone(changes.timezone)
        : changes.schedule !== undefined && schedule.kind === 'cron'
          ? schedule.timezone
          : row.timezone;
    checkTimezoneAgrees(schedule, timezone);
    updateDefinition.run({
      id,
      prompt: changes.prompt !== undefined ? checkPrompt(changes.prompt) : row.prompt,
      kind: schedule.kind,
      spec: JSON.stringify(schedule),
      timezone,
      contextMode:
        changes.contextMode !== undefined
          ? checkContextMode(changes.contextMode)
          : row.context_mode,
      postResult:
        changes.postResult !== undefined
          ? checkBoolean('post result', changes.postResult)
            ? 1
            : 0
          : row.post_result,
      nextRun:
        changes.nextRun !== undefined
          ? checkOptionalTime('next run', changes.nextRun)
          : row.next_run,
      now: checkTime('update time', now),
    });
    return toTask(requireTask(id));
  });

  return {
    /**
     * Adds a task to a registered group, active, with a fresh id. Throws
     * {@link TaskValidationError} naming the field when the input is malformed or the group is
     * not registered.
     */
    createTask(task: NewTask, now: number): Task {
      return create(task, now);
    },
    /** The task, or undefined when no task has this id. Throws {@link CorruptTaskError}. */
    getTask(id: string): Task | undefined {
      const row = rawTask(id);
      return row && toTask(row);
    },
    /** Every task, or one group's, oldest first. See {@link ListTasksOptions.onCorrupt}. */
    listTasks(options: ListTasksOptions = {}): Task[] {
      const rows =
        options.groupJid === undefined
          ? (allTasks.all() as TaskRow[])
          : (tasksOfGroup.all(options.groupJid) as TaskRow[]);
      const tasks: Task[] = [];
      for (const row of rows) {
        try {
          tasks.push(toTask(row));
        } catch (err) {
          if (!(err instanceof CorruptTaskError) || !options.onCorrupt) throw err;
          options.onCorrupt(err);
        }
      }
      return tasks;
    },
    /**
     * Changes a task's definition. A new schedule comes with its `nextRun` (the store does not
     * compute times); for a cron schedule the task's timezone follows the cron's unless given.
     * Returns the task as it now is, or undefined when no task has this id.
     */
    updateTask(id: string, changes: TaskChanges, now: number): Task | undefined {
      return update(id, changes, now);
    },
    /**
     * Pauses, resumes or ends a task. `reason` is kept for a pause only (why: by the user,
     * after repeated failures, a corrupt schedule). Going back to active resets the failure
     * count. `nextRun`, when given, is set in the same write. Works on a corrupt task too, so
     * that it can be paused. Returns false when no task has this id.
     */
    setTaskStatus(
      id: string,
      status: TaskStatus,
      now: number,
      options: { reason?: string | null; nextRun?: number | null } = {},
    ): boolean {
      if (status !== 'active' && status !== 'paused' && status !== 'done') {
        throw new TaskValidationError('status', 'must be "active", "paused" or "done"');
      }
      if (!isTaskId(id)) return false;
      const pausedReason =
        status === 'paused' ? boundedText(options.reason, MAX_TASK_PAUSE_REASON_CHARS) : null;
      return (
        updateStatus.run({
          id,
          status,
          pausedReason,
          now: checkTime('update time', now),
          ...nextRunParams(options.nextRun),
        }).changes === 1
      );
    },
    /** Removes a task and its run log. Returns false when no task has this id. */
    removeTask(id: string): boolean {
      return isTaskId(id) && deleteTask.run(id).changes === 1;
    },
    /** Sets when the task is next due (null: never). Returns false when no task has this id. */
    setNextRun(id: string, nextRun: number | null, now: number): boolean {
      if (!isTaskId(id)) return false;
      return (
        updateNextRun.run({
          id,
          nextRun: checkOptionalTime('next run', nextRun),
          now: checkTime('update time', now),
        }).changes === 1
      );
    },
    /**
     * Claims the task's run for `dueAt`: the exactly-once primitive. In one transaction, inserts
     * the run as running (started `now`) and sets the task's last run to `now`, and its next run
     * to `nextRun` when given. Returns the run, or null when this due time was claimed (or
     * logged as skipped or missed) before, by this process or one before a restart: then the
     * caller must not run it. Throws {@link TaskNotFoundError}.
     */
    claimRun(taskId: string, dueAt: number, now: number, nextRun?: number | null): TaskRun | null {
      return claim.immediate(
        taskId,
        checkTime('due time', dueAt),
        checkTime('start time', now),
        nextRun,
      );
    },
    /**
     * Ends a claimed run and, in the same transaction, records it on its task: last status,
     * result and error, and the failure count (reset by a success, one more after an error or
     * a timeout). Returns the task's failure count as it now stands, or null when the run is
     * not running (finished already, marked interrupted, or removed with its task).
     */
    finishRun(runId: number, outcome: TaskRunOutcome): number | null {
      const status = outcome.status;
      if (status !== 'success' && status !== 'error' && status !== 'timeout') {
        throw new TaskValidationError('run status', 'must be "success", "error" or "timeout"');
      }
      const usage = outcome.usage ?? null;
      return endRunAndRecord.immediate(checkRunId(runId), {
        status,
        finishedAt: checkTime('finish time', outcome.finishedAt),
        resultSummary: boundedText(outcome.resultSummary, MAX_TASK_RESULT_CHARS),
        error: boundedText(outcome.error, MAX_TASK_ERROR_CHARS),
        inputTokens: usage && checkTokens('input tokens', usage.inputTokens),
        outputTokens: usage && checkTokens('output tokens', usage.outputTokens),
        durationKnown: true,
      });
    },
    /**
     * Logs a due time that was not run: `skipped` (the group was paused) or `missed` (the app
     * was closed or asleep past the grace window), with why. Sets the task's last status, and
     * its next run when given, in the same transaction. Returns the logged row, or null when
     * this due time already has one (it was claimed or logged before). Throws
     * {@link TaskNotFoundError}.
     */
    recordSkippedOrMissed(
      taskId: string,
      dueAt: number,
      status: 'skipped' | 'missed',
      reason: string,
      now: number,
      nextRun?: number | null,
    ): TaskRun | null {
      if (status !== 'skipped' && status !== 'missed') {
        throw new TaskValidationError('run status', 'must be "skipped" or "missed"');
      }
      return recordNotRun.immediate(
        taskId,
        checkTime('due time', dueAt),
        status,
        boundedText(reason, MAX_TASK_ERROR_CHARS),
        checkTime('time', now),
        nextRun,
      );
    },
    /** The task's runs, latest due time first, at most `limit` (1 to {@link MAX_TASK_RUNS_LISTED}). */
    listRuns(taskId: string, limit = 20): TaskRun[] {
      if (!isTaskId(taskId)) return [];
      const bounded = Number.isSafeInteger(limit)
        ? Math.min(Math.max(limit, 1), MAX_TASK_RUNS_LISTED)
        : 20;
      return (runsOfTask.all(taskId, bounded) as TaskRunRow[]).map(toTaskRun);
    },
    /**
     * Runs still marked running. At start, before the scheduler arms anything, these were cut
     * off by a crash or a kill: they must not fire again; mark each with {@link markInterrupted}.
     */
    runningRuns(): TaskRun[] {
      return (running.all() as TaskRunRow[]).map(toTaskRun);
    },
    /**
     * Ends a run that a restart cut off as an error ({@link INTERRUPTED_RUN_ERROR}), with no
     * duration (when it died is not known). It counts as a failure: a task whose runs keep
     * taking the host down must reach the alert and the auto-pause like any failing task.
     * Returns the task's failure count, or null when the run is not running.
     */
    markInterrupted(runId: number, now: number): number | null {
      return endRunAndRecord.immediate(checkRunId(runId), {
        status: 'error',
        finishedAt: checkTime('time', now),
        resultSummary: null,
        error: INTERRUPTED_RUN_ERROR,
        inputTokens: null,
        outputTokens: null,
        durationKnown: false,
      });
    },
  };
}

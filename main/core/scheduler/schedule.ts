/**
 * When a scheduled task is due: parsing and validating what a person (CLI) or the agent (host
 * tool payload) asked for, and computing due times from it.
 *
 * Pure and clock-injectable: nothing here reads `Date.now()` or arms a timer. Every function takes
 * the current time as an argument, so the scheduler that arms node-schedule timers, the CLI and
 * the tests all get the same answers for the same inputs.
 *
 * Three kinds of schedule:
 * - `cron`: a 5-field expression read in an IANA timezone (cron-parser, `tz` option).
 * - `interval`: every N ms counted from a fixed anchor (the creation time), so a late run never
 *   shifts the ones after it.
 * - `once`: a single absolute instant.
 */
import cronParser from 'cron-parser';
import { CoreInputError } from '../errors.js';
import { wallClockIn } from '../time.js';

/** A validated schedule, as stored with its task. */
export type Schedule =
  | { kind: 'cron'; expr: string; timezone: string }
  | {
      kind: 'interval';
      everyMs: number;
      /** Epoch ms the interval counts from: due times are `anchor + k·everyMs`, k ≥ 1. */
      anchor: number;
    }
  | { kind: 'once'; at: number };

/** What a person or the agent typed; exactly one of `cron`, `every`, `at`. */
export interface ScheduleInput {
  /** A 5-field cron expression: minute hour day-of-month month day-of-week. */
  cron?: string;
  /** A duration: `30s`, `15m`, `2h`, `1d`, or a combination such as `1h30m`. */
  every?: string;
  /** An ISO 8601 date-time; without an offset it is read in `timezone`. */
  at?: string;
  /** An IANA timezone name such as `Europe/Berlin`. @default the caller's defaultTimezone */
  timezone?: string;
}

/** A schedule the input describes cannot be used; the message says why and how to fix it. */
export class ScheduleError extends CoreInputError {
  constructor(message: string) {
    super(message);
    this.name = 'ScheduleError';
  }
}

const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** Shortest interval: anything faster is a busy loop of container runs, not a schedule. */
export const MIN_INTERVAL_MS = 30 * SECOND_MS;
/** Longest interval: a year (leap years included); beyond that use `at` or a cron. */
export const MAX_INTERVAL_MS = 366 * DAY_MS;
/**
 * How late a missed run may still be made up on start or wake: a morning briefing an hour late
 * is still useful, yesterday's is not. A setting; this is its default.
 */
export const DEFAULT_GRACE_MS = HOUR_MS;
/** At most this many missed due times are listed by {@link missedRuns}. */
export const MISSED_RUNS_CAP = 100;
/** Longest input string accepted for any field: inputs are hostile, and none needs more. */
const MAX_INPUT_LENGTH = 200;

const EXAMPLE_ZONES = 'an IANA name such as Europe/Berlin, America/New_York or UTC';

// ---------------------------------------------------------------------------------------------
// Parsing

/**
 * Validates `input` and turns it into a {@link Schedule}.
 *
 * - `cron` is read in `input.timezone` (or `defaultTimezone`).
 * - `every` is anchored at `now`, so due times are `now + k·every` and do not drift.
 * - `at` with `Z` or an offset (`+01:00`) is absolute. Without one it is the wall-clock time in
 *   the task's timezone. A local time that does not exist (inside a spring-forward gap) is
 *   refused; an ambiguous one (inside a fall-back overlap) means its first occurrence.
 *   A time not after `now` is refused.
 *
 * @throws ScheduleError with a message meant for the person (or model) who gave the input.
 */
export function parseSchedule(
  input: ScheduleInput,
  now: number,
  defaultTimezone: string,
): Schedule {
  const given = (['cron', 'every', 'at'] as const).filter((key) => input[key] !== undefined);
  if (given.length !== 1) {
    throw new ScheduleError(
      given.length === 0
        ? 'no schedule given: pass exactly one of cron (e.g. "0 8 * * 1-5"), every (e.g. "15m") or at (e.g. "2026-11-25T17:00")'
        : `conflicting schedules: pass exactly one of cron, every or at, not ${given.join(' and ')}`,
    );
  }
  const timezone = validateTimezone(input.timezone ?? defaultTimezone);
  if (input.cron !== undefined) {
    return { kind: 'cron', expr: validateCron(input.cron, timezone), timezone };
  }
  if (input.every !== undefined) {
    return { kind: 'interval', everyMs: parseDuration(input.every), anchor: now };
  }
  return { kind: 'once', at: parseAt(input.at, timezone, now) };
}

/** Refuses non-strings and overlong strings before any parser sees them. */
function boundedText(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new ScheduleError(`${what} must be a string`);
  const text = value.trim();
  if (text.length === 0) throw new ScheduleError(`${what} is empty`);
  if (text.length > MAX_INPUT_LENGTH) {
    throw new ScheduleError(
      `${what} is too long (${text.length} characters, at most ${MAX_INPUT_LENGTH})`,
    );
  }
  return text;
}

/**
 * Checks an IANA timezone name with Intl (the same tz database cron-parser's luxon uses) and
 * returns it with canonical casing where that is only a matter of case (`europe/berlin`).
 */
export function validateTimezone(value: unknown): string {
  const zone = boundedText(value, 'timezone');
  const unknown = (): ScheduleError => {
    const guess = suggestZone(zone);
    return new ScheduleError(
      `unknown timezone "${zone}"${guess ? `; did you mean ${guess}?` : ''}; use ${EXAMPLE_ZONES}`,
    );
  };
  // Newer Node (ICU) takes a UTC offset such as "+01:00" as a time zone. It is not a place: a
  // task pinned to an offset would not follow daylight saving time, which is what a zone is for.
  if (/^[+\-\d]/.test(zone)) throw unknown();
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  } catch {
    throw unknown();
  }
  return resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
}

/** `Berlin` → `Europe/Berlin`, `new york` → `America/New_York`: the city part of a known zone. */
function suggestZone(zone: string): string | undefined {
  const wanted = zone.toLowerCase().replace(/\s+/g, '_');
  return Intl.supportedValuesOf('timeZone').find(
    (known) => known.toLowerCase().split('/').pop() === wanted,
  );
}

const CRON_FIELDS = ['minute', 'hour', 'day-of-month', 'month', 'day-of-week'] as const;
const CRON_FIELD_HINTS = ['0-59', '0-23', '1-31', '1-12 or JAN-DEC', '0-7 or SUN-SAT'];

/**
 * Checks a 5-field cron expression and returns it with its whitespace normalised.
 * cron-parser also takes a 6th (seconds) field and `@daily` macros; both are refused so the
 * stored expression means the same to every cron reader.
 */
function validateCron(value: unknown, timezone: string): string {
  const text = boundedText(value, 'cron expression');
  const fields = text.split(/\s+/);
  if (text.startsWith('@')) {
    throw new ScheduleError(
      `cron "${text}": macros such as @daily are not supported; write the 5 fields, e.g. "0 0 * * *" for daily at midnight`,
    );
  }
  if (fields.length !== 5) {
    const hint =
      fields.length === 6 ? ' (a seconds field is not supported; drop the first field)' : '';
    throw new ScheduleError(
      `cron "${text}" has ${fields.length} field${fields.length === 1 ? '' : 's'}, needs 5: minute hour day-of-month month day-of-week${hint}, e.g. "0 8 * * 1-5" for weekdays at 08:00`,
    );
  }
  // Try each field alone, the others `*`, so the error can name the field that is wrong.
  fields.forEach((field, index) => {
    const probe = fields.map((f, i) => (i === index ? f : '*')).join(' ');
    try {
      cronParser.parseExpression(probe, { tz: timezone });
    } catch (err) {
      throw new ScheduleError(
        `cron "${text}": the ${CRON_FIELDS[index]} field "${field}" is invalid (${errorText(err)}); it takes ${CRON_FIELD_HINTS[index]}, with * , - and /`,
      );
    }
  });
  const expr = fields.join(' ');
  try {
    cronParser.parseExpression(expr, { tz: timezone }).next();
  } catch (err) {
    // Fields valid alone but not together: "0 0 30 2 *" (February has no 30th).
    throw new ScheduleError(`cron "${text}" never matches a real date (${errorText(err)})`);
  }
  return expr;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const DURATION_UNITS: Record<string, number> = {
  d: DAY_MS,
  h: HOUR_MS,
  m: MINUTE_MS,
  s: SECOND_MS,
};

/**
 * `30s`, `15m`, `2h`, `1d`, or combinations in descending order (`1h30m`, `1d 12h`), to ms.
 * @throws ScheduleError for garbage, zero, negatives, and values outside 30 s … 366 d.
 */
export function parseDuration(value: unknown): number {
  const text = boundedText(value, 'interval').toLowerCase();
  if (text.startsWith('-')) {
    throw new ScheduleError(`interval "${text}" is negative; give a positive duration such as 15m`);
  }
  const match =
    /^(?:(\d{1,6})\s*d)?\s*(?:(\d{1,6})\s*h)?\s*(?:(\d{1,6})\s*m)?\s*(?:(\d{1,6})\s*s)?$/.exec(
      text,
    );
  if (!match || match.slice(1).every((part) => part === undefined)) {
    throw new ScheduleError(
      `interval "${text}" is not a duration; use a number with a unit s, m, h or d, such as 30s, 15m, 2h, 1d or 1h30m`,
    );
  }
  const ms = (['d', 'h', 'm', 's'] as const).reduce(
    (sum, unit, i) => sum + Number(match[i + 1] ?? 0) * (DURATION_UNITS[unit] ?? 0),
    0,
  );
  if (ms === 0)
    throw new ScheduleError(`interval "${text}" is zero; give a positive duration such as 15m`);
  if (ms < MIN_INTERVAL_MS) {
    throw new ScheduleError(`interval "${text}" is shorter than the minimum of 30s`);
  }
  if (ms > MAX_INTERVAL_MS) {
    throw new ScheduleError(
      `interval "${text}" is longer than the maximum of 366d; use a cron expression or a one-off time instead`,
    );
  }
  return ms;
}

const ISO_DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * An ISO 8601 date-time to epoch ms. With `Z` or an offset it is absolute; without, it is the
 * wall-clock time in `timezone` (a nonexistent one refused, an ambiguous one its first
 * occurrence). Must be after `now`.
 */
function parseAt(value: unknown, timezone: string, now: number): number {
  const text = boundedText(value, 'time');
  const match = ISO_DATE_TIME.exec(text);
  if (!match) {
    throw new ScheduleError(
      `time "${text}" is not an ISO 8601 date-time; use e.g. 2026-11-25T17:00 (in the task's timezone) or 2026-11-25T17:00Z / 2026-11-25T17:00+01:00`,
    );
  }
  const [, y, mo, d, h, mi, s, frac, offset] = match;
  const wall: WallTime = {
    year: Number(y),
    month: Number(mo),
    day: Number(d),
    hour: Number(h),
    minute: Number(mi),
    second: Number(s ?? 0),
    ms: Number((frac ?? '').padEnd(3, '0')),
  };
  if (!isRealWallTime(wall)) {
    throw new ScheduleError(
      `time "${text}" is not a real date and time (check the month, day and hour)`,
    );
  }
  let at: number;
  if (offset !== undefined) {
    at = wallAsUtc(wall) - parseOffset(offset, text);
  } else {
    const candidates = wallTimeToEpochs(wall, timezone);
    const first = candidates[0];
    if (first === undefined) {
      throw new ScheduleError(
        `time "${text}" does not exist in ${timezone}: the clocks skip it when daylight saving time starts; pick a time outside the skipped hour`,
      );
    }
    at = first;
  }
  if (at <= now) {
    throw new ScheduleError(
      `time "${text}" is in the past (now is ${formatInZone(now, timezone)}); give a future time`,
    );
  }
  return at;
}

function parseOffset(offset: string, text: string): number {
  if (offset.toUpperCase() === 'Z') return 0;
  const sign = offset.startsWith('-') ? -1 : 1;
  const digits = offset.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = Number(digits.slice(2) || 0);
  if (hours > 14 || minutes > 59) {
    throw new ScheduleError(`time "${text}" has an impossible UTC offset "${offset}"`);
  }
  return sign * (hours * HOUR_MS + minutes * MINUTE_MS);
}

// ---------------------------------------------------------------------------------------------
// Wall-clock time in a zone

interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  ms: number;
}

/** The wall time read as if it were UTC: a number to compare and subtract offsets from. */
function wallAsUtc(w: WallTime): number {
  const date = new Date(0);
  date.setUTCFullYear(w.year, w.month - 1, w.day);
  date.setUTCHours(w.hour, w.minute, w.second, w.ms);
  return date.getTime();
}

/** Rejects 2026-02-30 and 25:00, which Date would silently roll over. */
function isRealWallTime(w: WallTime): boolean {
  if (w.month < 1 || w.month > 12 || w.hour > 23 || w.minute > 59 || w.second > 59) return false;
  const date = new Date(wallAsUtc(w));
  return date.getUTCMonth() === w.month - 1 && date.getUTCDate() === w.day;
}

function wallTimeAt(epochMs: number, timezone: string): WallTime {
  return {
    ...wallClockIn(epochMs, timezone),
    ms: ((epochMs % SECOND_MS) + SECOND_MS) % SECOND_MS,
  };
}

/** The zone's UTC offset at an instant, in ms (Berlin in winter: +3 600 000). */
function offsetAt(epochMs: number, timezone: string): number {
  return wallAsUtc(wallTimeAt(epochMs, timezone)) - epochMs;
}

/**
 * Every instant whose wall-clock time in `timezone` is `wall`, earliest first: none inside a
 * spring-forward gap, two inside a fall-back overlap, one otherwise. Offsets are sampled a day
 * either side, which covers any single transition (offsets stay within ±14 h).
 */
function wallTimeToEpochs(wall: WallTime, timezone: string): number[] {
  const local = wallAsUtc(wall);
  const offsets = new Set(
    [local - DAY_MS, local, local + DAY_MS].map((t) => offsetAt(t, timezone)),
  );
  return [...offsets]
    .map((offset) => local - offset)
    .filter((epoch) => offsetAt(epoch, timezone) === local - epoch)
    .sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// Due times

/**
 * The first due time strictly after `after`, or null if there is none (a `once` already past).
 *
 * DST, for cron (tested for Europe/Berlin and America/New_York):
 * - Spring-forward: a time inside the skipped hour (02:30 on the gap day) runs once that day,
 *   shifted forward by the gap (03:30), which is what cron-parser does.
 * - Fall-back: a job pinned to certain hours (`30 1 * * *`) runs at the first occurrence of the
 *   repeated wall time only, once, as classic cron does. A job whose hour field is `*` follows
 *   real time and runs in both passes of the repeated hour (every 15 minutes stays every 15
 *   minutes).
 */
export function nextRun(schedule: Schedule, after: number): number | null {
  switch (schedule.kind) {
    case 'cron':
      return nextCronRun(schedule.expr, schedule.timezone, after);
    case 'interval': {
      const { anchor, everyMs } = schedule;
      const k = after < anchor ? 1 : Math.floor((after - anchor) / everyMs) + 1;
      return anchor + k * everyMs;
    }
    case 'once':
      return schedule.at > after ? schedule.at : null;
    default:
      return assertNever(schedule);
  }
}

/** Enough for a DST skip or two plus a bad cron-parser answer; more means something is broken. */
const CRON_STEP_LIMIT = 8;

function nextCronRun(expr: string, timezone: string, after: number): number {
  const followsRealTime = hourIsWildcard(expr, timezone);
  let cursor = after;
  for (let step = 0; step < CRON_STEP_LIMIT; step++) {
    const due = cronParser
      .parseExpression(expr, { tz: timezone, currentDate: new Date(cursor) })
      .next()
      .getTime();
    if (due <= after) {
      // Never seen, but a time at or before `after` would fire a run twice: step past it.
      cursor = Math.max(cursor, due) + SECOND_MS;
      continue;
    }
    if (!followsRealTime && isRepeatedWallTime(due, timezone)) {
      cursor = due;
      continue;
    }
    return due;
  }
  throw new ScheduleError(
    `cron "${expr}" (${timezone}): could not find the next run after ${new Date(after).toISOString()}`,
  );
}

/** The latest due time at or before `atOrBefore` and strictly after `floor`, or null. */
function previousCronRun(
  expr: string,
  timezone: string,
  atOrBefore: number,
  floor: number,
): number | null {
  const followsRealTime = hourIsWildcard(expr, timezone);
  // prev() is strictly before currentDate; 1 ms later makes `atOrBefore` itself count.
  let cursor = atOrBefore + 1;
  for (let step = 0; step < CRON_STEP_LIMIT; step++) {
    const due = cronParser
      .parseExpression(expr, { tz: timezone, currentDate: new Date(cursor) })
      .prev()
      .getTime();
    if (due <= floor) return null;
    if (due >= cursor) {
      cursor = Math.min(cursor, due) - SECOND_MS;
      continue;
    }
    if (!followsRealTime && isRepeatedWallTime(due, timezone)) {
      cursor = due;
      continue;
    }
    return due;
  }
  return null;
}

function hourIsWildcard(expr: string, timezone: string): boolean {
  return cronParser.parseExpression(expr, { tz: timezone }).fields.hour.length === 24;
}

/** True for the second pass of a wall time a fall-back repeats (the 02:30 CET after 02:30 CEST). */
function isRepeatedWallTime(epochMs: number, timezone: string): boolean {
  const first = wallTimeToEpochs(wallTimeAt(epochMs, timezone), timezone)[0];
  return first !== undefined && first < epochMs;
}

/** What to do about due times that passed while the app was closed or the machine asleep. */
export interface MissedRunsDecision {
  /** Run once now, for `runDue`: the latest missed due time is within the grace window. */
  runNow: boolean;
  /** The due time the catch-up run stands for, when `runNow`; else null. */
  runDue: number | null;
  /**
   * Due times skipped (not run), ascending; the most recent {@link MISSED_RUNS_CAP} of them.
   * Excludes `runDue`.
   */
  missed: number[];
  /** How many due times were skipped in all; a lower bound when `missedCountIsMinimum`. */
  missedCount: number;
  /**
   * True when a cron schedule missed more than the cap: counting further would mean stepping
   * through every missed minute, so the count stops at the cap.
   */
  missedCountIsMinimum: boolean;
  /** The next due time strictly after now (and after `lastDue`), or null for a spent `once`. */
  next: number | null;
}

/**
 * Decides about the due times in (`lastDue`, `now`]: run the latest one now if it is at most
 * `graceMs` old, and report the rest as missed; otherwise report them all as missed and wait for
 * the next due time.
 *
 * @param lastDue the latest due time already handled (run, skipped or logged as missed); for a
 *   task that has never run, its creation time.
 * @param now the current time. If the clock went back before `lastDue`, nothing is missed and
 *   `next` is after `lastDue`, so a due time is never run twice.
 * @param graceMs how late a catch-up run may be. @default DEFAULT_GRACE_MS
 */
export function missedRuns(
  schedule: Schedule,
  lastDue: number,
  now: number,
  graceMs: number = DEFAULT_GRACE_MS,
): MissedRunsDecision {
  const next = nextRun(schedule, Math.max(lastDue, now));
  const { dues, total, isMinimum } = dueTimesBetween(schedule, lastDue, now);
  const latest = dues[dues.length - 1];
  if (latest !== undefined && now - latest <= graceMs) {
    return {
      runNow: true,
      runDue: latest,
      missed: dues.slice(0, -1),
      missedCount: total - 1,
      missedCountIsMinimum: isMinimum,
      next,
    };
  }
  return {
    runNow: false,
    runDue: null,
    missed: dues,
    missedCount: total,
    missedCountIsMinimum: isMinimum,
    next,
  };
}

/**
 * Due times in (`from`, `to`], most recent {@link MISSED_RUNS_CAP} + 1 of them ascending (one
 * extra so a catch-up run can take the latest and still leave a full list), with the total.
 */
function dueTimesBetween(
  schedule: Schedule,
  from: number,
  to: number,
): { dues: number[]; total: number; isMinimum: boolean } {
  if (to <= from) return { dues: [], total: 0, isMinimum: false };
  const keep = MISSED_RUNS_CAP + 1;
  switch (schedule.kind) {
    case 'once': {
      const hit = schedule.at > from && schedule.at <= to;
      return { dues: hit ? [schedule.at] : [], total: hit ? 1 : 0, isMinimum: false };
    }
    case 'interval': {
      const { anchor, everyMs } = schedule;
      const firstK = from < anchor ? 1 : Math.floor((from - anchor) / everyMs) + 1;
      const lastK = to < anchor + everyMs ? 0 : Math.floor((to - anchor) / everyMs);
      const total = Math.max(0, lastK - firstK + 1);
      const dues: number[] = [];
      for (let k = Math.max(firstK, lastK - keep + 1); k <= lastK; k++)
        dues.push(anchor + k * everyMs);
      return { dues, total, isMinimum: false };
    }
    case 'cron': {
      const dues: number[] = [];
      let cursor = to;
      while (dues.length < keep) {
        const due = previousCronRun(schedule.expr, schedule.timezone, cursor, from);
        if (due === null) return { dues: dues.reverse(), total: dues.length, isMinimum: false };
        dues.push(due);
        cursor = due - 1;
      }
      const more = previousCronRun(schedule.expr, schedule.timezone, cursor, from) !== null;
      return { dues: dues.reverse(), total: dues.length, isMinimum: more };
    }
    default:
      return assertNever(schedule);
  }
}

// ---------------------------------------------------------------------------------------------
// Describing

/**
 * A schedule in words for `tasks list` and the agent: "every weekday at 08:00 (Europe/Berlin)",
 * "every 15m", "once at 2026-11-25 17:00 (UTC)". Crons it cannot put in words read
 * "cron 0 8 1-7 * 1 (Europe/Berlin)".
 *
 * @param timezone the zone a `once` time is shown in (a cron carries its own). @default 'UTC'
 */
export function describeSchedule(schedule: Schedule, timezone = 'UTC'): string {
  switch (schedule.kind) {
    case 'cron':
      return `${describeCron(schedule.expr) ?? `cron ${schedule.expr}`} (${schedule.timezone})`;
    case 'interval':
      return `every ${formatDuration(schedule.everyMs)}`;
    case 'once':
      return `once at ${formatWall(wallTimeAt(schedule.at, timezone))} (${timezone})`;
    default:
      return assertNever(schedule);
  }
}

const DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Words for the common shapes; undefined for anything else (the raw cron is shown instead). */
function describeCron(expr: string): string | undefined {
  const [minute, hour, dayOfMonth, month, dayOfWeek] = expr.split(' ');
  const num = /^\d{1,2}$/;
  if (minute === undefined || hour === undefined || month !== '*') return undefined;
  const step = /^\*\/(\d+)$/;
  if (dayOfMonth === '*' && dayOfWeek === '*') {
    const minuteStep = step.exec(minute);
    if (minuteStep && hour === '*') return `every ${minuteStep[1]} minutes`;
    if (minute === '*' && hour === '*') return 'every minute';
    if (num.test(minute) && hour === '*') return `every hour at :${minute.padStart(2, '0')}`;
  }
  if (!num.test(minute) || !num.test(hour)) return undefined;
  const at = `at ${hour.padStart(2, '0')}:${minute.padStart(2, '0')}`;
  if (dayOfMonth === '*') {
    const days = describeDaysOfWeek(dayOfWeek ?? '');
    return days === undefined ? undefined : `${days} ${at}`;
  }
  if (num.test(dayOfMonth ?? '') && dayOfWeek === '*')
    return `on day ${dayOfMonth} of every month ${at}`;
  return undefined;
}

function describeDaysOfWeek(field: string): string | undefined {
  const normalised = field.toUpperCase();
  if (normalised === '*') return 'every day';
  if (normalised === '1-5' || normalised === 'MON-FRI') return 'every weekday';
  if (['0,6', '6,0', 'SAT,SUN', 'SUN,SAT', '6,7', '6-7'].includes(normalised))
    return 'every weekend day';
  if (/^[0-7](,[0-7])*$/.test(normalised)) {
    const names = normalised.split(',').map((d) => DAY_NAMES[Number(d) % 7]);
    return `every ${names.join(', ')}`;
  }
  return undefined;
}

/** 5 400 000 → `1h30m`; 90 000 → `1m30s`. */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms / SECOND_MS) * SECOND_MS;
  let text = '';
  for (const [unit, size] of Object.entries(DURATION_UNITS)) {
    const count = Math.floor(rest / size);
    if (count > 0) text += `${count}${unit}`;
    rest -= count * size;
  }
  return text || '0s';
}

/** Short zone names ("CET", "EST", "UTC"); en-GB names European zones, en-US American ones. */
const zoneNameFormatters = new Map<string, Intl.DateTimeFormat[]>();

function zoneAbbreviation(epochMs: number, timezone: string): string {
  let formatters = zoneNameFormatters.get(timezone);
  if (!formatters) {
    formatters = ['en-GB', 'en-US'].map(
      (locale) => new Intl.DateTimeFormat(locale, { timeZone: timezone, timeZoneName: 'short' }),
    );
    zoneNameFormatters.set(timezone, formatters);
  }
  const names = formatters.map(
    (f) => f.formatToParts(new Date(epochMs)).find((p) => p.type === 'timeZoneName')?.value ?? '',
  );
  // Prefer a letter abbreviation (CET, EDT) over a numeric "GMT+1" where either locale has one.
  return names.find((name) => name && !/^GMT[+-]/.test(name)) ?? names[0] ?? timezone;
}

function formatWall(w: WallTime): string {
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  const seconds = w.second !== 0 ? `:${pad(w.second)}` : '';
  return `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)} ${pad(w.hour)}:${pad(w.minute)}${seconds}`;
}

/**
 * An instant as the people in `timezone` read it, with the zone's abbreviation:
 * "2026-11-25 17:00 CET" (seconds only when not zero). `tasks list` shows a task's next run with
 * this in the task's zone and in UTC.
 */
export function formatInZone(epochMs: number, timezone: string): string {
  return `${formatWall(wallTimeAt(epochMs, timezone))} ${zoneAbbreviation(epochMs, timezone)}`;
}

function assertNever(value: never): never {
  throw new ScheduleError(`unknown schedule kind in ${JSON.stringify(value)}`);
}

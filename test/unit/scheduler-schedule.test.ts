/**
 * Schedules (main/core/scheduler/schedule.ts): validation, next-run computation across DST,
 * interval anchoring, missed runs and their grace window, and the words `tasks list` shows.
 * Every time is a fixed epoch value; nothing reads the real clock.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_GRACE_MS,
  MISSED_RUNS_CAP,
  ScheduleError,
  describeSchedule,
  formatInZone,
  missedRuns,
  nextRun,
  parseSchedule,
  type Schedule,
} from '../../main/core/scheduler/schedule.js';

const utc = (iso: string): number => Date.parse(iso);
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
/** 2026-06-01T10:00:00Z, a Monday. */
const NOW = utc('2026-06-01T10:00:00Z');
const MIN = 60_000;
const HOUR = 60 * MIN;

function cron(expr: string, timezone = 'UTC'): Schedule {
  return parseSchedule({ cron: expr, timezone }, NOW, 'UTC');
}

/** The first `count` due times after `from`, as ISO strings. */
function runsAfter(schedule: Schedule, from: number, count: number): string[] {
  const out: string[] = [];
  let cursor = from;
  for (let i = 0; i < count; i++) {
    const due = nextRun(schedule, cursor);
    if (due === null) break;
    out.push(iso(due) as string);
    cursor = due;
  }
  return out;
}

function errorOf(fn: () => unknown): ScheduleError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ScheduleError);
    return err as ScheduleError;
  }
  throw new Error('expected a ScheduleError, none was thrown');
}

describe('parseSchedule validation', () => {
  it.each([
    [{}, /no schedule given: pass exactly one of cron .*every .*at/],
    [{ cron: '0 8 * * *', every: '15m' }, /conflicting schedules: .*not cron and every/],
    [{ cron: '0 8 * * *', every: '15m', at: '2026-07-01T10:00Z' }, /not cron and every and at/],
  ])('refuses %j: not exactly one kind', (input, message) => {
    expect(errorOf(() => parseSchedule(input, NOW, 'UTC')).message).toMatch(message);
  });

  it.each([
    [
      '0 0 8 * * *',
      /has 6 fields, needs 5: minute hour day-of-month month day-of-week \(a seconds field is not supported/,
    ],
    ['0 8 * *', /has 4 fields, needs 5/],
    ['@daily', /macros such as @daily are not supported.*"0 0 \* \* \*"/],
    ['61 8 * * *', /the minute field "61" is invalid \(.*0-59.*\); it takes 0-59/],
    ['0 25 * * *', /the hour field "25" is invalid/],
    ['0 8 32 * *', /the day-of-month field "32" is invalid/],
    ['0 8 * 13 *', /the month field "13" is invalid/],
    ['0 8 * * 8', /the day-of-week field "8" is invalid.*0-7 or SUN-SAT/],
    ['foo 8 * * *', /the minute field "foo" is invalid/],
    ['*/0 * * * *', /the minute field "\*\/0" is invalid/],
    ['5-1 * * * *', /the minute field "5-1" is invalid/],
    ['0 0 30 2 *', /never matches a real date/],
    ['', /cron expression is empty/],
    [`${'1,'.repeat(150)}1 * * * *`, /cron expression is too long \(\d+ characters, at most 200\)/],
  ])('refuses the cron %j with a message naming the problem', (expr, message) => {
    expect(errorOf(() => parseSchedule({ cron: expr }, NOW, 'UTC')).message).toMatch(message);
  });

  it('refuses a cron that is not a string (hostile tool payloads)', () => {
    const input = { cron: 42 } as unknown as { cron: string };
    expect(errorOf(() => parseSchedule(input, NOW, 'UTC')).message).toBe(
      'cron expression must be a string',
    );
  });

  it('refuses an unknown timezone, suggesting the IANA form', () => {
    expect(errorOf(() => cron('0 8 * * *', 'Mars/Olympus')).message).toBe(
      'unknown timezone "Mars/Olympus"; use an IANA name such as Europe/Berlin, America/New_York or UTC',
    );
    expect(errorOf(() => cron('0 8 * * *', 'Berlin')).message).toMatch(
      /unknown timezone "Berlin"; did you mean Europe\/Berlin\?/,
    );
    // An offset is not a zone (newer Node's Intl accepts one; it would not follow DST).
    for (const offset of ['+01:00', '-05:00', '0100'])
      expect(errorOf(() => cron('0 8 * * *', offset)).message).toMatch(
        /^unknown timezone "[+\-\d]+:?\d*"; use an IANA name/,
      );
  });

  it('checks the default timezone too, and normalises the case of a zone name', () => {
    expect(errorOf(() => parseSchedule({ every: '15m' }, NOW, 'Nowhere/City')).message).toMatch(
      /unknown timezone "Nowhere\/City"/,
    );
    expect(cron('0 8 * * *', 'europe/berlin')).toEqual({
      kind: 'cron',
      expr: '0 8 * * *',
      timezone: 'Europe/Berlin',
    });
  });

  it.each([
    ['0s', /interval "0s" is zero/],
    ['0m', /interval "0m" is zero/],
    ['-5m', /interval "-5m" is negative/],
    ['10s', /interval "10s" is shorter than the minimum of 30s/],
    ['367d', /interval "367d" is longer than the maximum of 366d/],
    ['15', /interval "15" is not a duration; use a number with a unit s, m, h or d/],
    ['15 minutes', /is not a duration/],
    ['m', /is not a duration/],
    ['1.5h', /is not a duration/],
    ['30m1h', /is not a duration/],
    ['99999999999d', /is not a duration/],
  ])('refuses the interval %j', (every, message) => {
    expect(errorOf(() => parseSchedule({ every }, NOW, 'UTC')).message).toMatch(message);
  });

  it.each([
    ['30s', 30_000],
    ['15m', 15 * MIN],
    ['2h', 2 * HOUR],
    ['1d', 24 * HOUR],
    ['1h30m', 90 * MIN],
    ['1d 12h', 36 * HOUR],
    ['366d', 366 * 24 * HOUR],
    [' 2H ', 2 * HOUR],
  ])('accepts the interval %j, anchored at now', (every, everyMs) => {
    expect(parseSchedule({ every }, NOW, 'UTC')).toEqual({
      kind: 'interval',
      everyMs,
      anchor: NOW,
    });
  });

  it.each([
    [
      'tomorrow 5pm',
      /time "tomorrow 5pm" is not an ISO 8601 date-time; use e\.g\. 2026-11-25T17:00/,
    ],
    ['2026-06-02', /is not an ISO 8601 date-time/],
    ['2026-02-30T10:00', /time "2026-02-30T10:00" is not a real date and time/],
    ['2026-06-02T24:00', /is not a real date and time/],
    ['2026-06-02T10:00+15:00', /impossible UTC offset "\+15:00"/],
  ])('refuses the time %j', (at, message) => {
    expect(errorOf(() => parseSchedule({ at }, NOW, 'UTC')).message).toMatch(message);
  });

  it('refuses a time in the past, saying what now is in the task zone', () => {
    expect(
      errorOf(() =>
        parseSchedule({ at: '2026-06-01T11:59', timezone: 'Europe/Berlin' }, NOW, 'UTC'),
      ).message,
    ).toBe(
      'time "2026-06-01T11:59" is in the past (now is 2026-06-01 12:00 CEST); give a future time',
    );
    // Exactly now is not the future either.
    expect(errorOf(() => parseSchedule({ at: '2026-06-01T10:00Z' }, NOW, 'UTC')).message).toMatch(
      /is in the past/,
    );
  });

  it('reads a time with an offset as absolute and one without in the task timezone', () => {
    const at = (text: string, timezone?: string): string | null => {
      const schedule = parseSchedule({ at: text, timezone }, NOW, 'America/New_York');
      return schedule.kind === 'once' ? iso(schedule.at) : null;
    };
    expect(at('2026-11-25T17:00Z', 'Europe/Berlin')).toBe('2026-11-25T17:00:00.000Z');
    expect(at('2026-11-25T17:00+01:00')).toBe('2026-11-25T16:00:00.000Z');
    expect(at('2026-11-25T17:00-0500')).toBe('2026-11-25T22:00:00.000Z');
    expect(at('2026-11-25T17:00', 'Europe/Berlin')).toBe('2026-11-25T16:00:00.000Z');
    expect(at('2026-07-04 09:30:15.5')).toBe('2026-07-04T13:30:15.500Z');
  });

  it('refuses a local time inside a spring-forward gap', () => {
    expect(
      errorOf(() => parseSchedule({ at: '2027-03-28T02:30' }, NOW, 'Europe/Berlin')).message,
    ).toBe(
      'time "2027-03-28T02:30" does not exist in Europe/Berlin: the clocks skip it when daylight saving time starts; pick a time outside the skipped hour',
    );
    expect(
      errorOf(() => parseSchedule({ at: '2027-03-14T02:15' }, NOW, 'America/New_York')).message,
    ).toMatch(/does not exist in America\/New_York/);
  });

  it('takes the first occurrence of an ambiguous fall-back time', () => {
    const berlin = parseSchedule({ at: '2026-10-25T02:30' }, NOW, 'Europe/Berlin');
    expect(berlin.kind === 'once' && iso(berlin.at)).toBe('2026-10-25T00:30:00.000Z'); // CEST
    const newYork = parseSchedule({ at: '2026-11-01T01:30' }, NOW, 'America/New_York');
    expect(newYork.kind === 'once' && iso(newYork.at)).toBe('2026-11-01T05:30:00.000Z'); // EDT
  });
});

describe('nextRun for cron', () => {
  it('finds weekday, step and list forms in the task timezone', () => {
    // NOW is Monday 2026-06-01 12:00 in Berlin (CEST, UTC+2).
    expect(runsAfter(cron('0 8 * * 1-5', 'Europe/Berlin'), utc('2026-06-04T12:00:00Z'), 3)).toEqual(
      [
        '2026-06-05T06:00:00.000Z', // Friday 08:00 CEST
        '2026-06-08T06:00:00.000Z', // Monday, the weekend skipped
        '2026-06-09T06:00:00.000Z',
      ],
    );
    expect(runsAfter(cron('*/20 9 * * *'), NOW, 4)).toEqual([
      '2026-06-02T09:00:00.000Z',
      '2026-06-02T09:20:00.000Z',
      '2026-06-02T09:40:00.000Z',
      '2026-06-03T09:00:00.000Z',
    ]);
    expect(runsAfter(cron('15 9,17 * * MON,WED'), NOW, 3)).toEqual([
      '2026-06-01T17:15:00.000Z',
      '2026-06-03T09:15:00.000Z',
      '2026-06-03T17:15:00.000Z',
    ]);
  });

  it('is strictly after `after`: a due time is never returned for itself', () => {
    const daily = cron('0 8 * * *');
    expect(iso(nextRun(daily, utc('2026-06-02T07:59:59.999Z')))).toBe('2026-06-02T08:00:00.000Z');
    expect(iso(nextRun(daily, utc('2026-06-02T08:00:00.000Z')))).toBe('2026-06-03T08:00:00.000Z');
  });

  // Spring-forward skips 02:00-03:00 local. cron-parser runs the skipped 02:30 once that day,
  // shifted by the gap to 03:30, and the day after at 02:30 again.
  it.each([
    [
      'Europe/Berlin',
      '2026-03-27T12:00:00Z',
      ['2026-03-28T01:30:00.000Z', '2026-03-29T01:30:00.000Z', '2026-03-30T00:30:00.000Z'],
    ],
    [
      'America/New_York',
      '2026-03-07T00:00:00Z',
      ['2026-03-07T07:30:00.000Z', '2026-03-08T07:30:00.000Z', '2026-03-09T06:30:00.000Z'],
    ],
  ])(
    'runs a daily 02:30 job in %s once on the spring-forward day, at 03:30',
    (zone, from, expected) => {
      const runs = runsAfter(cron('30 2 * * *', zone), utc(from), 3);
      expect(runs).toEqual(expected);
      expect(formatInZone(utc(runs[1] as string), zone)).toMatch(/ 03:30 (CEST|EDT)$/);
    },
  );

  // Fall-back repeats an hour: 02:00-03:00 in Berlin, 01:00-02:00 in New York.
  it.each([
    [
      'Europe/Berlin',
      '30 2 * * *',
      '2026-10-24T12:00:00Z',
      ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z'],
    ],
    [
      'America/New_York',
      '30 1 * * *',
      '2026-10-31T12:00:00Z',
      ['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z'],
    ],
  ])(
    'runs a daily job in the repeated hour in %s once on the fall-back day',
    (zone, expr, from, expected) => {
      expect(runsAfter(cron(expr, zone), utc(from), 2)).toEqual(expected);
    },
  );

  it('does not run the second pass of a repeated time even when asked from inside the repeated hour', () => {
    // 02:00 CET, the second pass, after the 02:30 CEST run: 02:30 CET is the same wall time.
    // (cron-parser alone would return it.)
    expect(iso(nextRun(cron('30 2 * * *', 'Europe/Berlin'), utc('2026-10-25T01:00:00Z')))).toBe(
      '2026-10-26T01:30:00.000Z',
    );
    // 01:00 EST in New York, the second pass, same story.
    expect(iso(nextRun(cron('30 1 * * *', 'America/New_York'), utc('2026-11-01T06:00:00Z')))).toBe(
      '2026-11-02T06:30:00.000Z',
    );
  });

  it('keeps a job with a wildcard hour on real time through the repeated hour', () => {
    expect(
      runsAfter(cron('*/30 * * * *', 'Europe/Berlin'), utc('2026-10-25T00:00:00Z'), 4),
    ).toEqual([
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T01:00:00.000Z', // 02:00 CET
      '2026-10-25T01:30:00.000Z', // 02:30 CET
      '2026-10-25T02:00:00.000Z', // 03:00 CET
    ]);
  });
});

describe('nextRun for intervals and one-off times', () => {
  const every15m: Schedule = { kind: 'interval', everyMs: 15 * MIN, anchor: NOW };

  it('counts from the anchor: the first run is one interval after creation', () => {
    expect(nextRun(every15m, NOW - HOUR)).toBe(NOW + 15 * MIN);
    expect(nextRun(every15m, NOW)).toBe(NOW + 15 * MIN);
    expect(nextRun(every15m, NOW + 15 * MIN)).toBe(NOW + 30 * MIN);
  });

  it('does not drift when a run is late: the next due time stays on the anchor grid', () => {
    // The 10:15 run started 7 minutes late and finished at 10:29:59; the next is still 10:30.
    expect(nextRun(every15m, NOW + 22 * MIN)).toBe(NOW + 30 * MIN);
    expect(nextRun(every15m, NOW + 29 * MIN + 59_000)).toBe(NOW + 30 * MIN);
    // Hours late: the grid is kept, however far behind.
    expect(nextRun(every15m, NOW + 10 * HOUR + 1)).toBe(NOW + 10 * HOUR + 15 * MIN);
  });

  it('returns a one-off time while it is ahead, then null', () => {
    const once: Schedule = { kind: 'once', at: NOW + HOUR };
    expect(nextRun(once, NOW)).toBe(NOW + HOUR);
    expect(nextRun(once, NOW + HOUR)).toBeNull();
    expect(nextRun(once, NOW + 2 * HOUR)).toBeNull();
  });

  it('accepts a one-off time in the future', () => {
    expect(parseSchedule({ at: '2026-06-01T10:00:01Z' }, NOW, 'UTC')).toEqual({
      kind: 'once',
      at: NOW + 1000,
    });
  });
});

describe('missedRuns', () => {
  const daily8 = cron('0 8 * * *', 'Europe/Berlin'); // 06:00Z in summer

  it('runs once now when the latest missed due time is within the grace window', () => {
    // Closed since Friday's run; started Monday 06:40Z, 40 minutes after Monday's 08:00 CEST.
    const decision = missedRuns(daily8, utc('2026-05-29T06:00:00Z'), utc('2026-06-01T06:40:00Z'));
    expect(decision).toMatchObject({ runNow: true, missedCount: 2, missedCountIsMinimum: false });
    expect(iso(decision.runDue)).toBe('2026-06-01T06:00:00.000Z');
    expect(decision.missed.map(iso)).toEqual([
      '2026-05-30T06:00:00.000Z',
      '2026-05-31T06:00:00.000Z',
    ]);
    expect(iso(decision.next)).toBe('2026-06-02T06:00:00.000Z');
  });

  it('skips to the next time and reports every miss when the latest is outside the window', () => {
    const decision = missedRuns(daily8, utc('2026-05-30T06:00:00Z'), utc('2026-06-01T07:00:01Z'));
    expect(decision).toMatchObject({ runNow: false, runDue: null, missedCount: 2 });
    expect(decision.missed.map(iso)).toEqual([
      '2026-05-31T06:00:00.000Z',
      '2026-06-01T06:00:00.000Z',
    ]);
    expect(iso(decision.next)).toBe('2026-06-02T06:00:00.000Z');
  });

  it('treats exactly the grace window as within it, and takes a custom window', () => {
    const lastDue = utc('2026-05-31T06:00:00Z');
    expect(missedRuns(daily8, lastDue, utc('2026-06-01T06:00:00Z') + DEFAULT_GRACE_MS).runNow).toBe(
      true,
    );
    expect(missedRuns(daily8, lastDue, utc('2026-06-01T06:00:00Z') + 5 * MIN, 4 * MIN).runNow).toBe(
      false,
    );
  });

  it('reports nothing when no due time passed, or when the clock went back', () => {
    const lastDue = utc('2026-06-01T06:00:00Z');
    expect(missedRuns(daily8, lastDue, utc('2026-06-01T20:00:00Z'))).toEqual({
      runNow: false,
      runDue: null,
      missed: [],
      missedCount: 0,
      missedCountIsMinimum: false,
      next: utc('2026-06-02T06:00:00Z'),
    });
    // The clock jumped back a day: the next run is still after the one already handled.
    const back = missedRuns(daily8, lastDue, utc('2026-05-31T12:00:00Z'));
    expect(back.runNow).toBe(false);
    expect(iso(back.next)).toBe('2026-06-02T06:00:00.000Z');
  });

  it('counts a fall-back repeated wall time as one missed run, not two', () => {
    // Asleep across the Berlin fall-back night: 02:30 CEST and 02:30 CET are one due time.
    const decision = missedRuns(
      cron('30 2 * * *', 'Europe/Berlin'),
      utc('2026-10-24T12:00:00Z'),
      utc('2026-10-25T12:00:00Z'),
    );
    expect(decision.missed.map(iso)).toEqual(['2026-10-25T00:30:00.000Z']);
    expect(decision.missedCount).toBe(1);
  });

  it('counts interval misses exactly and caps the list at the most recent ones', () => {
    const everyMinute: Schedule = { kind: 'interval', everyMs: MIN, anchor: NOW };
    const decision = missedRuns(everyMinute, NOW, NOW + 1000 * MIN + 30_000);
    expect(decision).toMatchObject({ runNow: true, missedCount: 999, missedCountIsMinimum: false });
    expect(decision.runDue).toBe(NOW + 1000 * MIN);
    expect(decision.missed).toHaveLength(MISSED_RUNS_CAP);
    expect(decision.missed[0]).toBe(NOW + 900 * MIN);
    expect(decision.missed.at(-1)).toBe(NOW + 999 * MIN);
    expect(decision.next).toBe(NOW + 1001 * MIN);
  });

  it('caps a cron count at the list size and says the count is a minimum', () => {
    const decision = missedRuns(cron('* * * * *'), NOW, NOW + 2 * 24 * HOUR + 30_000, 0);
    expect(decision).toMatchObject({ runNow: false, missedCountIsMinimum: true });
    expect(decision.missed).toHaveLength(MISSED_RUNS_CAP + 1);
    expect(decision.missedCount).toBe(MISSED_RUNS_CAP + 1);
    expect(decision.missed.at(-1)).toBe(NOW + 2 * 24 * HOUR);
  });

  it('makes up a missed one-off run within the window and drops it outside', () => {
    const once: Schedule = { kind: 'once', at: NOW + HOUR };
    expect(missedRuns(once, NOW, NOW + HOUR + 10 * MIN)).toMatchObject({
      runNow: true,
      runDue: NOW + HOUR,
      missed: [],
      missedCount: 0,
      next: null,
    });
    expect(missedRuns(once, NOW, NOW + 3 * HOUR)).toMatchObject({
      runNow: false,
      missed: [NOW + HOUR],
      missedCount: 1,
      next: null,
    });
  });
});

describe('describeSchedule and formatInZone', () => {
  it.each([
    ['0 8 * * 1-5', 'Europe/Berlin', 'every weekday at 08:00 (Europe/Berlin)'],
    ['30 7 * * *', 'UTC', 'every day at 07:30 (UTC)'],
    ['0 10 * * 0,6', 'UTC', 'every weekend day at 10:00 (UTC)'],
    ['0 9 * * 1,3,5', 'UTC', 'every Monday, Wednesday, Friday at 09:00 (UTC)'],
    ['0 9 1 * *', 'UTC', 'on day 1 of every month at 09:00 (UTC)'],
    ['*/15 * * * *', 'UTC', 'every 15 minutes (UTC)'],
    ['5 * * * *', 'UTC', 'every hour at :05 (UTC)'],
    ['0 8 1-7 * 1', 'Europe/Berlin', 'cron 0 8 1-7 * 1 (Europe/Berlin)'],
  ])('describes the cron %j in words where it can', (expr, zone, text) => {
    expect(describeSchedule(cron(expr, zone))).toBe(text);
  });

  it('describes intervals and one-off times', () => {
    expect(describeSchedule(parseSchedule({ every: '15m' }, NOW, 'UTC'))).toBe('every 15m');
    expect(describeSchedule(parseSchedule({ every: '1h30m' }, NOW, 'UTC'))).toBe('every 1h30m');
    const once = parseSchedule({ at: '2026-11-25T17:00Z' }, NOW, 'UTC');
    expect(describeSchedule(once)).toBe('once at 2026-11-25 17:00 (UTC)');
    expect(describeSchedule(once, 'Europe/Berlin')).toBe(
      'once at 2026-11-25 18:00 (Europe/Berlin)',
    );
  });

  it('formats an instant in a zone with its abbreviation', () => {
    const winter = utc('2026-11-25T16:00:00Z');
    expect(formatInZone(winter, 'Europe/Berlin')).toBe('2026-11-25 17:00 CET');
    expect(formatInZone(winter, 'UTC')).toBe('2026-11-25 16:00 UTC');
    expect(formatInZone(winter, 'America/New_York')).toBe('2026-11-25 11:00 EST');
    expect(formatInZone(utc('2026-07-01T16:00:00Z'), 'America/New_York')).toBe(
      '2026-07-01 12:00 EDT',
    );
    expect(formatInZone(utc('2026-07-01T16:00:00Z'), 'Asia/Kolkata')).toBe(
      '2026-07-01 21:30 GMT+5:30',
    );
    expect(formatInZone(winter + 42_000, 'UTC')).toBe('2026-11-25 16:00:42 UTC');
  });
});

/**
 * Times as the user sees them: in the configured IANA time zone, never silently in UTC.
 * The usage day and the times in the agent's prompt both come from here.
 */

interface ZoneParts {
  year: string;
  month: string;
  day: string;
  hour: string;
  minute: string;
  second: string;
  /** `+01:00`, `-05:30`, or `+00:00`. */
  offset: string;
}

/** One formatter per zone: building an Intl.DateTimeFormat is far dearer than using one. */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      timeZoneName: 'longOffset',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

function partsIn(ms: number, timeZone: string): ZoneParts {
  const parts: Record<string, string> = {};
  for (const part of formatterFor(timeZone).formatToParts(new Date(ms))) {
    parts[part.type] = part.value;
  }
  // longOffset reads "GMT+01:00", or plain "GMT" at offset zero.
  const zone = parts.timeZoneName ?? 'GMT';
  const offset = zone === 'GMT' ? '+00:00' : zone.replace(/^GMT/, '');
  return {
    year: parts.year ?? '0000',
    month: parts.month ?? '01',
    day: parts.day ?? '01',
    hour: parts.hour ?? '00',
    minute: parts.minute ?? '00',
    second: parts.second ?? '00',
    offset,
  };
}

/** The wall-clock fields of `ms` in `timeZone`, as numbers (month 1-12, hour 0-23). */
export function wallClockIn(
  ms: number,
  timeZone: string,
): { year: number; month: number; day: number; hour: number; minute: number; second: number } {
  const p = partsIn(ms, timeZone);
  return {
    year: Number(p.year),
    month: Number(p.month),
    day: Number(p.day),
    hour: Number(p.hour),
    minute: Number(p.minute),
    second: Number(p.second),
  };
}

/**
 * The calendar day of `ms` in `timeZone`, as `YYYY-MM-DD`: 23:30 in New York on the 1st is the
 * 1st, though it is already the 2nd in UTC.
 */
export function dayInZone(ms: number, timeZone: string): string {
  const p = partsIn(ms, timeZone);
  return `${p.year}-${p.month}-${p.day}`;
}

/**
 * `ms` as ISO 8601 local time in `timeZone`, with its offset, to the second:
 * `2026-11-25T21:29:10+01:00`. The agent reads it as the people in the chat do.
 */
export function isoInZone(ms: number, timeZone: string): string {
  const p = partsIn(ms, timeZone);
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}${p.offset}`;
}

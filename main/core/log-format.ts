/**
 * How log lines look on a terminal: one readable line per event,
 *
 *     12:03:04 INFO  core: run started group=family container=clawbar-family-1a2b3c4d
 *     12:03:09 WARN  run: run failed group=family — could not start the agent container ← connect ENOENT /var/run/docker.sock
 *
 * an error as its message and its causes' on the same line, the stack only at level debug, on
 * indented lines after it. Anything but a terminal gets pino's JSON lines (scripts, journald,
 * the tests parse them), unless `CLAWBAR_LOG_FORMAT` says otherwise.
 *
 * This is our own formatter, not pino-pretty: pino-pretty runs as a transport in a worker
 * thread that buffers lines, and our sinks write every line synchronously, so that nothing is
 * left to flush at exit and a full disk cannot hang the process (issue 6). It turns the JSON
 * line pino finished, already redacted, into text, and redacts each piece again once decoded.
 *
 * Log text is hostile input (a group's name, an upstream error body, a runner's message): every
 * control character, and the Unicode ones that reorder or break lines, is escaped, so no value
 * can forge a second log line or send the terminal an escape sequence.
 */
import { ConfigError } from './config.js';
import { alreadySaid, redactSecrets } from './redact.js';

/** The formats `CLAWBAR_LOG_FORMAT` may name. */
export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * The stderr log format `CLAWBAR_LOG_FORMAT` asks for, trimmed and lowercased, or undefined when
 * it is unset or blank (then the terminal decides: see {@link stderrFormat}).
 * @throws {ConfigError} naming the valid formats, when `raw` is not one of them.
 */
export function logFormat(raw: string | undefined): LogFormat | undefined {
  const format = raw?.trim().toLowerCase();
  if (!format) return undefined;
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new ConfigError(
      `CLAWBAR_LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')} (or unset: pretty on a terminal, json otherwise); got ${JSON.stringify(raw)}`,
    );
  }
  return format as LogFormat;
}

export interface TerminalFacts {
  /** The environment: `CLAWBAR_LOG_FORMAT`, `NO_COLOR`, `TERM`. */
  env: NodeJS.ProcessEnv;
  /** Whether stderr is a terminal. */
  isTTY: boolean;
}

/**
 * What stderr's log lines look like: `CLAWBAR_LOG_FORMAT` when set, else pretty on a terminal
 * and JSON lines otherwise.
 * @throws {ConfigError} for a `CLAWBAR_LOG_FORMAT` that is not a format.
 */
export function stderrFormat(facts: TerminalFacts): LogFormat {
  return logFormat(facts.env.CLAWBAR_LOG_FORMAT) ?? (facts.isTTY ? 'pretty' : 'json');
}

/**
 * Whether pretty lines get colours: only on a terminal that can show them, and not when
 * `NO_COLOR` is set to anything but the empty string (no-color.org).
 */
export function useColour(facts: TerminalFacts): boolean {
  return facts.isTTY && !facts.env.NO_COLOR && facts.env.TERM !== 'dumb';
}

export interface PrettyOptions {
  /** Wrap the level and the quieter parts in ANSI colours. @default false */
  colour?: boolean;
  /** Follow an error with its stack on indented lines (at level debug). @default false */
  stack?: boolean;
  /** Renders the time of day; tests fix the time zone with it. @default the local time */
  clock?: (date: Date) => string;
}

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

const RESET = '\u001b[0m';
const DIM = '\u001b[2m';
const LEVEL_COLOURS: Record<number, string> = {
  10: DIM,
  20: DIM,
  30: '\u001b[32m',
  40: '\u001b[33m',
  50: '\u001b[31m',
  60: '\u001b[1;31m',
};

/** Keys the line shows in its own place, not as `key=value`. */
const PLACED_KEYS = new Set(['level', 'time', 'msg', 'mod', 'pid', 'hostname']);

/** How much of one field's value a terminal line shows; the log file keeps all of it. */
const MAX_FIELD_CHARS = 200;

/** Stack lines shown at debug, per error. */
const MAX_STACK_LINES = 40;

/**
 * C0 and C1 controls and DEL (line breaks, ESC, the 8-bit CSI), and the Unicode characters
 * that break lines or reorder what a terminal shows (Trojan Source).
 */
const UNSAFE_CHARS =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Makes text safe for one terminal line: every unsafe character written out as an escape. */
export function escapeControl(text: string): string {
  return text.replace(
    UNSAFE_CHARS,
    (c) => NAMED_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** A decoded piece of a line: redacted again (see the module comment), then escaped. */
function clean(text: string): string {
  return escapeControl(redactSecrets(text));
}

function localTime(date: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/**
 * One JSON log line (as pino wrote it, redacted) as one readable line, ending in a newline;
 * at debug an error's stack follows on indented lines. A line that is not a JSON object is
 * passed on escaped, never lost.
 */
export function formatPretty(line: string, opts: PrettyOptions = {}): string {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    entry = undefined;
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    return `${clean(line.replace(/\n$/, ''))}\n`;
  }
  const record = entry as Record<string, unknown>;
  const paint = (code: string, text: string) => (opts.colour ? `${code}${text}${RESET}` : text);
  const parts: string[] = [];

  const time = typeof record.time === 'string' ? new Date(record.time) : undefined;
  if (time && !Number.isNaN(time.getTime())) {
    parts.push(paint(DIM, (opts.clock ?? localTime)(time)));
  }
  const level = typeof record.level === 'number' ? record.level : 30;
  const levelName = LEVEL_NAMES[level] ?? `L${level}`;
  parts.push(paint(LEVEL_COLOURS[level] ?? '', levelName.padEnd(5)));

  let text = '';
  if (typeof record.mod === 'string') text += `${clean(record.mod)}: `;
  if (typeof record.msg === 'string') text += clean(record.msg);
  if (text) parts.push(text.trimEnd());

  let error: ErrorView | undefined;
  for (const [key, value] of Object.entries(record)) {
    if (PLACED_KEYS.has(key) || value === undefined) continue;
    if ((key === 'err' || key === 'error') && !error) {
      error = errorView(value);
      if (error) continue;
    }
    parts.push(`${paint(DIM, `${clean(key)}=`)}${fieldText(value)}`);
  }

  let out = parts.join(' ');
  if (error) out += ` — ${error.chain.map(clean).join(' ← ')}`;
  out += '\n';
  if (opts.stack && error?.stack) {
    const lines = error.stack.split('\n');
    const shown = lines.slice(0, MAX_STACK_LINES);
    for (const stackLine of shown) out += `    ${paint(DIM, clean(stackLine))}\n`;
    if (lines.length > shown.length) {
      out += `    ${paint(DIM, `… ${lines.length - shown.length} more lines in the log file`)}\n`;
    }
  }
  return out;
}

/** A field's value: bare when it is a simple word, else quoted or as compact JSON, cut short. */
function fieldText(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) {
    return String(value);
  }
  const bare = typeof value === 'string' && /^[\w./:@+,-]+$/.test(value);
  let text = bare ? value : (JSON.stringify(value) ?? String(value));
  if (text.length > MAX_FIELD_CHARS) text = `${text.slice(0, MAX_FIELD_CHARS)}…`;
  return clean(text);
}

interface ErrorView {
  /** The error's message, then each cause's that says something new. */
  chain: string[];
  stack?: string;
}

/**
 * What a logged error shows: its message and its causes' (from {@link serializeError}'s
 * `causes`), each left out when an earlier one already contains it, and its stack. A value
 * that is not an error is left to show as a field; a bare string is its own message.
 */
function errorView(value: unknown): ErrorView | undefined {
  if (typeof value === 'string') return { chain: [value || '(empty error)'] };
  if (typeof value !== 'object' || value === null) return undefined;
  const err = value as Record<string, unknown>;
  if (typeof err.message !== 'string') return undefined;
  const chain: string[] = [];
  const add = (text: string | undefined) => {
    if (text !== undefined && !alreadySaid(chain, text)) chain.push(text.trim());
  };
  add(messageOf(err) ?? (typeof err.type === 'string' ? err.type : 'error'));
  if (Array.isArray(err.causes)) {
    for (const cause of err.causes) {
      if (typeof cause === 'object' && cause !== null) {
        add(messageOf(cause as Record<string, unknown>));
      }
    }
  }
  // A cause that is not an error (a response body) is kept by the serializer as `cause`.
  if (err.cause !== undefined) {
    add(typeof err.cause === 'string' ? err.cause : fieldText(err.cause));
  }
  return { chain, ...(typeof err.stack === 'string' ? { stack: err.stack } : {}) };
}

/**
 * An error's message; for an AggregateError with none (Node's failed connection attempts to
 * each address of a host), the messages of the errors it gathers.
 */
function messageOf(err: Record<string, unknown>): string | undefined {
  if (typeof err.message === 'string' && err.message.trim()) return err.message;
  if (!Array.isArray(err.aggregateErrors)) return undefined;
  const inner = err.aggregateErrors
    .map((e: unknown) =>
      typeof e === 'object' && e !== null ? (e as { message?: unknown }).message : e,
    )
    .filter((m): m is string => typeof m === 'string' && m.trim() !== '');
  return inner.length ? [...new Set(inner)].join('; ') : undefined;
}

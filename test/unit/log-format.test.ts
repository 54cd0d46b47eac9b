/**
 * Logs people can read (issue 7): serve's stderr as one readable line per event on a terminal,
 * JSON lines otherwise; errors as one line with their cause chain, said once; the stack only at
 * debug; secrets and hostile control characters kept out. Through real loggers writing to real
 * files, and on a real pseudo-terminal.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../main/core/config.js';
import {
  escapeControl,
  formatPretty,
  logFormat,
  stderrFormat,
  useColour,
} from '../../main/core/log-format.js';
import { createLogger, LOG_FILE, type LoggerOptions } from '../../main/core/logger.js';
import { REDACTED, registerSecret, serializeError } from '../../main/core/redact.js';
import { ROOT } from '../helpers/clawbar.js';

let scratch: string;
beforeEach(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-logfmt-'));
});
afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Our own colour codes (SGR); anything else starting with ESC would be an injected sequence. */
// eslint-disable-next-line no-control-regex
const SGR = /\u001b\[[0-9;]*m/g;
const TIME = /^\d\d:\d\d:\d\d /;

/** Logs through a real logger whose stderr is a file, and returns what that file holds. */
function stderrOf(opts: LoggerOptions, log: (logger: ReturnType<typeof createLogger>) => void) {
  const file = path.join(scratch, `stderr-${Math.random().toString(36).slice(2)}.txt`);
  const fd = fs.openSync(file, 'w');
  try {
    log(createLogger({ env: {}, ...opts, stderrFd: fd }));
  } finally {
    fs.closeSync(fd);
  }
  return fs.readFileSync(file, 'utf8');
}

/** The JSON line pino writes for this event, through the same error serializer. */
function line(fields: Record<string, unknown>): string {
  return `${JSON.stringify({ level: 30, time: '2025-06-01T10:03:04.000Z', ...fields })}\n`;
}

const fixedClock = { clock: () => '12:03:04' };

/** An error built the way main/ builds them: each wrapper quotes its cause's message. */
function doubledError(): Error {
  const root = Object.assign(new Error('connect ENOENT /var/run/docker.sock'), { code: 'ENOENT' });
  const start = new Error(
    `could not create container clawbar-family-1 (image x): ${root.message}`,
    {
      cause: root,
    },
  );
  return new Error(`could not start the agent container: ${start.message}`, { cause: start });
}

function occurrences(text: string, part: string): number {
  return text.split(part).length - 1;
}

describe('the terminal line', () => {
  it('shows the time, the level, the module, the message and the fields on one line', () => {
    const out = formatPretty(
      line({
        mod: 'core',
        group: 'family',
        container: 'clawbar-family-1a2b3c4d',
        msg: 'run started',
      }),
      fixedClock,
    );
    expect(out).toBe(
      '12:03:04 INFO  core: run started group=family container=clawbar-family-1a2b3c4d\n',
    );
  });

  it('reads the time from the line and names every level in a column of five', () => {
    const seen: Date[] = [];
    const clock = (d: Date) => {
      seen.push(d);
      return 'T';
    };
    const levels = [10, 20, 30, 40, 50, 60].map((level) =>
      formatPretty(line({ level, msg: 'm' }), { clock }),
    );
    expect(levels).toEqual([
      'T TRACE m\n',
      'T DEBUG m\n',
      'T INFO  m\n',
      'T WARN  m\n',
      'T ERROR m\n',
      'T FATAL m\n',
    ]);
    expect(seen[0]?.toISOString()).toBe('2025-06-01T10:03:04.000Z');
  });

  it('quotes values with spaces, shows numbers bare and objects as compact JSON, cut short', () => {
    const out = formatPretty(
      line({
        msg: 'model call done',
        group: 'two words',
        tokens: 1200,
        ok: true,
        usage: { input: 1, output: 2 },
        big: 'x'.repeat(500),
      }),
      fixedClock,
    );
    expect(out).toContain(' group="two words" tokens=1200 ok=true usage={"input":1,"output":2} ');
    expect(out).toMatch(/ big=x{200}…\n$/);
  });

  it('shows an error as its message and its causes on the same line, without the stack', () => {
    const root = new Error('HTTP 404 from the engine');
    const missing = new Error('no such image clawbar-agent:x', { cause: root });
    const top = new Error('the run could not start', { cause: missing });
    const out = formatPretty(
      line({ level: 50, mod: 'run', group: 'family', err: serializeError(top), msg: 'run failed' }),
      fixedClock,
    );
    expect(out).toBe(
      '12:03:04 ERROR run: run failed group=family — the run could not start ← no such image clawbar-agent:x ← HTTP 404 from the engine\n',
    );
  });

  it('says each error text once when a wrapper quotes its cause (no "X: X: cause")', () => {
    const out = formatPretty(line({ err: serializeError(doubledError()), msg: 'run failed' }), {
      clock: () => 'T',
    });
    expect(out).toBe(
      'T INFO  run failed — could not start the agent container: could not create container clawbar-family-1 (image x): connect ENOENT /var/run/docker.sock\n',
    );
    expect(occurrences(out, 'connect ENOENT')).toBe(1);
  });

  it('keeps a cause that adds something, and drops one quoted without its full stop', () => {
    const api = new Error('The API rejected the request (400 invalid_request_error).');
    const wrapped = new Error(
      `${api.message.replace(/[\s.]+$/, '')}; the conversation so far is forgotten`,
      { cause: api },
    );
    const dropped = formatPretty(line({ err: serializeError(wrapped), msg: 'm' }), fixedClock);
    expect(occurrences(dropped, 'The API rejected')).toBe(1);

    const adds = new Error('could not store the message', { cause: new Error('SQLITE_FULL') });
    const kept = formatPretty(line({ err: serializeError(adds), msg: 'm' }), fixedClock);
    expect(kept).toContain(' — could not store the message ← SQLITE_FULL\n');
  });

  it('names what an AggregateError with no message of its own gathered', () => {
    // Node's failed connection to each address of a host.
    const refused = new AggregateError(
      [new Error('connect ECONNREFUSED ::1:443'), new Error('connect ECONNREFUSED 127.0.0.1:443')],
      '',
    );
    const err = new Error('could not reach the API', { cause: refused });
    const out = formatPretty(line({ err: serializeError(err), msg: 'm' }), fixedClock);
    expect(out).toContain(
      ' — could not reach the API ← connect ECONNREFUSED ::1:443; connect ECONNREFUSED 127.0.0.1:443\n',
    );
  });

  it('passes on a line that is not JSON, escaped', () => {
    expect(formatPretty('not json\u001b[2J\n')).toBe('not json\\u001b[2J\n');
  });
});

describe('hostile text on the terminal', () => {
  const HOSTILE = [
    'done\n12:00:00 INFO  core: forged line',
    'carriage\rreturn',
    'clear \u001b[2J screen',
    'title \u001b]0;pwned\u0007',
    'eight-bit CSI \u009b31m',
    'separator\u2028line',
    'bidi \u202eevil\u202c',
  ];

  it('escapes control characters in the message, keys, values and errors: one line, no sequences', () => {
    const out = stderrOf({ isTTY: true }, (log) => {
      for (const text of HOSTILE) {
        log.child({ mod: `m${text}` }).warn(
          {
            [`key${text}`]: text,
            nested: { text },
            err: new Error(text, { cause: new Error(`c ${text}`) }),
          },
          text,
        );
      }
    });
    const lines = out.split('\n').filter(Boolean);
    // One terminal line per event: nothing forged a second one.
    expect(lines).toHaveLength(HOSTILE.length);
    for (const shown of lines) {
      const withoutOurColours = shown.replace(SGR, '');
      expect(withoutOurColours).toMatch(TIME);
      expect(withoutOurColours).not.toMatch(
        // eslint-disable-next-line no-control-regex
        /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/,
      );
    }
    expect(out).toContain('done\\n12:00:00 INFO  core: forged line');
    expect(out).toContain('clear \\u001b[2J screen');
    expect(out).toContain('eight-bit CSI \\u009b31m');
    expect(out).toContain('bidi \\u202eevil\\u202c');
  });

  it('escapes the stack at debug line by line', () => {
    const err = new Error('boom');
    err.stack = 'Error: boom\n    at evil (\u001b[2Jfile.js:1:1)\r\n    at next (x.js:2:2)';
    const out = formatPretty(line({ err: serializeError(err), msg: 'm' }), {
      stack: true,
      ...fixedClock,
    });
    expect(out).toBe(
      '12:03:04 INFO  m — boom\n    Error: boom\n        at evil (\\u001b[2Jfile.js:1:1)\\r\n        at next (x.js:2:2)\n',
    );
  });

  it('escapeControl leaves ordinary text, accents and emoji alone', () => {
    const text = 'Café — naïve “quotes” 🎉 tab-free';
    expect(escapeControl(text)).toBe(text);
  });
});

describe('stacks', () => {
  it('shows no stack at info: a failure is one line', () => {
    const out = stderrOf({ isTTY: true, level: 'info' }, (log) =>
      log.error({ err: doubledError() }, 'run failed'),
    );
    expect(out.split('\n').filter(Boolean)).toHaveLength(1);
    expect(out).not.toMatch(/\n\s+at /);
  });

  it('follows the line with the whole chain of stacks, indented, at debug', () => {
    const out = stderrOf({ isTTY: true, level: 'debug' }, (log) =>
      log.error({ err: doubledError() }, 'run failed'),
    );
    const [first, ...rest] = out.replace(SGR, '').split('\n').filter(Boolean);
    expect(first).toMatch(/ERROR run failed — could not start the agent container: /);
    expect(rest.length).toBeGreaterThan(3);
    for (const stackLine of rest) expect(stackLine).toMatch(/^ {4}/);
    expect(rest.join('\n')).toContain('caused by: Error: connect ENOENT /var/run/docker.sock');
    expect(rest.join('\n')).toMatch(/^ {8}at /m);
  });

  it('keeps the stack and every cause in the log file at info, as JSON', () => {
    const logDir = path.join(scratch, 'logs');
    const out = stderrOf({ isTTY: true, logDir }, (log) =>
      log.child({ mod: 'run' }).error({ err: doubledError() }, 'run failed'),
    );
    expect(out).toMatch(/INFO|ERROR/);
    const [entry] = fs
      .readFileSync(path.join(logDir, LOG_FILE), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { mod: string; err: Record<string, unknown> });
    expect(entry?.mod).toBe('run');
    expect(entry?.err).toMatchObject({
      type: 'Error',
      message:
        'could not start the agent container: could not create container clawbar-family-1 (image x): connect ENOENT /var/run/docker.sock',
      stack: expect.stringContaining('caused by: Error: connect ENOENT'),
      // Both causes' messages are in the top one: their types and fields stay, their text goes.
      causes: [{ type: 'Error' }, { type: 'Error', code: 'ENOENT' }],
    });
  });
});

describe('secrets on the terminal', () => {
  // A configured key with a quote in it: in the JSON line it is escaped, on the terminal not.
  const KEY = 'corp-"gateway"-key-9Tq4Wz';
  registerSecret(KEY);

  it('redacts a secret from the message, fields, error messages and causes of a readable line', () => {
    const logDir = path.join(scratch, 'logs');
    const out = stderrOf({ isTTY: true, level: 'debug', logDir }, (log) =>
      log.child({ mod: 'broker' }).error(
        {
          header: `x-api-key=${KEY}`,
          body: { echoed: KEY },
          err: new Error('call failed', { cause: new Error(`upstream echoed ${KEY}`) }),
        },
        `careless ${KEY} and sk-ant-api03-Zz9_secret-TOKEN`,
      ),
    );
    expect(out).not.toContain(KEY);
    expect(out).not.toContain('gateway');
    expect(out).not.toContain('Zz9_secret');
    expect(out).toContain(REDACTED);
    expect(out).toContain(`← upstream echoed ${REDACTED}`);
    const file = fs.readFileSync(path.join(logDir, LOG_FILE), 'utf8');
    expect(file).not.toContain('gateway');
    expect(file).toContain(REDACTED);
  });
});

describe('choosing the format', () => {
  it('is pretty on a terminal and JSON lines otherwise, unless CLAWBAR_LOG_FORMAT says', () => {
    expect(stderrFormat({ env: {}, isTTY: true })).toBe('pretty');
    expect(stderrFormat({ env: {}, isTTY: false })).toBe('json');
    expect(stderrFormat({ env: { CLAWBAR_LOG_FORMAT: 'json' }, isTTY: true })).toBe('json');
    expect(stderrFormat({ env: { CLAWBAR_LOG_FORMAT: ' Pretty ' }, isTTY: false })).toBe('pretty');
    expect(stderrFormat({ env: { CLAWBAR_LOG_FORMAT: '' }, isTTY: false })).toBe('json');
  });

  it('refuses an unknown CLAWBAR_LOG_FORMAT in one line naming the valid ones', () => {
    expect(logFormat(undefined)).toBeUndefined();
    expect(() => logFormat('xml')).toThrow(ConfigError);
    expect(() => logFormat('xml')).toThrow(
      'CLAWBAR_LOG_FORMAT must be one of pretty, json (or unset: pretty on a terminal, json otherwise); got "xml"',
    );
    // Whichever command meets it first says so, even one that logs only to its file.
    for (const stderr of [true, false]) {
      expect(() =>
        createLogger({ stderr, isTTY: false, env: { CLAWBAR_LOG_FORMAT: 'fancy\nline' } }),
      ).toThrow(/^CLAWBAR_LOG_FORMAT must be one of pretty, json .*; got "fancy\\nline"$/);
    }
  });

  it('colours only a terminal, and never with NO_COLOR set or TERM=dumb', () => {
    expect(useColour({ env: {}, isTTY: true })).toBe(true);
    expect(useColour({ env: {}, isTTY: false })).toBe(false);
    expect(useColour({ env: { NO_COLOR: '1' }, isTTY: true })).toBe(false);
    // no-color.org: an empty NO_COLOR does not count.
    expect(useColour({ env: { NO_COLOR: '' }, isTTY: true })).toBe(true);
    expect(useColour({ env: { TERM: 'dumb' }, isTTY: true })).toBe(false);
  });

  it('writes what was chosen: colour on a terminal, plain text with NO_COLOR or when asked for off a terminal, JSON otherwise', () => {
    const say = (log: ReturnType<typeof createLogger>) =>
      log.child({ mod: 'core' }).info({ group: 'family' }, 'run started');

    const coloured = stderrOf({ isTTY: true }, say);
    expect(coloured).toContain('\u001b[32mINFO \u001b[0m core: run started');

    const plain = stderrOf({ isTTY: true, env: { NO_COLOR: '1' } }, say);
    expect(plain).toMatch(/^\d\d:\d\d:\d\d INFO {2}core: run started group=family\n$/);

    const asked = stderrOf({ isTTY: false, env: { CLAWBAR_LOG_FORMAT: 'pretty' } }, say);
    expect(asked).toMatch(/^\d\d:\d\d:\d\d INFO {2}core: run started group=family\n$/);

    for (const opts of [{ isTTY: false }, { isTTY: true, env: { CLAWBAR_LOG_FORMAT: 'json' } }]) {
      const json = stderrOf(opts, say);
      expect(JSON.parse(json)).toMatchObject({
        level: 30,
        mod: 'core',
        group: 'family',
        msg: 'run started',
      });
    }
  });

  it('shows the logger’s own notice about its file in the chosen format', () => {
    const logDir = path.join(scratch, 'logs');
    fs.mkdirSync(logDir, { mode: 0o700 });
    fs.symlinkSync(path.join(scratch, 'elsewhere'), path.join(logDir, LOG_FILE));
    const out = stderrOf({ isTTY: true, env: { NO_COLOR: '1' }, logDir }, (log) =>
      log.info('hello'),
    );
    const lines = out.split('\n').filter(Boolean);
    expect(lines[0]).toMatch(
      /^\d\d:\d\d:\d\d WARN {2}logger: the log file .*clawbar\.log could not be opened; logging continues on stderr only file=\S+ — ELOOP/,
    );
    expect(lines[1]).toMatch(/INFO {2}hello$/);
  });

  it('finds a real terminal by itself: pretty on a pseudo-terminal', async () => {
    const script = path.join(scratch, 'on-a-tty.ts');
    fs.writeFileSync(
      script,
      [
        `import { createLogger } from ${JSON.stringify(path.join(ROOT, 'main/core/logger.ts'))};`,
        `createLogger().child({ mod: 'core' }).info({ group: 'family' }, 'run started');`,
      ].join('\n'),
    );
    const command = `${process.execPath} --import tsx ${script}`;
    // util-linux `script` runs the command on a new pseudo-terminal and copies what it shows.
    const shown = await new Promise<string>((resolve, reject) => {
      execFile(
        'script',
        ['-qec', command, '/dev/null'],
        {
          cwd: ROOT,
          env: { ...process.env, NO_COLOR: '1', LOG_LEVEL: 'info', CLAWBAR_LOG_FORMAT: '' },
          timeout: 30_000,
        },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    expect(shown).toMatch(/^\d\d:\d\d:\d\d INFO {2}core: run started group=family\r?\n$/);
  }, 40_000);
});

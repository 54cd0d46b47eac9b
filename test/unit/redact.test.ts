/**
 * Secrets out of logs (main/core/redact.ts): the text redaction, and the `err` serializer that
 * createLogger wires, through real pino loggers writing to a real log file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, LOG_FILE } from '../../main/core/logger.js';
import { REDACTED, redactSecrets, registerSecret, serializeError } from '../../main/core/redact.js';

/** Not shaped like an Anthropic key: only the registry can catch it. */
const CONFIGURED_KEY = 'corp-gateway-token-7Qx2Lp9Vz';
const ANTHROPIC_KEY = 'sk-ant-api03-AbCdEf0123456789_xyz-QRS';
registerSecret(CONFIGURED_KEY);

const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) fs.rmSync(dirs.pop() as string, { recursive: true, force: true });
});

/** An error that carries the secret everywhere pino's own serializer would print it. */
function leakyError(secret: string): Error {
  const root = new Error(`upstream said: invalid key ${secret}`);
  root.stack = `Error: upstream said: invalid key ${secret}\n    at proxy (gateway.js:1:1)`;
  const aggregate = new AggregateError(
    [new Error(`attempt 1 sent ${secret}`), new Error('attempt 2 timed out')],
    'all attempts failed',
    { cause: root },
  );
  const middle = new Error('request failed', { cause: aggregate });
  Object.assign(middle, {
    body: { error: { type: 'authentication_error', message: `bad key ${secret}` } },
    headers: { 'x-api-key': secret, 'request-id': 'req_123' },
    requestLine: `POST /v1/messages Authorization: Bearer ${secret}`,
  });
  const top = new Error('model call failed', { cause: middle });
  Object.assign(top, { detail: `while calling with ${secret}` });
  return top;
}

function logLines(dir: string): string[] {
  return fs
    .readFileSync(path.join(dir, LOG_FILE), 'utf8')
    .split('\n')
    .filter((line) => line !== '');
}

describe('redactSecrets', () => {
  it('removes registered secrets, Anthropic-looking keys and credential header values', () => {
    const text = [
      `key=${CONFIGURED_KEY}`,
      `url-encoded ${encodeURIComponent(CONFIGURED_KEY)}`,
      `token ${ANTHROPIC_KEY} and sk-ant-oat01-zzz`,
      'Authorization: Bearer abc.def.ghi',
      '{"x-api-key":"plain-value-1"}',
      "proxy-authorization='Basic dXNlcjpwYXNz'",
    ].join('\n');

    const out = redactSecrets(text);

    for (const secret of [
      CONFIGURED_KEY,
      ANTHROPIC_KEY,
      'sk-ant-oat01',
      'abc.def.ghi',
      'plain-value-1',
      'dXNlcjpwYXNz',
    ]) {
      expect(out).not.toContain(secret);
    }
    expect(out).toContain(`Authorization: Bearer ${REDACTED}`);
    expect(out).toContain(`"x-api-key":"${REDACTED}"`);
    expect(out).toContain('key=');
  });

  it('leaves ordinary text alone, and ignores secrets too short to be keys', () => {
    registerSecret('abc');
    registerSecret('   ');
    const text = 'abc: the authorization step passed; 3 tokens';
    expect(redactSecrets(text)).toBe(text);
  });
});

describe('serializeError', () => {
  it('redacts the message, the stack, every cause, aggregated errors and every field', () => {
    const serialized = serializeError(leakyError(CONFIGURED_KEY)) as Record<string, unknown>;
    const json = JSON.stringify(serialized);

    expect(json).not.toContain(CONFIGURED_KEY);
    // The facts survive: the message, the stack, the fields, the aggregated errors.
    expect(serialized.type).toBe('Error');
    expect(serialized.message).toBe('model call failed');
    expect(serialized.stack).toContain('caused by: AggregateError: all attempts failed');
    expect(serialized.stack).toContain('at proxy (gateway.js:1:1)');
    expect(serialized.detail).toBe(`while calling with ${REDACTED}`);
    // Each cause in order, with its message and its own fields, redacted too.
    expect(serialized.causes).toEqual([
      {
        type: 'Error',
        message: 'request failed',
        body: { error: { type: 'authentication_error', message: `bad key ${REDACTED}` } },
        headers: { 'x-api-key': REDACTED, 'request-id': 'req_123' },
        requestLine: `POST /v1/messages Authorization: Bearer ${REDACTED}`,
      },
      {
        type: 'AggregateError',
        message: 'all attempts failed',
        aggregateErrors: [
          expect.objectContaining({ message: `attempt 1 sent ${REDACTED}` }),
          expect.objectContaining({ message: 'attempt 2 timed out' }),
        ],
      },
      { type: 'Error', message: `upstream said: invalid key ${REDACTED}` },
    ]);
  });

  it('leaves out a cause’s message its wrapper already quotes, and keeps its type and fields', () => {
    const root = Object.assign(new Error('connect ENOENT /var/run/docker.sock'), {
      code: 'ENOENT',
    });
    const start = new Error(`could not create container c1: ${root.message}`, { cause: root });
    const top = new Error(`could not start the agent container: ${start.message}`, {
      cause: start,
    });
    const serialized = serializeError(top) as Record<string, unknown>;
    expect(serialized.message).toBe(
      'could not start the agent container: could not create container c1: connect ENOENT /var/run/docker.sock',
    );
    expect(serialized.causes).toEqual([{ type: 'Error' }, { type: 'Error', code: 'ENOENT' }]);
    // Once in the message, once per stack: never three times on one line.
    expect(JSON.stringify(serialized).split('connect ENOENT').length - 1).toBe(1 + 3);
  });

  it('gives the same result for an error serialized already (the broker logs those)', () => {
    const once = serializeError(leakyError(CONFIGURED_KEY));
    expect(serializeError(once)).toEqual(once);
  });

  it('redacts a configured key with a quote in it from the JSON line too', () => {
    const quoted = 'gateway"key\\with-escapes-42';
    registerSecret(quoted);
    const line = JSON.stringify({ msg: `echo ${quoted}` });
    expect(redactSecrets(line)).toBe(JSON.stringify({ msg: `echo ${REDACTED}` }));
  });

  it('keeps a cause that is not an error, redacted', () => {
    const err = new Error('gateway refused', {
      cause: { status: 401, body: `echo ${ANTHROPIC_KEY}` },
    });
    const serialized = serializeError(err) as Record<string, unknown>;
    expect(serialized.cause).toEqual({ status: 401, body: `echo ${REDACTED}` });
  });

  it('survives cycles and throwing getters', () => {
    const err = new Error(`loop ${ANTHROPIC_KEY}`) as Error & { self?: unknown };
    err.cause = err;
    err.self = { err };
    Object.defineProperty(err, 'boom', {
      enumerable: true,
      get() {
        throw new Error('getter threw');
      },
    });
    const json = JSON.stringify(serializeError(err));
    expect(json).toContain('causes have become circular');
    expect(json).not.toContain(ANTHROPIC_KEY);
  });

  it('redacts values that are not errors, field by field', () => {
    expect(
      serializeError({ apiKey: 'whatever-it-is', note: `with ${CONFIGURED_KEY}`, n: 3 }),
    ).toEqual({ apiKey: REDACTED, note: `with ${REDACTED}`, n: 3 });
  });
});

describe('createLogger', () => {
  it('writes no secret to the log file from an error’s message, stack, causes or fields, child loggers included', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-redact-'));
    dirs.push(dir);
    const log = createLogger({ logDir: dir, stderr: false, level: 'trace' });

    log.error({ err: leakyError(CONFIGURED_KEY) }, 'root logger');
    log.child({ mod: 'broker' }).warn({ err: leakyError(ANTHROPIC_KEY) }, 'child logger');
    log
      .child({ mod: 'a' })
      .child({ sub: 'b' })
      .error(leakyError(CONFIGURED_KEY), 'error as the object');
    log.info({ error: leakyError(ANTHROPIC_KEY) }, 'under the error key');

    const lines = logLines(dir);
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      expect(line).not.toContain(CONFIGURED_KEY);
      expect(line).not.toContain(ANTHROPIC_KEY);
      const entry = JSON.parse(line) as { err?: { stack?: string }; error?: { stack?: string } };
      // Redacted, not dropped: the chain is still there to read.
      expect((entry.err ?? entry.error)?.stack).toContain('caused by:');
    }
  });

  it('redacts a secret placed straight into a message or a plain field', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-redact-'));
    dirs.push(dir);
    const log = createLogger({ logDir: dir, stderr: false, level: 'trace' });

    log.info(`a careless message with ${CONFIGURED_KEY} in it`);
    log.child({ mod: 'x' }).warn({ body: { echoed: `key=${ANTHROPIC_KEY}` } }, 'a plain field');

    const lines = logLines(dir);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(REDACTED);
    for (const line of lines) {
      expect(line).not.toContain(CONFIGURED_KEY);
      expect(line).not.toContain(ANTHROPIC_KEY);
      expect(() => JSON.parse(line) as unknown).not.toThrow();
    }
  });

  it('is needed: pino’s own serializer prints the secret from a cause', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    pino(sink).error({ err: leakyError(CONFIGURED_KEY) }, 'plain pino');
    expect(lines.join('')).toContain(CONFIGURED_KEY);
  });
});

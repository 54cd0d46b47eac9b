/**
 * The runner's retry of a model request the host answered with a retryable `model.error`:
 * an {@link AgentSession} driven through a scripted fake host, with the waits injected.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ContentBlock, RunnerToHost } from '../../main/core/agent/protocol.js';
import {
  AgentSession,
  type AgentSessionDeps,
} from '../../sandbox-images/agent/runner/agent-loop.js';
import {
  ModelCallError,
  type ModelRequest,
  type ModelResult,
  type RunnerHost,
} from '../../sandbox-images/agent/runner/host-link.js';
import type { RunnerLog } from '../../sandbox-images/agent/runner/log.js';
import {
  DEFAULT_MODEL_RETRY,
  retryDelayMs,
  type ModelRetryPolicy,
} from '../../sandbox-images/agent/runner/model-retry.js';
import type { HostCallReply } from '../../sandbox-images/agent/runner/tools/index.js';

/** One scripted answer to a model request: a reply, or the error the host answered with. */
type Answer = { content: ContentBlock[]; stopReason: string } | ModelCallError;

/** A host that answers model requests from a script and records everything the runner sends. */
class ScriptedHost implements RunnerHost {
  readonly frames: RunnerToHost[] = [];
  readonly requests: ModelRequest[] = [];
  readonly hostCalls: Array<{ name: string; args: unknown }> = [];

  constructor(private readonly answers: Answer[]) {}

  send(frame: RunnerToHost): void {
    this.frames.push(frame);
  }

  async requestModel(request: ModelRequest, signal?: AbortSignal): Promise<ModelResult> {
    signal?.throwIfAborted();
    this.requests.push(structuredClone(request));
    const answer = this.answers.shift();
    if (!answer) throw new Error('the script has no answer left');
    if (answer instanceof ModelCallError) throw answer;
    return {
      type: 'model.result',
      requestId: `model-${this.requests.length}`,
      content: answer.content,
      stopReason: answer.stopReason,
      usage: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 },
    };
  }

  async callHost(name: string, args: unknown): Promise<HostCallReply> {
    this.hostCalls.push({ name, args });
    return { ok: true, result: 'sent' };
  }

  frame<T extends RunnerToHost['type']>(type: T): Extract<RunnerToHost, { type: T }> | undefined {
    return this.frames.find((frame) => frame.type === type) as
      Extract<RunnerToHost, { type: T }> | undefined;
  }
}

const answer = (text: string): Answer => ({
  content: [{ type: 'text', text }],
  stopReason: 'end_turn',
});
const overloaded = (retryAfterMs: number | null = null): ModelCallError =>
  new ModelCallError('Anthropic API is overloaded (529)', true, retryAfterMs);

let groupDir: string;
let warnings: string[];
let sleeps: number[];

/** Records each wait and returns at once, unless the turn was cancelled. */
const instantSleep = async (ms: number, signal: AbortSignal): Promise<void> => {
  signal.throwIfAborted();
  sleeps.push(ms);
};

const log: RunnerLog = {
  info: () => {},
  warn: (message) => warnings.push(message),
  error: () => {},
};

function session(host: RunnerHost, retry: Partial<ModelRetryPolicy> = {}): AgentSession {
  const deps: AgentSessionDeps = {
    host,
    groupDir,
    systemPrompt: () => 'You are Andy.',
    log,
    // No jitter, so that the waits are exact.
    retry: { baseDelayMs: 100, jitter: 0, sleep: instantSleep, ...retry },
  };
  return new AgentSession(deps, []);
}

beforeEach(() => {
  groupDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-retry-'));
  warnings = [];
  sleeps = [];
});

afterEach(() => {
  fs.rmSync(groupDir, { recursive: true, force: true });
});

describe('model request retry in the runner', () => {
  it('sends the same request again after retryable errors, waiting at least retryAfterMs', async () => {
    const host = new ScriptedHost([overloaded(5_000), overloaded(), answer('Back again.')]);

    await session(host).runTurn('Hello?', new AbortController().signal);

    expect(host.frame('output')).toEqual({ type: 'output', text: 'Back again.' });
    expect(host.frame('done')).toMatchObject({
      status: 'ok',
      turn: [
        { role: 'user', content: 'Hello?' },
        { role: 'assistant', content: [{ type: 'text', text: 'Back again.' }] },
      ],
    });
    expect(host.frame('error')).toBeUndefined();
    expect(host.requests).toHaveLength(3);
    expect(host.requests[1]).toEqual(host.requests[0]);
    expect(host.requests[2]).toEqual(host.requests[0]);
    // The first wait is what the API asked for, above the 100 ms backoff; the second is the
    // doubled backoff.
    expect(sleeps).toEqual([5_000, 200]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/overloaded.*retry 1 of 4 in 5 s/);
    expect(warnings[1]).toMatch(/retry 2 of 4 in 0\.2 s/);
  });

  it('fails the turn at once on a non-retryable error, with one request', async () => {
    const host = new ScriptedHost([
      new ModelCallError('Anthropic API rejected the request (400)', false),
      answer('never sent'),
    ]);

    await session(host).runTurn('Hello?', new AbortController().signal);

    expect(host.requests).toHaveLength(1);
    expect(sleeps).toEqual([]);
    expect(host.frame('error')).toEqual({
      type: 'error',
      message: 'model call failed: Anthropic API rejected the request (400)',
    });
    expect(host.frame('done')).toMatchObject({ status: 'failed', turn: [] });
    expect(host.frame('output')).toBeUndefined();
  });

  it('gives up after four retries and says so', async () => {
    const host = new ScriptedHost([
      overloaded(),
      overloaded(),
      overloaded(),
      overloaded(),
      overloaded(),
      answer('too late'),
    ]);

    await session(host).runTurn('Hello?', new AbortController().signal);

    expect(host.requests).toHaveLength(5);
    expect(sleeps).toEqual([100, 200, 400, 800]);
    expect(host.frame('error')?.message).toBe(
      'model call failed: Anthropic API is overloaded (529) (still failing after 4 retries)',
    );
    expect(host.frame('done')).toMatchObject({ status: 'failed' });
  });

  it('does not retry when the wait would pass the total waiting limit', async () => {
    // 2 minutes asked for after 100 ms already waited, against a 2-minute budget.
    const host = new ScriptedHost([overloaded(), overloaded(120_000), answer('too late')]);

    await session(host, { maxTotalWaitMs: 120_000 }).runTurn(
      'Hello?',
      new AbortController().signal,
    );

    expect(host.requests).toHaveLength(2);
    expect(sleeps).toEqual([100]);
    expect(host.frame('error')?.message).toMatch(
      /\(not retried: waiting 120 s more would pass the 120 s limit\)$/,
    );
  });

  it('ends the turn promptly as failed when it is cancelled during a wait', async () => {
    const host = new ScriptedHost([overloaded(), answer('never sent')]);
    const controller = new AbortController();
    // The real, timer-based wait, set to half a minute.
    const turn = session(host, {
      baseDelayMs: 30_000,
      sleep: DEFAULT_MODEL_RETRY.sleep,
    }).runTurn('Hello?', controller.signal);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const started = Date.now();

    controller.abort(new Error('shutdown frame'));
    await turn;

    expect(Date.now() - started).toBeLessThan(1_000);
    expect(host.requests).toHaveLength(1);
    expect(host.frame('error')?.message).toBe('turn cancelled: shutdown frame');
    expect(host.frame('done')).toMatchObject({ status: 'failed' });
  });

  it('never runs a tool again when the model request after it is retried', async () => {
    const host = new ScriptedHost([
      {
        content: [
          {
            type: 'tool_use',
            id: 'tu-1',
            name: 'bash',
            input: { command: 'echo ran >> runs.txt' },
          },
          { type: 'tool_use', id: 'tu-2', name: 'send_message', input: { text: 'working on it' } },
        ],
        stopReason: 'tool_use',
      },
      overloaded(),
      answer('Done.'),
    ]);

    await session(host).runTurn('Run it once.', new AbortController().signal);

    expect(host.frame('done')).toMatchObject({ status: 'ok' });
    expect(fs.readFileSync(path.join(groupDir, 'runs.txt'), 'utf8')).toBe('ran\n');
    expect(host.hostCalls).toEqual([{ name: 'send_message', args: { text: 'working on it' } }]);
    expect(host.requests).toHaveLength(3);
    // The retried request is the failed one, tool results included.
    expect(host.requests[2]).toEqual(host.requests[1]);
    expect(host.requests[2]?.messages.at(-1)).toMatchObject({
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'tu-1' },
        { type: 'tool_result', tool_use_id: 'tu-2', content: 'sent' },
      ],
    });
  });
});

describe('retryDelayMs', () => {
  const policy = (random: number): ModelRetryPolicy => ({
    ...DEFAULT_MODEL_RETRY,
    random: () => random,
  });

  it('doubles from 2 s and caps each wait at 60 s', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7].map((retry) => retryDelayMs(retry, null, policy(0.5)));
    expect(delays).toEqual([2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
  });

  it('spreads each wait by up to 20 % either way, still within the cap', () => {
    expect(retryDelayMs(1, null, policy(0))).toBe(1_600);
    expect(retryDelayMs(1, null, policy(0.999_999))).toBe(2_400);
    expect(retryDelayMs(7, null, policy(0.999_999))).toBe(60_000);
  });

  it('waits at least what the API asked for, even past the cap', () => {
    expect(retryDelayMs(1, 7_000, policy(0.5))).toBe(7_000);
    expect(retryDelayMs(4, 7_000, policy(0.5))).toBe(16_000);
    expect(retryDelayMs(1, 90_000, policy(0.5))).toBe(90_000);
  });
});

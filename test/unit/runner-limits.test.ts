/**
 * The runner keeps a well-behaved agent inside the host's limits (main/core/agent/run-limits.ts)
 * on its own: a long answer is cut to one chat message, and a model request is trimmed to the
 * host's request size, or the turn fails in the runner with a reason. Past those limits the host
 * would refuse the request or stop the whole run (issue 6). An {@link AgentSession} is driven
 * through a fake host that answers from a script and records every frame.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  RunnerToHostSchema,
  type MessageParam,
  type RunnerToHost,
} from '../../main/core/agent/protocol.js';
import { DEFAULT_RUN_LIMITS, MAX_CHAT_MESSAGE_CHARS } from '../../main/core/agent/run-limits.js';
import {
  AgentSession,
  DEFAULT_TURN_LIMITS,
  clampReply,
} from '../../sandbox-images/agent/runner/agent-loop.js';
import type {
  ModelRequest,
  ModelResult,
  RunnerHost,
} from '../../sandbox-images/agent/runner/host-link.js';
import type { HostCallReply } from '../../sandbox-images/agent/runner/tools/index.js';

const MARK = '\n[… message truncated]';

/** A host that answers every model request with the next scripted text, recording all frames. */
class FakeHost implements RunnerHost {
  readonly frames: RunnerToHost[] = [];
  readonly requests: ModelRequest[] = [];

  constructor(private readonly answers: string[]) {}

  send(frame: RunnerToHost): void {
    // The host parses every frame with this schema; a frame it would drop fails the test here.
    expect(RunnerToHostSchema.safeParse(frame).success).toBe(true);
    this.frames.push(frame);
  }

  async requestModel(request: ModelRequest): Promise<ModelResult> {
    this.requests.push(request);
    const text = this.answers.shift();
    if (text === undefined) throw new Error('the script has no answer left');
    return {
      type: 'model.result',
      requestId: `model-${this.requests.length}`,
      content: [{ type: 'text', text }],
      stopReason: 'end_turn',
      usage: { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 },
    };
  }

  async callHost(): Promise<HostCallReply> {
    throw new Error('no host call expected');
  }

  of<T extends RunnerToHost['type']>(type: T): Array<Extract<RunnerToHost, { type: T }>> {
    return this.frames.filter((f) => f.type === type) as Array<Extract<RunnerToHost, { type: T }>>;
  }
}

/** A request's size as the host measures it against `maxRequestBytes` (agent-run.ts). */
function hostMeasuredBytes(request: ModelRequest): number {
  return Buffer.byteLength(
    JSON.stringify({ system: request.system, messages: request.messages, tools: request.tools }),
  );
}

let groupDir: string;
let warnings: string[];

function session(host: RunnerHost, history: MessageParam[] = []): AgentSession {
  return new AgentSession(
    {
      host,
      groupDir,
      systemPrompt: () => 'You are Andy.',
      log: { info: () => {}, warn: (message) => warnings.push(message), error: () => {} },
    },
    history,
  );
}

async function runTurn(host: FakeHost, prompt: string, history: MessageParam[] = []) {
  await session(host, history).runTurn(prompt, new AbortController().signal);
}

beforeEach(() => {
  groupDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-runner-limits-'));
  warnings = [];
});

afterEach(() => {
  fs.rmSync(groupDir, { recursive: true, force: true });
});

describe('the runner within the host limits', () => {
  it('uses the host limits as its own defaults', () => {
    expect(DEFAULT_TURN_LIMITS.maxRequestBytes).toBe(DEFAULT_RUN_LIMITS.maxRequestBytes);
    expect(DEFAULT_TURN_LIMITS.maxRequestBytes).toBe(2 * 1024 * 1024);
    expect(DEFAULT_TURN_LIMITS.maxTokens).toBe(DEFAULT_RUN_LIMITS.maxTokens);
    expect(MAX_CHAT_MESSAGE_CHARS).toBe(DEFAULT_RUN_LIMITS.maxOutputChars);
  });

  it('cuts a long answer to 65,536 characters, with a mark, and still finishes the turn', async () => {
    const answer = 'a'.repeat(100_000);
    const host = new FakeHost([answer]);
    await runTurn(host, 'Write a lot.');

    const [output, ...more] = host.of('output');
    expect(more).toEqual([]);
    expect(output?.text).toHaveLength(65_536);
    expect(output?.text).toBe(`${'a'.repeat(65_536 - MARK.length)}${MARK}`);
    expect(output!.text.length).toBeLessThanOrEqual(DEFAULT_RUN_LIMITS.maxOutputChars);
    expect(host.of('error')).toEqual([]);
    // The transcript keeps the whole answer; only the chat message is cut.
    const [done] = host.of('done');
    expect(done?.status).toBe('ok');
    expect(done?.turn.at(-1)).toEqual({
      role: 'assistant',
      content: [{ type: 'text', text: answer }],
    });
  });

  it('sends an answer of exactly one chat message unchanged', async () => {
    const answer = 'b'.repeat(MAX_CHAT_MESSAGE_CHARS);
    const host = new FakeHost([answer]);
    await runTurn(host, 'Fill the message.');
    expect(host.of('output').map((f) => f.text)).toEqual([answer]);
  });

  it('never cuts a character in half', () => {
    // An emoji (two UTF-16 units) straddles the cut: it goes whole.
    const keep = MAX_CHAT_MESSAGE_CHARS - MARK.length;
    const text = `${'a'.repeat(keep - 1)}${'😀'.repeat(100)}`;
    expect(clampReply(text)).toBe(`${'a'.repeat(keep - 1)}${MARK}`);
    // One unit earlier, the emoji fits whole.
    const fits = `${'a'.repeat(keep - 2)}${'😀'.repeat(100)}`;
    expect(clampReply(fits)).toBe(`${'a'.repeat(keep - 2)}😀${MARK}`);
  });

  it('drops the oldest turns so a request stays within the host limit of 2 MiB', async () => {
    // Three resumed turns of about 900 KB each: 2.7 MB together, over the host's 2 MiB.
    const history: MessageParam[] = [1, 2, 3].flatMap((n) => [
      { role: 'user' as const, content: `${n}`.repeat(900_000) },
      { role: 'assistant' as const, content: [{ type: 'text' as const, text: `answer ${n}` }] },
    ]);
    expect(Buffer.byteLength(JSON.stringify(history))).toBeGreaterThan(
      DEFAULT_RUN_LIMITS.maxRequestBytes,
    );
    const host = new FakeHost(['Done.']);
    await runTurn(host, 'And now?', history);

    const [request] = host.requests;
    expect(hostMeasuredBytes(request!)).toBeLessThanOrEqual(DEFAULT_RUN_LIMITS.maxRequestBytes);
    // The oldest turn went; the two latest and the prompt stayed.
    expect(request!.messages).toEqual([...history.slice(2), { role: 'user', content: 'And now?' }]);
    expect(warnings).toEqual([
      'dropped the oldest turn from the conversation to fit the request size limit',
    ]);
    expect(host.of('output').map((f) => f.text)).toEqual(['Done.']);
  });

  it('fails a turn that alone is over 2 MiB in the runner, without sending the request', async () => {
    // Under the 4 MiB frame limit, so the host would have received it, then refused it.
    const prompt = 'p'.repeat(DEFAULT_RUN_LIMITS.maxRequestBytes + 1);
    const host = new FakeHost(['never asked']);
    await runTurn(host, prompt);

    expect(host.requests).toEqual([]);
    expect(host.of('output')).toEqual([]);
    expect(host.of('error').map((f) => f.message)).toEqual([
      'this turn has grown past the 2 MiB request limit; ask for smaller steps or a new conversation',
    ]);
    expect(host.of('done')).toEqual([
      expect.objectContaining({ type: 'done', status: 'failed', turn: [] }),
    ]);
  });
});

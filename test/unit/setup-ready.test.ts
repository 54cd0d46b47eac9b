/**
 * Set-up mistakes (issue 7): no key, no image, no engine hold the work instead of failing runs.
 * A waiting client and the chat hear what is wrong and the fix at once; no container starts and
 * no retry is spent; when the cause is fixed, the held messages are answered without a restart.
 * The real runner runs as a plain process, the real SDK talks to the fake Messages API, and
 * the database is a real SQLite file.
 */
import { describe, expect, it } from 'vitest';
import { controlHandlers } from '../../main/core/control/handlers.js';
import type { ControlProgress } from '../../main/core/control/protocol.js';
import type { ImageBuilder } from '../../main/core/setup.js';
import { textTurn, toolUseTurn } from '../fakes/anthropic-api.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { runnerSuite } from '../helpers/runner-suite.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-setup-ready';
const suite = runnerSuite(API_KEY);

function makeCore(
  runtime: ProcessRuntime,
  imageBuilder?: ImageBuilder,
  opts: { apiKey?: string; keyFix?: string } = {},
): ProcessCore {
  const made = processCore({
    prefix: 'clawbar-setup-',
    runtime,
    api: { url: suite.fake.url, apiKey: opts.apiKey ?? API_KEY },
    config: { idleTimeoutMs: 30_000 },
    deps: {
      runtimeRecheckMs: 20,
      ...(imageBuilder ? { imageBuilder } : {}),
      ...(opts.keyFix ? { keyFix: opts.keyFix } : {}),
    },
  });
  suite.defer(made.close);
  return made;
}

/** The texts the assistant put into the group's chat (replies and notices). */
function botTexts(made: ProcessCore, jid: string): string[] {
  return made.core
    .messages(jid, 100)
    .filter((m) => m.fromBot)
    .map((m) => m.text);
}

/** Resolves when a turn of the group has answered message `seq`. */
function answered(made: ProcessCore, jid: string, seq: number): Promise<void> {
  return new Promise((resolve) => {
    const off = made.core.events.on('turn:finished', (e) => {
      if (e.groupJid === jid && (e.throughSeq ?? 0) >= seq) {
        off();
        resolve();
      }
    });
  });
}

/** A builder whose build the test finishes (or fails) by hand, reporting progress meanwhile. */
function manualBuilder(runtime: ProcessRuntime) {
  let finish: (err?: Error) => void = () => undefined;
  let report: (line: string) => void = () => undefined;
  let builds = 0;
  const builder: ImageBuilder = {
    freshness: async () => (runtime.faults.imagePresent ? 'current' : 'missing'),
    build: (onProgress, signal) =>
      new Promise<void>((resolve, reject) => {
        builds += 1;
        report = onProgress;
        onProgress('base node:22-bookworm-slim: no registry answered');
        finish = (err) => {
          if (err) return reject(err);
          runtime.faults.imagePresent = true;
          resolve();
        };
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      }),
  };
  return {
    builder,
    finish: (err?: Error) => finish(err),
    progress: (line: string) => report(line),
    builds: () => builds,
  };
}

describe('a missing agent image', () => {
  it('is reported at once with its fix, starts nothing, and the message is answered when the image appears', async () => {
    const runtime = new ProcessRuntime();
    runtime.faults.imagePresent = false;
    const made = makeCore(runtime);
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    suite.fake.script([textTurn('Now I can answer.')]);

    const posted = made.core.postLocal('Family', 'Alice', '@Andy are you there?');
    await expect(made.core.waitForReply(group.jid, posted.message.seq, 10_000)).rejects.toThrow(
      /^not answered yet: the agent image clawbar-agent:latest is not built \(fix: run `clawbar image build`\)\. The message is stored/,
    );
    expect(runtime.startCalls).toBe(0);
    await expect
      .poll(() => botTexts(made, group.jid))
      .toEqual([expect.stringMatching(/^I cannot answer yet: the agent image .* is not built/)]);

    // The user builds the image in another terminal: serve notices by itself.
    const done = answered(made, group.jid, posted.message.seq);
    runtime.faults.imagePresent = true;
    await done;
    expect(runtime.startCalls).toBe(1);
    await expect.poll(() => botTexts(made, group.jid).at(-1)).toBe('Now I can answer.');
    expect((await made.core.status()).setup).toEqual({ ready: true, problems: [] });
    expect(made.store.turnAttemptOf(group.jid)?.attempts ?? 0).toBe(0);
  });

  it('removed while serving: the start that finds it gone holds the work, spending no retry', async () => {
    const runtime = new ProcessRuntime();
    const made = makeCore(runtime);
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    suite.fake.script([textTurn('first'), textTurn('second')]);
    const first = made.core.postLocal('Family', 'Alice', '@Andy one');
    await made.core.waitForReply(group.jid, first.message.seq, 10_000);
    made.core.stopGroup('Family'); // the warm container goes; the next message needs a new one
    await expect.poll(() => made.core.queue.snapshot().running).toEqual([]);

    runtime.faults.imagePresent = false; // `docker rmi` behind serve's back
    const second = made.core.postLocal('Family', 'Alice', '@Andy two');
    await expect(made.core.waitForReply(group.jid, second.message.seq, 10_000)).rejects.toThrow(
      /not answered yet: the agent image .* is not built \(fix: run `clawbar image build`\)/,
    );
    expect(made.core.queue.snapshot().retrying).toEqual([]);
    expect(made.core.queue.snapshot().waitingForSetup).toEqual([group.jid]);

    const done = answered(made, group.jid, second.message.seq);
    runtime.faults.imagePresent = true;
    await done;
    await expect.poll(() => botTexts(made, group.jid).at(-1)).toBe('second');
    // The start that failed for the image started no process; no turn attempt was spent on it.
    expect(runtime.started).toHaveLength(2);
    expect(made.store.turnAttemptOf(group.jid)?.attempts ?? 0).toBe(0);
  });
});

describe('an image that serve builds itself', () => {
  it('holds work during the build with a "one moment" note and build progress, then answers', async () => {
    const runtime = new ProcessRuntime();
    runtime.faults.imagePresent = false;
    const build = manualBuilder(runtime);
    const made = makeCore(runtime, build.builder);
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    expect((await made.core.status()).setup.problems).toEqual([
      expect.objectContaining({ kind: 'image-building', fix: null }),
    ]);
    suite.fake.script([textTurn('Built and ready.')]);

    // Through the control handlers, as `send --wait` does: progress arrives before the answer.
    const progress: ControlProgress[] = [];
    const handlers = controlHandlers({ core: made.core, serving: true });
    const sending = handlers.send(
      { group: 'Family', text: '@Andy hello', wait: true, timeoutMs: 20_000 },
      { signal: new AbortController().signal, progress: (p) => progress.push(p) },
    );
    await expect.poll(() => progress.map((p) => p.stage)).toEqual(['stored', 'setup']);
    expect(progress[1]?.text).toMatch(/^waiting: building the agent image .*no registry answered/);
    await expect
      .poll(() => botTexts(made, group.jid))
      .toEqual([expect.stringMatching(/^One moment: Clawbar is building its agent image/)]);

    await new Promise((resolve) => setTimeout(resolve, 1_100)); // past the progress throttle
    build.progress('[3/4] COPY dist/runner.mjs /opt/clawbar/runner.mjs');
    await expect.poll(() => progress.at(-1)?.text).toMatch(/\[3\/4\] COPY/);
    expect(runtime.startCalls).toBe(0);

    build.finish();
    const result = (await sending) as { replies: Array<{ text: string }> };
    expect(result.replies.map((r) => r.text)).toEqual(['Built and ready.']);
    const stages = progress.map((p) => p.stage);
    expect(stages.slice(stages.indexOf('starting'))).toEqual(['starting', 'thinking']);
    expect(build.builds()).toBe(1);
  });

  it('a failed build becomes a missing image whose fix carries the build error', async () => {
    const runtime = new ProcessRuntime();
    runtime.faults.imagePresent = false;
    const build = manualBuilder(runtime);
    const made = makeCore(runtime, build.builder);
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    const posted = made.core.postLocal('Family', 'Alice', '@Andy hello');
    const waiting = made.core.waitForReply(group.jid, posted.message.seq, 10_000);
    build.finish(new Error('no base image: install debootstrap'));
    await expect(waiting).rejects.toThrow(
      /the agent image .* is not built \(fix: no base image: install debootstrap; then run `clawbar image build`\)/,
    );
    expect(runtime.startCalls).toBe(0);
  });
});

describe("an API key set while running (the desktop app's Settings)", () => {
  it("answers the held messages once a key is set, and holds again with the app's fix when it is removed", async () => {
    const runtime = new ProcessRuntime();
    const keyFix = "add your Anthropic API key in Clawbar's Settings";
    const made = makeCore(runtime, undefined, { apiKey: '', keyFix });
    const changes: boolean[] = [];
    made.core.events.on('setup:changed', (e) => changes.push(e.ready));
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    suite.fake.script([textTurn('Now I have a key.')]);

    const posted = made.core.postLocal('Family', 'Alice', '@Andy hello?');
    await expect(made.core.waitForReply(group.jid, posted.message.seq, 10_000)).rejects.toThrow(
      `not answered yet: no Anthropic API key is set (fix: ${keyFix})`,
    );
    expect(runtime.startCalls).toBe(0);
    expect((await made.core.status()).keyConfigured).toBe(false);

    // The user enters the key: no restart, and the held message is answered with it.
    const done = answered(made, group.jid, posted.message.seq);
    made.core.setApiKey(API_KEY);
    await done;
    await expect.poll(() => botTexts(made, group.jid).at(-1)).toBe('Now I have a key.');
    expect((await made.core.status()).setup).toEqual({ ready: true, problems: [] });
    expect((await made.core.status()).keyConfigured).toBe(true);
    // The fake API only answers the right key: the call really carried it.
    expect(suite.fake.requests.at(-1)?.apiKey).toBe(API_KEY);

    // Removed: held again, with the app's fix.
    made.core.setApiKey(undefined);
    expect(made.core.setupProblems()).toEqual([
      { kind: 'no-key', message: 'no Anthropic API key is set', fix: keyFix },
    ]);
    expect(changes).toEqual([false, true, false]);
  });
});

describe('progress of a send --wait', () => {
  it('reports starting, thinking and the tools the model asks for, in order', async () => {
    const runtime = new ProcessRuntime();
    const made = makeCore(runtime);
    await made.core.start();
    made.core.addGroup({ name: 'Family' });
    suite.fake.script([
      toolUseTurn('bash', { command: 'echo hi' }, { id: 'toolu_1' }),
      textTurn('It said hi.'),
    ]);
    const progress: ControlProgress[] = [];
    const handlers = controlHandlers({ core: made.core, serving: true });
    const result = (await handlers.send(
      { group: 'Family', text: '@Andy run echo', wait: true, timeoutMs: 20_000 },
      { signal: new AbortController().signal, progress: (p) => progress.push(p) },
    )) as { replies: Array<{ text: string }> };
    expect(result.replies.map((r) => r.text)).toEqual(['It said hi.']);
    expect(progress.map((p) => p.text)).toEqual([
      'stored',
      'starting the agent container',
      'thinking',
      'running a tool: bash',
      'thinking',
    ]);
  });
});

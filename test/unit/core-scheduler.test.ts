/**
 * Scheduled tasks through the whole core: the scheduler's timer, the group queue, a real agent
 * run (the runner as a plain process, the real SDK against the fake Messages API), the run log
 * in a real SQLite file, and the reply in the chat.
 */
import { describe, expect, it } from 'vitest';
import type { TaskFinished } from '../../main/core/events.js';
import { lastUserText, textTurn } from '../fakes/anthropic-api.js';
import { runnerSuite } from '../helpers/runner-suite.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-core-scheduler';
const suite = runnerSuite(API_KEY);

function makeCore(home?: string): ProcessCore {
  const made = processCore({
    prefix: 'clawbar-core-sched-',
    api: { url: suite.fake.url, apiKey: API_KEY },
    config: { idleTimeoutMs: 30_000 },
    ...(home ? { home } : {}),
  });
  suite.defer(made.close);
  return made;
}

/** The next `task:finished` event of the core's scheduler. */
function nextFinished(made: ProcessCore, timeoutMs = 20_000): Promise<TaskFinished> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no task:finished event'));
    }, timeoutMs);
    const off = made.core.events.on('task:finished', (event) => {
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

describe('scheduled tasks in the core', () => {
  it('fires a one-off at its time, runs the agent, posts the reply and logs the run', async () => {
    const made = makeCore();
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    suite.fake.script([textTurn('Remember to stretch!')]);
    const at = new Date(Date.now() + 1_500).toISOString();
    const task = made.core.tasks.add({
      group,
      prompt: 'Remind me to stretch',
      at,
      createdBy: 'cli',
    });
    expect(made.core.scheduler.armedFor(task.id)).toBe(Date.parse(at));
    const finished = await nextFinished(made);
    expect(finished).toMatchObject({
      taskId: task.id,
      groupJid: group.jid,
      status: 'success',
      summary: 'Remember to stretch!',
    });
    // Fired on its timer: the run log's due time is the task's, and it started after it.
    const [run] = made.store.listRuns(task.id);
    expect(run?.dueAt).toBe(Date.parse(at));
    expect(run?.startedAt).toBeGreaterThanOrEqual(Date.parse(at));
    expect(run).toMatchObject({ status: 'success', resultSummary: 'Remember to stretch!' });
    expect(run?.inputTokens).toBeGreaterThan(0);
    expect(run?.outputTokens).toBeGreaterThan(0);
    expect(made.store.getTask(task.id)).toMatchObject({ status: 'done', lastStatus: 'success' });
    expect(lastUserText(suite.fake.requests[0] as (typeof suite.fake.requests)[number])).toContain(
      'Remind me to stretch',
    );
    await waitFor(() =>
      made.core.messages(group.jid, 10).some((m) => m.text === 'Remember to stretch!'),
    );
  });

  it('continues the group conversation in context mode group, and starts fresh when isolated', async () => {
    const made = makeCore();
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    suite.fake.script([
      textTurn('Noted: the dog is called Rex.'),
      textTurn('Walk Rex!'),
      textTurn('Walk the dog!'),
    ]);
    const posted = made.core.postLocal('Family', 'Alice', '@Andy our dog is called Rex');
    await made.core.waitForReply(group.jid, posted.message.seq, 20_000);

    const withContext = made.core.tasks.add({
      group,
      prompt: 'Remind me to walk the dog',
      every: '1d',
      contextMode: 'group',
      createdBy: 'cli',
    });
    const first = nextFinished(made);
    made.core.runTask(withContext.id);
    expect((await first).status).toBe('success');
    const isolated = made.core.tasks.add({
      group,
      prompt: 'Remind me to walk the dog',
      every: '1d',
      contextMode: 'isolated',
      createdBy: 'cli',
    });
    const second = nextFinished(made);
    made.core.runTask(isolated.id);
    expect((await second).status).toBe('success');

    const [, groupRun, isolatedRun] = suite.fake.requests;
    expect(JSON.stringify(groupRun?.body.messages)).toContain('the dog is called Rex');
    expect(JSON.stringify(isolatedRun?.body.messages)).not.toContain('Rex');
    // The group-context run joined the transcript; the isolated one left it alone.
    const transcript = JSON.stringify(made.store.transcriptOf(group.jid));
    expect(transcript).toContain('Walk Rex!');
    expect(transcript).not.toContain('Walk the dog!');
  });

  it('keeps tasks across a restart and arms them again', async () => {
    const made = makeCore();
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    const task = made.core.tasks.add({
      group,
      prompt: 'weekly',
      cron: '0 9 * * 1',
      createdBy: 'cli',
    });
    const due = made.store.getTask(task.id)?.nextRun;
    await made.core.shutdown(1_000);
    const again = makeCore(made.config.home);
    await again.core.start();
    expect(again.core.scheduler.armedFor(task.id)).toBe(due);
  });

  it('logs a paused group’s task as skipped and refuses to run it on request', async () => {
    const made = makeCore();
    await made.core.start();
    const group = made.core.addGroup({ name: 'Family' });
    const task = made.core.tasks.add({ group, prompt: 'x', every: '1d', createdBy: 'cli' });
    made.core.pauseGroup(group.jid);
    expect(() => made.core.runTask(task.id)).toThrow(/is paused; resume the group first/);
  });
});

async function waitFor(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Scheduled tasks end to end, as a user drives them: a task added with the built CLI is fired
 * by a real `clawbar serve` at its due time, runs the agent in a real Docker container against
 * the fake Messages API, and leaves a run log (`clawbar tasks runs`) and its reply in the chat
 * (`clawbar messages`). `clawbar tasks run` runs a recurring task now, through the same path,
 * without moving its schedule.
 *
 * No fixed sleeps: every wait polls the CLI with a generous deadline (2 shared cores), and
 * nothing asserts how long a run took beyond "it took some time".
 */
import fs from 'node:fs';
import Docker from 'dockerode';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  lastUserText,
  startFakeAnthropic,
  textTurn,
  type FakeAnthropic,
  type RecordedRequest,
} from '../fakes/anthropic-api.js';
import {
  cli,
  ensureAgentImage,
  requireBuild,
  pollUntil,
  startServe,
  tempHome,
  TEST_AGENT_IMAGE,
  type AddedGroup,
  type ChatMessage,
  type ServeProcess,
} from '../helpers/clawbar.js';
import { requireDocker } from '../helpers/docker.js';
import { resolveHome } from '../../main/core/config.js';
import { OURS_LABEL, SCOPE_LABEL, scopeForHome } from '../../main/core/sandbox/runtime.js';
import type { TaskRunStarted, TaskRunsView } from '../../main/core/control/handlers.js';
import type { TaskListing, TaskRunView, TaskView } from '../../main/core/scheduler/task-admin.js';

const API_KEY = 'sk-ant-test-scheduled-task';
/** How far ahead the one-off is due: enough for `tasks add` to land before it, on a slow machine. */
const LEAD_MS = 8_000;

requireDocker('scheduled tasks with real Docker', () => {
  let fake: FakeAnthropic;
  let home: string;
  let serve: ServeProcess;
  let env: NodeJS.ProcessEnv;
  /** This test home's scope label: only this file's containers carry it. */
  let scopeFilter: string;

  /** Runs a CLI command that must succeed and parses its `--json` output. */
  async function json<T>(args: string[]): Promise<T> {
    const run = await cli([...args, '--json'], env);
    expect(run.code, `clawbar ${args.join(' ')}: ${run.stderr}\n${serve.logs()}`).toBe(0);
    return JSON.parse(run.stdout) as T;
  }

  async function addGroup(name: string): Promise<AddedGroup> {
    return json<AddedGroup>(['groups', 'add', '--name', name]);
  }

  async function runsOf(id: string): Promise<TaskRunView[]> {
    return (await json<TaskRunsView>(['tasks', 'runs', id])).runs;
  }

  /** Waits until the task's run log has `count` finished runs (any status), latest first. */
  function waitForRuns(id: string, count: number): Promise<TaskRunView[]> {
    return pollUntil(`task ${id} to have ${count} finished run(s)\n${serve.logs()}`, async () => {
      const runs = (await runsOf(id)).filter((r) => r.status !== 'running');
      return runs.length >= count ? runs : undefined;
    });
  }

  /** Waits until the group's chat has an assistant message with this text. */
  function waitForReply(group: AddedGroup, text: string): Promise<ChatMessage[]> {
    return pollUntil(`"${text}" in ${group.name}'s chat\n${serve.logs()}`, async () => {
      const history = await json<ChatMessage[]>(['messages', '--group', group.folder]);
      return history.some((m) => m.fromAssistant && m.text === text) ? history : undefined;
    });
  }

  /**
   * The containers of this serve that Docker started for the group between `sinceMs` and now,
   * replayed from the engine's event log: proof the run went through Docker and not another
   * runtime, whether or not the container is still there.
   */
  async function containerStartsSince(group: AddedGroup, sinceMs: number): Promise<string[]> {
    const docker = new Docker();
    const stream = (await docker.getEvents({
      since: Math.floor(sinceMs / 1000),
      until: Math.ceil(Date.now() / 1000) + 1,
      filters: {
        type: ['container'],
        event: ['start'],
        label: [OURS_LABEL, scopeFilter, `dev.clawbar.group=${group.folder}`],
      },
    })) as NodeJS.ReadableStream;
    let raw = '';
    for await (const chunk of stream) raw += chunk.toString();
    return raw
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => (JSON.parse(line) as { id: string }).id);
  }

  /** The Messages calls whose last user text carries this task's scheduled-run header. */
  function requestsForTask(id: string): RecordedRequest[] {
    return fake.requests.filter((r) => lastUserText(r).includes(`[Scheduled task ${id},`));
  }

  beforeAll(async () => {
    requireBuild();
    await ensureAgentImage();
    fake = await startFakeAnthropic({ apiKey: API_KEY });
    home = tempHome('clawbar-sched-');
    env = {
      CLAWBAR_HOME: home,
      ANTHROPIC_API_KEY: API_KEY,
      ANTHROPIC_BASE_URL: fake.url,
      CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
      CLAWBAR_IDLE_TIMEOUT_MS: '60000',
      // The user's timezone; the run's header shows the due time in it.
      TZ: 'Europe/Berlin',
    };
    scopeFilter = `${SCOPE_LABEL}=${scopeForHome(resolveHome({ CLAWBAR_HOME: home }))}`;
    serve = await startServe(env, home);
  }, 180_000);

  afterAll(async () => {
    const code = await serve?.stop();
    await fake?.close();
    expect(code).toBe(0);
    // A clean shutdown leaves no container of this serve behind.
    const left = await new Docker().listContainers({
      all: true,
      filters: { label: [OURS_LABEL, scopeFilter] },
    });
    expect(left.map((c) => c.Names)).toEqual([]);
    if (home) fs.rmSync(home, { recursive: true, force: true });
  });

  it('fires a one-off task added from the CLI at its time, runs the agent in Docker, and logs the run and the reply', async () => {
    const group = await addGroup('Family');
    const reply = 'Good morning! Here is your briefing.';
    const prompt = 'Give me the morning briefing';
    fake.script([textTurn(reply, { usage: { inputTokens: 321, outputTokens: 45 } })]);
    const requestsBefore = fake.requests.length;

    // Whole seconds, with Z: the due time the run log must show back.
    const dueMs = Math.ceil((Date.now() + LEAD_MS) / 1000) * 1000;
    const at = new Date(dueMs).toISOString().replace('.000Z', 'Z');
    const added = await json<TaskView>(['tasks', 'add', '--group', 'Family', '--at', at, prompt]);
    expect(added).toMatchObject({
      kind: 'once',
      prompt,
      status: 'active',
      nextRun: new Date(dueMs).toISOString(),
      lastStatus: null,
      postResult: true,
      group: { jid: group.jid, folder: group.folder },
    });
    expect(added.id).toMatch(/^t_[a-z0-9]+$/);
    // It has not run before its time.
    expect(await runsOf(added.id)).toEqual([]);

    const [run, ...more] = await waitForRuns(added.id, 1);
    expect(more).toEqual([]);
    expect(run).toMatchObject({
      dueAt: new Date(dueMs).toISOString(),
      status: 'success',
      summary: reply,
      error: null,
      inputTokens: 321,
      outputTokens: 45,
    });
    expect(run!.startedAt).not.toBeNull();
    expect(Date.parse(run!.startedAt!)).toBeGreaterThanOrEqual(dueMs);
    expect(run!.durationMs).toBeGreaterThan(0);

    // A one-off that ran is done, with nothing more due.
    const listing = await json<TaskListing>(['tasks', 'list']);
    const listed = listing.tasks.find((t) => t.id === added.id);
    expect(listed).toMatchObject({
      status: 'done',
      nextRun: null,
      lastStatus: 'success',
      lastError: null,
      consecutiveFailures: 0,
    });
    expect(Date.parse(listed!.lastRun!)).toBeGreaterThanOrEqual(dueMs);

    // The reply reached the chat, once, from the assistant.
    const history = await waitForReply(group, reply);
    expect(history.filter((m) => m.fromAssistant).map((m) => m.text)).toEqual([reply]);

    // The model got the task's prompt under its scheduled-run header: one call, this run's.
    const calls = fake.requests.slice(requestsBefore);
    expect(calls).toHaveLength(1);
    const userText = lastUserText(calls[0]!);
    expect(userText).toContain(`[Scheduled task ${added.id}, due `);
    expect(userText).toContain(prompt);
    expect(requestsForTask(added.id)).toHaveLength(1);

    // The agent ran in a Docker container of this serve, labelled for the group.
    const starts = await containerStartsSince(group, dueMs - LEAD_MS - 5_000);
    expect(starts).toHaveLength(1);
  }, 150_000);

  it('runs an interval task now with `tasks run`, through Docker, without moving its next run', async () => {
    const group = await addGroup('Chores');
    const reply = 'Chores checked: the plants need water.';
    const prompt = 'Check the chores list';
    const added = await json<TaskView>([
      'tasks',
      'add',
      '--group',
      'Chores',
      '--every',
      '1h',
      prompt,
    ]);
    expect(added).toMatchObject({ kind: 'interval', status: 'active', lastStatus: null });
    expect(added.nextRun).not.toBeNull();
    // An hour away: only `tasks run` can make it run during this test.
    expect(Date.parse(added.nextRun!)).toBeGreaterThan(Date.now() + 30 * 60_000);

    fake.script([textTurn(reply)]);
    const requestsBefore = fake.requests.length;
    const startedAtMs = Date.now();
    const queued = await json<TaskRunStarted>(['tasks', 'run', added.id]);
    expect(queued.id).toBe(added.id);
    expect(Date.parse(queued.dueAt)).toBeGreaterThanOrEqual(startedAtMs - 1_000);

    const [run, ...more] = await waitForRuns(added.id, 1);
    expect(more).toEqual([]);
    expect(run).toMatchObject({ dueAt: queued.dueAt, status: 'success', summary: reply });
    expect(Date.parse(run!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(queued.dueAt));
    expect(run!.durationMs).toBeGreaterThan(0);
    expect(run!.inputTokens).toBeGreaterThan(0);
    expect(run!.outputTokens).toBeGreaterThan(0);

    // Still active, its next scheduled run where it was.
    const listed = (await json<TaskListing>(['tasks', 'list', '--group', 'Chores'])).tasks;
    expect(listed.map((t) => [t.id, t.status, t.nextRun, t.lastStatus])).toEqual([
      [added.id, 'active', added.nextRun, 'success'],
    ]);

    await waitForReply(group, reply);
    const calls = fake.requests.slice(requestsBefore);
    expect(calls).toHaveLength(1);
    const userText = lastUserText(calls[0]!);
    expect(userText).toContain(`[Scheduled task ${added.id}, run on request at `);
    expect(userText).toContain(prompt);

    expect(await containerStartsSince(group, startedAtMs - 2_000)).toHaveLength(1);
  }, 150_000);
});

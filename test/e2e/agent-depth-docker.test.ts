/**
 * Issue 10's agent, in real containers: a real `clawbar serve` with real Docker, the built CLI
 * and the real Anthropic SDK against the fake Messages API. The scripted model drives the
 * agent's own tools (bash, send_file) inside the container, and the tests check what the next
 * request to the fake carries back (the tool_result), what the chat recorded, and what is on
 * the host's disk:
 *
 * - an extra mount granted through `$CLAWBAR_HOME/mount-allowlist.json` is readable and
 *   read-only in the container; mounts the allowlist refuses (a folder holding `.env`, one
 *   outside every root, a symlink out of a root) are refused by `groups mounts --add` with the
 *   reason, and one that turns secret-bearing after it was added is skipped at the run;
 * - the run log under `$CLAWBAR_HOME/logs/runs/<folder>/` names the image, the mounts and the
 *   exit code;
 * - send_file sends a file the agent made to its chat, and refuses `..` and a symlink the agent
 *   planted towards /etc/passwd;
 * - a daily token budget holds the next message with a notice in the chat, no model call and no
 *   container, and stops a tool loop at its next model call when a run crosses it.
 *
 * Containers idle out after a few seconds, so each run ends on its own (exit code 0) and writes
 * its run log. No fixed sleeps: every wait polls with a generous deadline (2 shared cores).
 */
import fs from 'node:fs';
import path from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  startFakeAnthropic,
  textTurn,
  toolUseTurn,
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
  type CliResult,
  type AddedGroup,
  type ChatMessage,
  type ServeProcess,
} from '../helpers/clawbar.js';
import { requireDocker } from '../helpers/docker.js';
import { resolveHome } from '../../main/core/config.js';
import { OURS_LABEL, SCOPE_LABEL, scopeForHome } from '../../main/core/sandbox/runtime.js';

const API_KEY = 'sk-ant-test-agent-depth';
/** Short, so a container exits (cleanly) soon after its reply and its run log is written. */
const IDLE_TIMEOUT_MS = 4_000;

/** The text of the tool_result in a request's last message. */
function toolResultIn(request: RecordedRequest | undefined): string {
  const last = request?.body.messages.at(-1);
  const blocks = Array.isArray(last?.content) ? last.content : [];
  const result = blocks.find((b) => b.type === 'tool_result') as { content?: unknown } | undefined;
  const content = result?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content.map((c) => (c as { text?: string }).text ?? '').join('');
  throw new Error(`no tool_result in the request: ${JSON.stringify(last)}`);
}

requireDocker('the agent in depth, with real Docker', () => {
  let fake: FakeAnthropic;
  let home: string;
  let serve: ServeProcess;
  let env: NodeJS.ProcessEnv;
  /** This test home's scope label: only this file's containers carry it. */
  let scopeFilter: string;
  /** The allowlist root for extra mounts: a temp folder beside (not holding) the home. */
  let mountRoot: string;
  /** A temp folder outside every allowlist root. */
  let outsideRoot: string;

  async function run(args: string[]): Promise<CliResult> {
    return cli(args, env);
  }

  /** Runs a CLI command that must succeed and parses its `--json` output. */
  async function json<T>(args: string[]): Promise<T> {
    const result = await run([...args, '--json']);
    expect(result.code, `clawbar ${args.join(' ')}: ${result.stderr}\n${serve.logs()}`).toBe(0);
    return JSON.parse(result.stdout) as T;
  }

  function addGroup(name: string): Promise<AddedGroup> {
    return json<AddedGroup>(['groups', 'add', '--name', name]);
  }

  function history(group: AddedGroup): Promise<ChatMessage[]> {
    return json<ChatMessage[]>(['messages', '--group', group.folder]);
  }

  /** Sends a message and waits for the agent's reply; the reply must contain `expected`. */
  async function sendAndWait(group: AddedGroup, text: string, expected: string): Promise<void> {
    const sent = await run(['send', '--group', group.folder, '--from', 'Alice', '--wait', text]);
    expect(sent.code, `${sent.stderr}\n${serve.logs()}`).toBe(0);
    expect(sent.stdout).toContain(expected);
  }

  /** The run logs of a group, oldest first (their names start with the start time). */
  function runLogs(group: AddedGroup): string[] {
    const dir = path.join(home, 'logs', 'runs', group.folder);
    if (!fs.existsSync(dir)) return [];
    return fs
      .readdirSync(dir)
      .filter((name) => name.endsWith('.log'))
      .sort()
      .map((name) => fs.readFileSync(path.join(dir, name), 'utf8'));
  }

  /** This serve's containers for one group, running or not. */
  function containersOf(group: AddedGroup): Promise<Docker.ContainerInfo[]> {
    return new Docker().listContainers({
      all: true,
      filters: { label: [OURS_LABEL, scopeFilter, `dev.clawbar.group=${group.folder}`] },
    });
  }

  /** A folder the container user (uid 10001 when serve runs as root) may read and write. */
  function openFolder(dir: string): string {
    fs.mkdirSync(dir, { recursive: true });
    fs.chmodSync(dir, 0o777);
    return dir;
  }

  beforeAll(async () => {
    requireBuild();
    await ensureAgentImage();
    fake = await startFakeAnthropic({ apiKey: API_KEY });
    home = tempHome('clawbar-depth-');
    mountRoot = fs.realpathSync(tempHome('clawbar-depth-mnt-'));
    outsideRoot = fs.realpathSync(tempHome('clawbar-depth-out-'));
    env = {
      CLAWBAR_HOME: home,
      ANTHROPIC_API_KEY: API_KEY,
      ANTHROPIC_BASE_URL: fake.url,
      CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
      CLAWBAR_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
    };
    scopeFilter = `${SCOPE_LABEL}=${scopeForHome(resolveHome({ CLAWBAR_HOME: home }))}`;
    serve = await startServe(env, home);
  }, 180_000);

  afterAll(async () => {
    const code = await serve?.stop();
    await fake?.close();
    expect(code, serve?.logs()).toBe(0);
    // A clean shutdown leaves no container of this serve behind.
    const left = await new Docker().listContainers({
      all: true,
      filters: { label: [OURS_LABEL, scopeFilter] },
    });
    expect(left.map((c) => c.Names)).toEqual([]);
    for (const dir of [home, mountRoot, outsideRoot]) {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('mounts an allowlisted folder read-only, refuses secret-bearing and outside folders, and logs the run', async () => {
    const group = await addGroup('Family');
    fs.writeFileSync(
      path.join(home, 'mount-allowlist.json'),
      JSON.stringify({ roots: [{ path: mountRoot, description: 'test folders' }] }),
    );
    // Writable by anyone on the host: only the read-only mount can stop the agent's write.
    const notes = openFolder(path.join(mountRoot, 'notes'));
    fs.writeFileSync(path.join(notes, 'file.txt'), 'shared grocery list\n', { mode: 0o644 });

    const added = await run(['groups', 'mounts', 'Family', '--add', notes]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(
      new RegExp(`${notes} -> (/workspace/extra/)?notes \\(read-only\\)`),
    );

    // Refused at --add, with the reason, and not stored.
    const secretive = openFolder(path.join(mountRoot, 'project'));
    fs.writeFileSync(path.join(secretive, '.env'), 'API_TOKEN=do-not-mount\n');
    const withEnv = await run(['groups', 'mounts', 'Family', '--add', secretive]);
    expect(withEnv.code).not.toBe(0);
    expect(withEnv.stderr).toContain(`${secretive} cannot be mounted`);
    expect(withEnv.stderr).toContain(`holds ${path.join(secretive, '.env')}`);
    expect(withEnv.stderr).toContain('secret-bearing (it matches ".env")');

    const outside = await run(['groups', 'mounts', 'Family', '--add', outsideRoot]);
    expect(outside.code).not.toBe(0);
    expect(outside.stderr).toContain(
      `${outsideRoot} is not inside any allowed root (${mountRoot})`,
    );

    // A link inside the root that leads out of it is judged by where it leads.
    const escape = path.join(mountRoot, 'escape');
    fs.symlinkSync(outsideRoot, escape);
    const linked = await run(['groups', 'mounts', 'Family', '--add', escape]);
    expect(linked.code).not.toBe(0);
    expect(linked.stderr).toContain(`${outsideRoot} is not inside any allowed root`);

    // Fine when added, secret-bearing by the run: every run checks again and skips it.
    const later = openFolder(path.join(mountRoot, 'later'));
    const laterAdded = await run(['groups', 'mounts', 'Family', '--add', later]);
    expect(laterAdded.code, laterAdded.stderr).toBe(0);
    fs.mkdirSync(path.join(later, '.ssh'));

    const listed = await json<{
      mounts: Array<{ hostPath: string; status: string; reason?: string }>;
    }>(['groups', 'mounts', 'Family']);
    expect(listed.mounts.map((m) => [m.hostPath, m.status])).toEqual([
      [notes, 'allowed'],
      [later, 'refused'],
    ]);

    const from = fake.requests.length;
    fake.script([
      toolUseTurn('bash', {
        command: [
          'cat /workspace/extra/notes/file.txt',
          'echo x > /workspace/extra/notes/new.txt; echo rc=$?',
          'echo "extra: $(ls /workspace/extra | tr "\\n" " ")"',
          'echo "mounts: $(grep -c /workspace/extra /proc/mounts)"',
        ].join('; '),
      }),
      textTurn('Read the list; the folder is read-only.'),
    ]);
    await sendAndWait(group, '@Andy read the shared notes', 'the folder is read-only');

    const requests = fake.requests.slice(from);
    expect(requests).toHaveLength(2);
    const result = toolResultIn(requests[1]);
    expect(result).toContain('shared grocery list');
    expect(result).toMatch(/new\.txt: Read-only file system/);
    expect(result).toMatch(/rc=1\b/);
    // Only the granted mount is in the container: the refused ones never reach it.
    expect(result).toMatch(/extra: notes \n/);
    expect(result).toMatch(/mounts: 1\b/);
    expect(fs.readdirSync(notes)).toEqual(['file.txt']);

    // The run ends when the container idles out; its log names image, mounts and exit code.
    const [log, ...moreLogs] = await pollUntil(
      () => `a run log for ${group.folder}\n${serve.logs()}`,
      () => {
        const logs = runLogs(group);
        return logs.length > 0 ? logs : undefined;
      },
    );
    expect(moreLogs).toEqual([]);
    expect(log).toMatch(new RegExp(`^image: +${TEST_AGENT_IMAGE}$`, 'm'));
    expect(log).toMatch(/^exit code: +0$/m);
    expect(log).toMatch(/^outcome: +ok$/m);
    expect(log).toContain(`  ${notes} -> /workspace/extra/notes (ro)`);
    expect(log).toMatch(/ -> \/workspace\/group \(rw\)$/m);
    expect(log).toContain('refused mounts:');
    expect(log).toContain(`  ${later}: ${later} holds ${path.join(later, '.ssh')}`);
    expect(log).not.toContain(secretive);
    expect(log).not.toContain(API_KEY);
  }, 240_000);

  it('sends a file the agent made with send_file, and refuses .. and a planted symlink to /etc/passwd', async () => {
    const group = await addGroup('Reports');
    const from = fake.requests.length;
    fake.script([
      toolUseTurn('bash', {
        command:
          "printf 'hello report' > /workspace/group/report.txt && ln -s /etc/passwd /workspace/group/passwd-link && echo made",
      }),
      toolUseTurn('send_file', { path: 'report.txt', caption: 'here' }),
      toolUseTurn('send_file', { path: '../../etc/passwd' }),
      toolUseTurn('send_file', { path: 'passwd-link', caption: 'secrets' }),
      toolUseTurn('send_file', { path: '/workspace/group/../../../etc/passwd' }),
      textTurn('Sent the report.'),
    ]);
    await sendAndWait(group, '@Andy send me the report', 'Sent the report.');

    const requests = fake.requests.slice(from);
    expect(requests).toHaveLength(6);
    expect(toolResultIn(requests[1])).toContain('made');
    expect(toolResultIn(requests[2])).toMatch(/^sent report\.txt \(document, text\/plain, 12 B\)/);
    expect(toolResultIn(requests[3])).toContain(
      'send_file refused: "../../etc/passwd" has a ".." segment',
    );
    expect(toolResultIn(requests[4])).toContain(
      'send_file refused: /workspace/group/passwd-link is or passes through a symbolic link',
    );
    expect(toolResultIn(requests[5])).toContain('send_file refused:');
    expect(toolResultIn(requests[5])).toContain('has a ".." segment');
    // The agent did plant the link, in the host's folder: the refusal was the host's check.
    const groupDir = path.join(home, 'groups', group.folder);
    expect(fs.readlinkSync(path.join(groupDir, 'passwd-link'))).toBe('/etc/passwd');

    // The chat recorded the one file, with where the host keeps it, then the reply.
    const messages = await history(group);
    const fromAgent = messages.filter((m) => m.fromAssistant).map((m) => m.text);
    expect(fromAgent).toHaveLength(2);
    const fileLine = /^\[file report\.txt, text\/plain, 12 B: (.+)\]\nhere$/.exec(fromAgent[0]!);
    expect(fileLine, fromAgent[0]).not.toBeNull();
    expect(fromAgent[1]).toBe('Sent the report.');
    const keptAt = fileLine![1]!;
    expect(fs.readFileSync(keptAt, 'utf8')).toBe('hello report');
    // Kept by the host, outside every group folder: the agent cannot change what was sent.
    expect(path.relative(fs.realpathSync(home), keptAt).startsWith('..')).toBe(false);
    expect(keptAt.startsWith(path.join(fs.realpathSync(home), 'groups'))).toBe(false);
    expect(messages.some((m) => m.text.includes('root:x:0:0'))).toBe(false);
    expect(messages.some((m) => m.text.includes('secrets'))).toBe(false);
  }, 240_000);

  /** Waits until the group's chat has the daily-budget notice; returns the whole chat. */
  function waitForBudgetNotice(group: AddedGroup): Promise<ChatMessage[]> {
    return pollUntil(
      () => `the budget notice in ${group.name}'s chat\n${serve.logs()}`,
      async () => {
        const all = await history(group);
        return all.some((m) => m.fromAssistant && m.text.includes('daily budget'))
          ? all
          : undefined;
      },
    );
  }

  /** Waits until no container of the group is left, running or not. */
  async function waitForNoContainer(group: AddedGroup): Promise<void> {
    await pollUntil(
      () => `${group.name}'s containers to be gone\n${serve.logs()}`,
      async () => ((await containersOf(group)).length === 0 ? true : undefined),
    );
  }

  it('holds the next message past the daily token budget: the notice, no model call, no container', async () => {
    const group = await addGroup('Thrifty');
    const set = await run(['groups', 'set', 'Thrifty', '--budget-tokens', '50']);
    expect(set.code, set.stderr).toBe(0);

    // Under budget: the run is made, and the fake bills 60 + 5 tokens, past the 50.
    fake.script([textTurn('Within budget.', { usage: { inputTokens: 60, outputTokens: 5 } })]);
    await sendAndWait(group, '@Andy first question', 'Within budget.');
    const shown = await json<{ usageToday?: { tokens: number; calls: number } }>([
      'groups',
      'show',
      'Thrifty',
    ]);
    expect(shown.usageToday).toMatchObject({ tokens: 65, calls: 1 });
    // That run ends on its own; the next message needs a new run, which the budget refuses.
    await waitForNoContainer(group);
    expect(runLogs(group)).toHaveLength(1);

    const from = fake.requests.length;
    fake.script([textTurn('This answer must never be asked for.')]);
    const sent = await run(['send', '--group', group.folder, '@Andy second question']);
    expect(sent.code, sent.stderr).toBe(0);

    const messages = await waitForBudgetNotice(group);
    const notice = messages.filter((m) => m.fromAssistant).at(-1)!.text;
    expect(notice).toContain(
      'The daily budget of 50 tokens for this group is reached (65 tokens used today)',
    );
    expect(notice).toContain('Your messages are kept');
    expect(messages.map((m) => m.text)).toEqual([
      '@Andy first question',
      'Within budget.',
      '@Andy second question',
      notice,
    ]);
    // The message waits for midnight: no model call, no container, no run.
    const status = await json<{ budgetHeld?: string[] }>(['status']);
    expect(status.budgetHeld).toContain('Thrifty');
    expect(fake.requests.length).toBe(from);
    expect(fake.pending).toBe(1);
    expect(await containersOf(group)).toEqual([]);
    expect(runLogs(group)).toHaveLength(1);
    expect((await history(group)).map((m) => m.text)).toEqual(messages.map((m) => m.text));
  }, 240_000);

  it('stops a tool loop at its next model call once the budget is reached mid-run', async () => {
    const group = await addGroup('Frugal');
    const set = await run(['groups', 'set', 'Frugal', '--budget-tokens', '50']);
    expect(set.code, set.stderr).toBe(0);

    const from = fake.requests.length;
    // The first call is billed past the budget and asks for a tool; the call after the tool
    // must never be made.
    fake.script([
      toolUseTurn(
        'bash',
        { command: 'echo step-one > step.txt' },
        { usage: { inputTokens: 60, outputTokens: 5 } },
      ),
      textTurn('This answer must never be asked for.'),
    ]);
    const sent = await run(['send', '--group', group.folder, '@Andy do a long job']);
    expect(sent.code, sent.stderr).toBe(0);

    const messages = await waitForBudgetNotice(group);
    // The run is stopped, not retried: its container goes, and its log says how it ended.
    await waitForNoContainer(group);
    const [log, ...more] = await pollUntil(
      () => `a run log for ${group.folder}\n${serve.logs()}`,
      () => {
        const logs = runLogs(group);
        return logs.length > 0 ? logs : undefined;
      },
    );
    expect(more).toEqual([]);
    expect(log).toMatch(/^exit code: +\S+/m);
    // The log says why the host ended the run, not that the run failed.
    expect(log).toMatch(/^outcome: +stopped: the daily budget is reached$/m);
    // Stopped as `groups stop` stops a run: the host ended it, and spent no retry on it.
    const stopped = serve
      .logs()
      .split('\n')
      .filter((line) => line.includes(`"group":"${group.jid}"`));
    expect(stopped.some((line) => line.includes('run stopped: the daily budget is reached'))).toBe(
      true,
    );

    expect(fake.requests.length - from).toBe(1);
    expect(fake.pending).toBe(1);
    // The tool did run in the container before the refused call.
    expect(fs.readFileSync(path.join(home, 'groups', group.folder, 'step.txt'), 'utf8')).toBe(
      'step-one\n',
    );
    const notice = messages.filter((m) => m.fromAssistant).at(-1)!.text;
    expect(notice).toContain(
      'The daily budget of 50 tokens for this group is reached (65 tokens used today)',
    );
    // Told once, and nothing else: no "could not answer" note, no retry.
    expect((await history(group)).map((m) => m.text)).toEqual(['@Andy do a long job', notice]);
    const status = await json<{ budgetHeld?: string[] }>(['status']);
    expect(status.budgetHeld).toContain('Frugal');
  }, 240_000);
});

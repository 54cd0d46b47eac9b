/**
 * End to end, as a user drives it: the built CLI against a real `clawbar serve`, real
 * Docker, real SQLite, and the real Anthropic SDK pointed at the fake Messages API.
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
  startServe,
  tempHome,
  TEST_AGENT_IMAGE,
  type ServeProcess,
} from '../helpers/clawbar.js';
import { requireDocker } from '../helpers/docker.js';
import { resolveHome } from '../../main/core/config.js';
import { OURS_LABEL, SCOPE_LABEL, scopeForHome } from '../../main/core/sandbox/runtime.js';

/** Never a real key; the isolation checks look for it everywhere the agent can see. */
const API_KEY = 'sk-ant-test-ISOLATIONCANARY-7f3a';

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

interface AddedGroup {
  name: string;
  folder: string;
  jid: string;
}

requireDocker('clawbar serve with real Docker', () => {
  let fake: FakeAnthropic;
  let home: string;
  let serve: ServeProcess;
  let env: NodeJS.ProcessEnv;
  /** `home` as serve resolves it (symlinks followed): what it mounts and hashes into its scope. */
  let realHome: string;
  /** This test home's scope label: only this file's containers carry it. */
  let scopeFilter: string;

  /** Adds a group through the running serve, as a user would. */
  async function addGroup(name: string): Promise<AddedGroup> {
    const added = await cli(['groups', 'add', '--name', name, '--json'], env);
    expect(added.code, added.stderr).toBe(0);
    return JSON.parse(added.stdout) as AddedGroup;
  }

  /** This serve's containers for one group (running ones, unless `all`). */
  function containersOf(group: AddedGroup, all = false): Promise<Docker.ContainerInfo[]> {
    return new Docker().listContainers({
      all,
      filters: { label: [OURS_LABEL, scopeFilter, `dev.clawbar.group=${group.folder}`] },
    });
  }

  /** The Messages calls made since `from` (an earlier `fake.requests.length`). */
  function requestsSince(from: number): RecordedRequest[] {
    return fake.requests.slice(from);
  }

  beforeAll(async () => {
    requireBuild();
    await ensureAgentImage();
    fake = await startFakeAnthropic({ apiKey: API_KEY });
    home = tempHome();
    env = {
      CLAWBAR_HOME: home,
      ANTHROPIC_API_KEY: API_KEY,
      ANTHROPIC_BASE_URL: fake.url,
      CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
      CLAWBAR_IDLE_TIMEOUT_MS: '60000',
      LOG_LEVEL: 'debug',
    };
    realHome = resolveHome({ CLAWBAR_HOME: home });
    scopeFilter = `${SCOPE_LABEL}=${scopeForHome(realHome)}`;
    serve = await startServe(env, home);
  }, 180_000);

  afterAll(async () => {
    const code = await serve?.stop();
    await fake?.close();
    expect(code).toBe(0);
    // A clean shutdown leaves no container of this serve behind (other Clawbars are not ours to judge).
    const left = await new Docker().listContainers({
      all: true,
      filters: { label: [OURS_LABEL, scopeFilter] },
    });
    expect(left.map((c) => c.Names)).toEqual([]);
  });

  it('runs bash in the container, writes a file in the group folder, and replies', async () => {
    const group = await addGroup('Bash Proof');
    const from = fake.requests.length;
    fake.script([
      toolUseTurn('bash', { command: 'echo made-by-the-agent > proof.txt && cat proof.txt' }),
      textTurn('Done: I wrote proof.txt.'),
    ]);
    const sent = await cli(
      ['send', '--group', group.folder, '--from', 'Alice', '--wait', '@Andy please make a file'],
      env,
    );
    expect(sent.code, `${sent.stderr}\n${serve.logs()}`).toBe(0);
    expect(sent.stdout).toContain('Done: I wrote proof.txt.');
    const requests = requestsSince(from);
    expect(requests).toHaveLength(2);
    expect(toolResultIn(requests[1])).toContain('made-by-the-agent');
    expect(fs.readFileSync(path.join(home, 'groups', group.folder, 'proof.txt'), 'utf8')).toBe(
      'made-by-the-agent\n',
    );

    // The model saw the catch-up prompt with sender and text.
    const firstUser = requests[0]?.body.messages.at(-1);
    expect(JSON.stringify(firstUser)).toContain('sender=\\"Alice\\"');
    expect(JSON.stringify(firstUser)).toContain('please make a file');

    const history = await cli(['messages', '--group', group.name, '--json'], env);
    const messages = JSON.parse(history.stdout) as Array<{
      from: string;
      fromAssistant: boolean;
      text: string;
    }>;
    expect(messages.map((m) => [m.from, m.fromAssistant, m.text])).toEqual([
      ['Alice', false, '@Andy please make a file'],
      ['Andy', true, 'Done: I wrote proof.txt.'],
    ]);
  });

  it('feeds a follow-up into the warm container, which remembers the conversation', async () => {
    const group = await addGroup('Follow Up');
    const from = fake.requests.length;
    fake.script([textTurn('Nice to meet you, Carol.')]);
    const first = await cli(
      ['send', '--group', group.folder, '--wait', '@Andy my name is Carol'],
      env,
    );
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('Nice to meet you, Carol.');
    const [warm, ...others] = await containersOf(group);
    expect(warm).toBeDefined();
    expect(others).toEqual([]);

    fake.script([textTurn('Still here.')]);
    const second = await cli(
      ['send', '--group', group.folder, '--wait', '@Andy are you there?'],
      env,
    );
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('Still here.');
    const requests = requestsSince(from);
    expect(requests).toHaveLength(2);
    // The second call carries the first turn, question and answer, along.
    const conversation = JSON.stringify(requests[1]?.body.messages);
    expect(conversation).toContain('my name is Carol');
    expect(conversation).toContain('Nice to meet you, Carol.');
    expect(conversation).toContain('are you there?');

    // One container served both turns: the same one is still the only one of the group.
    expect((await containersOf(group)).map((c) => c.Id)).toEqual([warm!.Id]);
    const started = serve
      .logs()
      .split('\n')
      .filter(
        (line) =>
          line.includes('"msg":"container started"') && line.includes(`"group":"${group.folder}"`),
      );
    expect(started).toHaveLength(1);
  });

  it('keeps a message without the trigger as context but does not answer it', async () => {
    const group = await addGroup('Quiet Context');
    const from = fake.requests.length;
    const quiet = await cli(
      ['send', '--group', group.folder, '--from', 'Bob', '--wait', 'just chatting, no trigger'],
      env,
    );
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stdout).toContain('no trigger');
    expect(requestsSince(from)).toEqual([]);
    expect(await containersOf(group, true)).toEqual([]);

    fake.script([textTurn('Noted.')]);
    const asked = await cli(
      ['send', '--group', group.folder, '--wait', '@Andy what did Bob say?'],
      env,
    );
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.stdout).toContain('Noted.');
    const requests = requestsSince(from);
    expect(requests).toHaveLength(1);
    const prompt = JSON.stringify(requests[0]?.body.messages.at(-1));
    expect(prompt).toContain('just chatting, no trigger');
    expect(prompt).toContain('what did Bob say?');
  });

  it('isolates the container: no network, no other group, no API key anywhere', async () => {
    const group = await addGroup('Isolated');
    const other = await addGroup('Other Group');
    fs.writeFileSync(path.join(home, 'groups', other.folder, 'secret-of-other.txt'), 'other only');
    // The probe never spells the key: "ISOLATION""CANARY" is joined by bash, not in the text.
    const probe = [
      'echo "workspace: $(ls /workspace | tr "\\n" " ")"',
      'echo "interfaces: $(ls /sys/class/net | tr "\\n" " ")"',
      'echo "routes: $(tail -n +2 /proc/net/route | wc -l)"',
      'echo "found: $(find / -xdev -name secret-of-other.txt 2>/dev/null)"',
      'echo "env-hits: $(env | grep -c ISOLATION""CANARY)"',
      'echo "proc-hits: $(cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c ISOLATION""CANARY)"',
      'echo "file-hits: $(grep -rlsF ISOLATION""CANARY /workspace /tmp /opt /etc /home 2>/dev/null | wc -l)"',
      'echo "anthropic-vars: $(env | grep -c ^ANTHROPIC)"',
    ].join('; ');
    const from = fake.requests.length;
    fake.script([toolUseTurn('bash', { command: probe }), textTurn('Checked.')]);
    const sent = await cli(
      ['send', '--group', group.folder, '--wait', '@Andy check your surroundings'],
      env,
    );
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stdout).toContain('Checked.');

    const requests = requestsSince(from);
    expect(requests).toHaveLength(2);
    const report = toolResultIn(requests[1]);
    expect(report).toMatch(/workspace: global group \n/);
    expect(report).toMatch(/interfaces: lo \n/);
    expect(report).toMatch(/routes: 0\n/);
    expect(report).toMatch(/found: \n/);
    expect(report).toMatch(/env-hits: 0\n/);
    expect(report).toMatch(/proc-hits: 0\n/);
    expect(report).toMatch(/file-hits: 0\n/);
    expect(report).toMatch(/anthropic-vars: 0/);

    // From the outside: the warm container's configuration carries no key and no network.
    const [container, ...more] = await containersOf(group);
    expect(container).toBeDefined();
    expect(more).toEqual([]);
    const info = await new Docker().getContainer(container!.Id).inspect();
    expect(JSON.stringify(info)).not.toContain(API_KEY);
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(info.HostConfig.Binds?.sort()).toEqual(
      [
        `${path.join(realHome, 'groups', group.folder)}:/workspace/group:rw`,
        `${path.join(realHome, 'groups', 'global')}:/workspace/global:ro`,
      ].sort(),
    );

    // Every frame the runner sent became a model request body; none carries the key, and
    // neither do the files in the group folder the container can read (the transcript stays
    // in the host's database).
    for (const request of requests) expect(request.rawBody).not.toContain(API_KEY);
    const groupDir = path.join(home, 'groups', group.folder);
    const groupFiles = fs.readdirSync(groupDir, { recursive: true, encoding: 'utf8' });
    expect(groupFiles).toContain('CLAUDE.md');
    for (const file of groupFiles) {
      const p = path.join(groupDir, file);
      if (fs.lstatSync(p).isFile()) expect(fs.readFileSync(p, 'utf8')).not.toContain(API_KEY);
    }
    expect(fs.existsSync(path.join(home, 'sessions'))).toBe(false);
  });

  it('reports clear errors for bad input and keeps serving', async () => {
    const group = await addGroup('Bad Input');
    const unknown = await cli(['send', '--group', 'nope', 'hello'], env);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('no group named "nope"');

    const empty = await cli(['send', '--group', group.folder, '   '], env);
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toContain('empty');

    const sneaky = await cli(['groups', 'add', '--name', '../sneaky', '--json'], env);
    expect(sneaky.code, sneaky.stderr).toBe(0);
    expect(JSON.parse(sneaky.stdout).folder).toBe('sneaky');
    expect(fs.existsSync(path.join(home, 'groups', 'sneaky'))).toBe(true);
    expect(fs.existsSync(path.join(home, 'sneaky'))).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(home), 'sneaky'))).toBe(false);

    const from = fake.requests.length;
    fake.script([textTurn('Still fine.')]);
    const after = await cli(['send', '--group', group.folder, '--wait', '@Andy ping'], env);
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toContain('Still fine.');
    expect(requestsSince(from)).toHaveLength(1);
  });

  it('shows serve, runtime, image and running containers in status', async () => {
    const group = await addGroup('Status Check');
    fake.script([textTurn('Up.')]);
    const sent = await cli(['send', '--group', group.folder, '--wait', '@Andy status?'], env);
    expect(sent.code, sent.stderr).toBe(0);
    const [container] = await containersOf(group);
    expect(container).toBeDefined();

    const status = await cli(['status', '--json'], env);
    expect(status.code, status.stderr).toBe(0);
    const s = JSON.parse(status.stdout);
    expect(s.serving).toBe(true);
    expect(s.runtime.ok).toBe(true);
    expect(s.image).toMatchObject({ image: TEST_AGENT_IMAGE, present: true });
    // The group's warm container is listed; other tests' groups may be warm too.
    expect(s.queue.running.map((r: { groupJid: string }) => r.groupJid)).toContain(group.jid);
  });
});

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
import { OURS_LABEL } from '../../main/core/sandbox/runtime.js';

/** Never a real key; the isolation checks look for it everywhere the agent can see. */
const API_KEY = 'sk-ant-test-ISOLATIONCANARY-7f3a';

/** The last tool_result text the runner sent to the model. */
function lastToolResult(fake: FakeAnthropic): string {
  const request = fake.requests.at(-1);
  const last = request?.body.messages.at(-1);
  const blocks = Array.isArray(last?.content) ? last.content : [];
  const result = blocks.find((b) => b.type === 'tool_result') as { content?: unknown } | undefined;
  const content = result?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content.map((c) => (c as { text?: string }).text ?? '').join('');
  throw new Error(`no tool_result in the last request: ${JSON.stringify(last)}`);
}

requireDocker('clawbar serve with real Docker', () => {
  let fake: FakeAnthropic;
  let home: string;
  let serve: ServeProcess;
  let env: NodeJS.ProcessEnv;

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
    for (const name of ['Family', 'Work']) {
      const added = await cli(['groups', 'add', '--name', name], env);
      expect(added.code, added.stderr).toBe(0);
    }
    serve = await startServe(env, home);
  }, 180_000);

  afterAll(async () => {
    const code = await serve?.stop();
    await fake?.close();
    expect(code).toBe(0);
    // A clean shutdown leaves no container of ours behind.
    const left = await new Docker().listContainers({ all: true, filters: { label: [OURS_LABEL] } });
    expect(
      left.filter(
        (c) =>
          c.Labels['dev.clawbar.group'] &&
          c.Names.some((n) => n.includes('family') || n.includes('work')),
      ),
    ).toEqual([]);
  });

  it('runs bash in the container, writes a file in the group folder, and replies', async () => {
    fake.script([
      toolUseTurn('bash', { command: 'echo made-by-the-agent > proof.txt && cat proof.txt' }),
      textTurn('Done: I wrote proof.txt.'),
    ]);
    const sent = await cli(
      ['send', '--group', 'family', '--from', 'Alice', '--wait', '@Andy please make a file'],
      env,
    );
    expect(sent.code, `${sent.stderr}\n${serve.logs()}`).toBe(0);
    expect(sent.stdout).toContain('Done: I wrote proof.txt.');
    expect(lastToolResult(fake)).toContain('made-by-the-agent');
    expect(fs.readFileSync(path.join(home, 'groups', 'family', 'proof.txt'), 'utf8')).toBe(
      'made-by-the-agent\n',
    );

    // The model saw the catch-up prompt with sender and text.
    const firstUser = fake.requests.at(-2)?.body.messages.at(-1);
    expect(JSON.stringify(firstUser)).toContain('sender=\\"Alice\\"');

    const history = await cli(['messages', '--group', 'Family', '--json'], env);
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
    fake.script([textTurn('Still here.')]);
    const sent = await cli(['send', '--group', 'family', '--wait', '@Andy are you there?'], env);
    expect(sent.stdout).toContain('Still here.');
    // One container served both turns, so the transcript carried the first turn along.
    const request = fake.requests.at(-1);
    expect(JSON.stringify(request?.body.messages)).toContain('please make a file');
    const started = serve
      .logs()
      .split('\n')
      .filter(
        (line) => line.includes('"msg":"container started"') && line.includes('"group":"family"'),
      );
    expect(started).toHaveLength(1);
  });

  it('keeps a message without the trigger as context but does not answer it', async () => {
    const before = fake.requests.length;
    const quiet = await cli(
      ['send', '--group', 'family', '--from', 'Bob', '--wait', 'just chatting, no trigger'],
      env,
    );
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).toContain('no trigger');
    expect(fake.requests.length).toBe(before);

    fake.script([textTurn('Noted.')]);
    await cli(['send', '--group', 'family', '--wait', '@Andy what did Bob say?'], env);
    expect(JSON.stringify(fake.requests.at(-1)?.body.messages.at(-1))).toContain(
      'just chatting, no trigger',
    );
  });

  it('isolates the container: no network, no other group, no API key anywhere', async () => {
    fs.writeFileSync(path.join(home, 'groups', 'work', 'secret-of-work.txt'), 'work only');
    // The probe never spells the key: "ISOLATION""CANARY" is joined by bash, not in the text.
    const probe = [
      'echo "workspace: $(ls /workspace | tr "\\n" " ")"',
      'echo "interfaces: $(ls /sys/class/net | tr "\\n" " ")"',
      'echo "routes: $(tail -n +2 /proc/net/route | wc -l)"',
      'echo "found: $(find / -xdev -name secret-of-work.txt 2>/dev/null)"',
      'echo "env-hits: $(env | grep -c ISOLATION""CANARY)"',
      'echo "proc-hits: $(cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c ISOLATION""CANARY)"',
      'echo "file-hits: $(grep -rlsF ISOLATION""CANARY /workspace /tmp /opt /etc /home 2>/dev/null | wc -l)"',
      'echo "anthropic-vars: $(env | grep -c ^ANTHROPIC)"',
    ].join('; ');
    fake.script([toolUseTurn('bash', { command: probe }), textTurn('Checked.')]);
    const sent = await cli(
      ['send', '--group', 'family', '--wait', '@Andy check your surroundings'],
      env,
    );
    expect(sent.code, sent.stderr).toBe(0);

    const report = lastToolResult(fake);
    expect(report).toMatch(/workspace: global group session \n/);
    expect(report).toMatch(/interfaces: lo \n/);
    expect(report).toMatch(/routes: 0\n/);
    expect(report).toMatch(/found: \n/);
    expect(report).toMatch(/env-hits: 0\n/);
    expect(report).toMatch(/proc-hits: 0\n/);
    expect(report).toMatch(/file-hits: 0\n/);
    expect(report).toMatch(/anthropic-vars: 0/);

    // From the outside: the warm container's configuration carries no key and no network.
    const docker = new Docker();
    const [container] = await docker.listContainers({
      filters: { label: [OURS_LABEL, 'dev.clawbar.group=family'] },
    });
    expect(container).toBeDefined();
    const info = await docker.getContainer(container!.Id).inspect();
    expect(JSON.stringify(info)).not.toContain(API_KEY);
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(info.HostConfig.Binds?.sort()).toEqual(
      [
        `${path.join(home, 'groups', 'family')}:/workspace/group:rw`,
        `${path.join(home, 'groups', 'global')}:/workspace/global:ro`,
        `${path.join(home, 'sessions', 'family')}:/workspace/session:rw`,
      ].sort(),
    );

    // Every frame the runner sent became a model request body; none carries the key, and
    // neither do the session files the container can read.
    for (const request of fake.requests) expect(request.rawBody).not.toContain(API_KEY);
    const sessionDir = path.join(home, 'sessions', 'family');
    for (const file of fs.readdirSync(sessionDir)) {
      expect(fs.readFileSync(path.join(sessionDir, file), 'utf8')).not.toContain(API_KEY);
    }
  });

  it('reports clear errors for bad input and keeps serving', async () => {
    const unknown = await cli(['send', '--group', 'nope', 'hello'], env);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('no group named "nope"');

    const empty = await cli(['send', '--group', 'family', '   '], env);
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toContain('empty');

    const sneaky = await cli(['groups', 'add', '--name', '../x', '--json'], env);
    expect(sneaky.code).toBe(0);
    expect(JSON.parse(sneaky.stdout).folder).toBe('x');
    expect(fs.existsSync(path.join(home, 'groups', 'x'))).toBe(true);
    expect(fs.existsSync(path.join(home, 'x'))).toBe(false);

    fake.script([textTurn('Still fine.')]);
    const after = await cli(['send', '--group', 'work', '--wait', '@Andy ping'], env);
    expect(after.stdout).toContain('Still fine.');
  });

  it('shows serve, runtime, image and running containers in status', async () => {
    const status = await cli(['status', '--json'], env);
    const s = JSON.parse(status.stdout);
    expect(s.serving).toBe(true);
    expect(s.runtime.ok).toBe(true);
    expect(s.image).toMatchObject({ image: TEST_AGENT_IMAGE, present: true });
    expect(s.queue.running.map((r: { groupJid: string }) => r.groupJid).sort()).toEqual([
      'local:family',
      'local:work',
    ]);
  });
});

/**
 * The Docker engine goes away in the middle of a run, and comes back. `serve` talks to the
 * real engine through a unix-socket proxy (DOCKER_HOST), which the test cuts and restores, so
 * the shared engine itself, and anyone else's containers on it, are never touched.
 *
 * What must hold: serve stays up, `status` says the engine is not reachable and how to fix
 * it, no retry is spent while it is down, and once it is back the message is answered exactly
 * once and the lost container is gone.
 */
import Docker from 'dockerode';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolveHome } from '../../main/core/config.js';
import { OURS_LABEL, SCOPE_LABEL, scopeForHome } from '../../main/core/sandbox/runtime.js';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
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
import { startDockerProxy, type DockerProxy } from '../helpers/docker-proxy.js';

const API_KEY = 'sk-ant-test-outage';

requireDocker('the Docker engine goes away mid-run', () => {
  let fake: FakeAnthropic;
  let proxy: DockerProxy;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let serve: ServeProcess | undefined;

  beforeAll(async () => {
    requireBuild();
    await ensureAgentImage();
    fake = await startFakeAnthropic({ apiKey: API_KEY });
    proxy = await startDockerProxy();
    home = tempHome('clawbar-outage-');
    env = {
      CLAWBAR_HOME: home,
      ANTHROPIC_API_KEY: API_KEY,
      ANTHROPIC_BASE_URL: fake.url,
      CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
      DOCKER_HOST: `unix://${proxy.socketPath}`,
    };
  }, 180_000);

  afterAll(async () => {
    await serve?.stop();
    await proxy?.close();
    await fake?.close();
  });

  it('keeps serve alive, says so in status, and answers the message exactly once when the engine is back', async () => {
    expect((await cli(['groups', 'add', '--name', 'Outage'], env)).code).toBe(0);
    serve = await startServe(env, home);
    // The first model call is still running when the engine goes; the retry answers.
    fake.script([textTurn('lost with the engine', { delayMs: 5_000 }), textTurn('Answered once.')]);
    const waiting = cli(['send', '--group', 'outage', '--wait', '@Andy are you there?'], env);
    await fake.waitForRequests(1);

    proxy.cut();
    // status answers while the engine is away, and says what to do.
    let status:
      | { runtime: { ok: boolean; reason?: string; fix?: string }; image: { present: unknown } }
      | undefined;
    for (let i = 0; i < 50; i++) {
      const result = await cli(['status', '--json'], env);
      expect(result.code, result.stderr).toBe(0);
      status = JSON.parse(result.stdout) as typeof status;
      if (status?.runtime.ok === false) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(status?.runtime.ok).toBe(false);
    expect(status?.runtime.reason).toMatch(/^Docker engine not reachable/);
    expect(status?.runtime.fix).toMatch(/docker/i);
    // With the engine away, nobody can say whether the image is there: status does not guess.
    expect(status?.image.present).toBeNull();
    const human = await cli(['status'], env);
    expect(human.stdout).toMatch(/Docker engine not reachable/);
    expect(human.stdout).toMatch(
      /^image: +\S+ unknown \(the container engine is not reachable\)$/m,
    );
    // WhatsApp's real state: never linked, so it waits for `clawbar pair` (and never connected).
    expect(human.stdout).toMatch(
      /^channels: +local open, whatsapp needs pairing \(.*clawbar pair/m,
    );
    // The waiting client is told what is wrong and the fix, while the engine is still away:
    // one line, no stack.
    const sent = await waiting;
    expect(sent.code, `${sent.stdout}\n${serve.logs()}`).toBe(1);
    expect(sent.stderr).toMatch(
      /^clawbar: not answered yet: Docker engine not reachable.*\(fix: .*docker.*\)\. The message is stored and will be answered once that is fixed\n$/i,
    );
    // Held, not retried: only the one model call so far.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(fake.requests).toHaveLength(1);

    // Fixed without a restart: the engine comes back and the held message is answered.
    await proxy.restore();
    const history = async () =>
      (
        JSON.parse((await cli(['messages', '--group', 'outage', '--json'], env)).stdout) as Array<{
          fromAssistant: boolean;
          text: string;
        }>
      ).map((m) => [m.fromAssistant, m.text]);
    await expect.poll(history, { timeout: 60_000, interval: 500 }).toEqual([
      [false, '@Andy are you there?'],
      [true, expect.stringMatching(/^I cannot answer yet: Docker engine not reachable/)],
      [true, 'Answered once.'],
    ]);
    expect(serve.child.exitCode).toBeNull();
    expect(serve.logs()).not.toMatch(/giving up after repeated failures/);

    // The container lost in the outage was removed; at most the new warm one is left.
    const scope = scopeForHome(resolveHome({ CLAWBAR_HOME: home }));
    const ours = await new Docker().listContainers({
      all: true,
      filters: { label: [OURS_LABEL, `${SCOPE_LABEL}=${scope}`] },
    });
    expect(ours.length).toBeLessThanOrEqual(1);

    expect(await serve.stop()).toBe(0);
    serve = undefined;
  }, 120_000);
});

/**
 * Crash safety with real parts: `serve` is killed with SIGKILL in the middle of a turn. The
 * next `serve` must answer the message, once, and clean up the orphaned container.
 */
import Docker from 'dockerode';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
import {
  cli,
  ensureAgentImage,
  requireBuild,
  startServe,
  tempHome,
  TEST_AGENT_IMAGE,
} from '../helpers/clawbar.js';
import { requireDocker } from '../helpers/docker.js';
import { resolveHome } from '../../main/core/config.js';
import { OURS_LABEL, SCOPE_LABEL, scopeForHome } from '../../main/core/sandbox/runtime.js';

const API_KEY = 'sk-ant-test-crash';

requireDocker('crash recovery', () => {
  let fake: FakeAnthropic;
  let home: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    requireBuild();
    await ensureAgentImage();
    fake = await startFakeAnthropic({ apiKey: API_KEY });
    home = tempHome('clawbar-crash-');
    env = {
      CLAWBAR_HOME: home,
      ANTHROPIC_API_KEY: API_KEY,
      ANTHROPIC_BASE_URL: fake.url,
      CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
    };
    expect((await cli(['groups', 'add', '--name', 'Family'], env)).code).toBe(0);
  }, 180_000);

  afterAll(() => fake?.close());

  it('answers a message exactly once after serve is killed mid-turn', async () => {
    // The first model call hangs long enough for the kill; the retry after restart answers.
    fake.script([
      textTurn('too late', { delayMs: 30_000 }),
      textTurn('Answered after the restart.'),
    ]);
    const first = await startServe(env, home);
    const sent = await cli(['send', '--group', 'family', '@Andy are you there?'], env);
    expect(sent.code, sent.stderr).toBe(0);
    await fake.waitForRequests(1);
    first.child.kill('SIGKILL');
    await first.stop();

    const second = await startServe(env, home);
    try {
      const deadline = Date.now() + 60_000;
      let replies: Array<{ fromAssistant: boolean; text: string }> = [];
      while (Date.now() < deadline) {
        const history = JSON.parse(
          (await cli(['messages', '--group', 'family', '--json'], env)).stdout,
        ) as typeof replies;
        replies = history.filter((m) => m.fromAssistant);
        if (replies.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(replies.map((m) => m.text)).toEqual(['Answered after the restart.']);
      expect(second.logs()).toMatch(/re-queueing unanswered messages/);

      // The container of the killed serve was removed at start; only the new one remains.
      // serve scopes its containers by the home it resolved (symlinks followed), so must we.
      const scope = scopeForHome(resolveHome({ CLAWBAR_HOME: home }));
      const ours = await new Docker().listContainers({
        all: true,
        filters: { label: [OURS_LABEL, `${SCOPE_LABEL}=${scope}`] },
      });
      expect(ours.length).toBeLessThanOrEqual(1);
    } finally {
      expect(await second.stop()).toBe(0);
    }
    // Nothing was sent twice: one user message, one reply.
    const history = JSON.parse(
      (await cli(['messages', '--group', 'family', '--json'], env)).stdout,
    ) as unknown[];
    expect(history).toHaveLength(2);
  }, 120_000);

  it('SIGTERM with a send --wait in flight: serve exits within the grace period, the client is told, and the turn is answered once after restart', async () => {
    const termHome = tempHome('clawbar-term-');
    const termEnv = { ...env, CLAWBAR_HOME: termHome };
    expect((await cli(['groups', 'add', '--name', 'Family'], termEnv)).code).toBe(0);
    fake.script([
      textTurn('too late', { delayMs: 60_000 }),
      textTurn('Answered after the restart.'),
    ]);
    const first = await startServe(termEnv, termHome);
    const waiting = cli(['send', '--group', 'family', '--wait', '@Andy still there?'], termEnv);
    await fake.waitForRequests(fake.requests.length + 1);

    const began = Date.now();
    // One SIGTERM (stop() sends it): a second one would ask serve to exit at once.
    expect(await first.stop()).toBe(0);
    // The default grace period is 10 s; the model call would have taken a minute.
    expect(Date.now() - began).toBeLessThan(15_000);
    // Its last words say it stopped, so a log reader knows the exit was orderly.
    expect(first.logs().trimEnd().split('\n').at(-1)).toMatch(/"msg":"stopped"/);
    const told = await waiting;
    expect(told.code).not.toBe(0);
    expect(told.stderr).toMatch(
      /shutting down; the message is stored and will be answered after restart/,
    );

    const second = await startServe(termEnv, termHome);
    try {
      const deadline = Date.now() + 60_000;
      let replies: Array<{ fromAssistant: boolean; text: string }> = [];
      while (Date.now() < deadline && replies.length === 0) {
        const history = JSON.parse(
          (await cli(['messages', '--group', 'family', '--json'], termEnv)).stdout,
        ) as typeof replies;
        replies = history.filter((m) => m.fromAssistant);
        if (replies.length === 0) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(replies.map((m) => m.text)).toEqual(['Answered after the restart.']);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  }, 120_000);
});

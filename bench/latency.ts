/**
 * Send-to-reply latency with the fake model answering at once: cold (a new container per
 * message) and warm (a follow-up into an idle container). Real Docker, real SQLite, the real
 * SDK against the fake Messages API; the agent image is built from this checkout.
 *
 *   npm run bench        (env BENCH_SAMPLES, default 15)
 */
import { ModelBroker } from '../main/core/agent/model-broker.js';
import { loadConfig } from '../main/core/config.js';
import { Core } from '../main/core/core.js';
import { silentLogger } from '../main/core/logger.js';
import { DockerRuntime } from '../main/core/sandbox/docker.js';
import { scopeForHome } from '../main/core/sandbox/runtime.js';
import { openStore } from '../main/core/store/index.js';
import { startFakeAnthropic, textTurn } from '../test/fakes/anthropic-api.js';
import { ensureAgentImage, tempHome, TEST_AGENT_IMAGE } from '../test/helpers/clawbar.js';

const samples = Number(process.env.BENCH_SAMPLES ?? 15);
const API_KEY = 'sk-ant-bench';

function stats(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  return `median ${at(0.5).toFixed(0)} ms, p90 ${at(0.9).toFixed(0)} ms, min ${sorted[0]?.toFixed(0)} ms, max ${sorted.at(-1)?.toFixed(0)} ms (n=${values.length})`;
}

async function main(): Promise<void> {
  await ensureAgentImage();
  const fake = await startFakeAnthropic({ apiKey: API_KEY, fallback: textTurn('pong') });
  const home = tempHome('clawbar-bench-');
  const config = {
    ...loadConfig({ CLAWBAR_HOME: home, CLAWBAR_IMAGE: TEST_AGENT_IMAGE }, () => undefined),
    maxConcurrency: 1,
  };
  const store = openStore(config.dbPath);
  const log = silentLogger();
  const runtime = new DockerRuntime({ log, scope: scopeForHome(home) });
  const broker = new ModelBroker({ apiKey: API_KEY, baseURL: fake.url, model: config.model, log });
  const core = new Core({ config, store, runtime, broker, log });
  await core.start();

  const timeReply = async (group: string, text: string): Promise<number> => {
    const started = performance.now();
    const posted = core.postLocal(group, 'bench', text);
    await core.waitForReply(posted.group.jid, posted.message.seq, 60_000);
    return performance.now() - started;
  };

  // Cold: each message goes to a new group, so each needs a new container. The cap of 1
  // makes the previous group's idle container stop first, as it would under load.
  const cold: number[] = [];
  for (let i = 0; i < samples; i++) {
    core.addGroup({ name: `cold-${i}` });
    cold.push(await timeReply(`cold-${i}`, `@Andy ping ${i}`));
  }

  // Warm: follow-ups into one idle container.
  core.addGroup({ name: 'warm' });
  await timeReply('warm', '@Andy first');
  const warm: number[] = [];
  for (let i = 0; i < samples; i++) warm.push(await timeReply('warm', `@Andy again ${i}`));

  console.log(`cold start (new container): ${stats(cold)}`);
  console.log(`warm follow-up (idle container): ${stats(warm)}`);
  await core.shutdown(5_000);
  store.close();
  await fake.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

/**
 * Send-to-reply latency with the fake model answering at once: cold (a new container per
 * message) and warm (a follow-up into an idle container). Real Docker, real SQLite, the real
 * SDK against the fake Messages API; the agent image is built from this checkout.
 *
 * Samples: env BENCH_SAMPLES, default 15.
 */
import fs from 'node:fs';
import { ModelBroker } from '../main/core/agent/model-broker.js';
import { loadConfig } from '../main/core/config.js';
import { localChannelFor } from '../main/core/channels/local.js';
import { Core } from '../main/core/core.js';
import { silentLogger } from '../main/core/logger.js';
import { DockerRuntime } from '../main/core/sandbox/docker.js';
import { scopeForHome } from '../main/core/sandbox/runtime.js';
import { openStore } from '../main/core/store/index.js';
import { startFakeAnthropic, textTurn } from '../test/fakes/anthropic-api.js';
import { ensureAgentImage, tempHome, TEST_AGENT_IMAGE } from '../test/helpers/clawbar.js';
import { quantile, type BenchRow } from './row.js';

const API_KEY = 'sk-ant-bench';
/** @default 3000 */
const COLD_TARGET_MS = 3000;
/** @default 1000 */
const WARM_TARGET_MS = 1000;

function describe(values: number[]): string {
  const at = (q: number) => quantile(values, q).toFixed(0);
  return `median ${at(0.5)} ms, p90 ${at(0.9)} ms, min ${at(0)} ms, max ${at(1)} ms (n=${values.length})`;
}

function latencyRow(name: string, values: number[], target: number): BenchRow {
  const value = Math.round(quantile(values, 0.5));
  return { name, value, unit: 'ms', target, met: value <= target };
}

/** Measures cold and warm send→reply; returns their medians. */
export async function latencyBench(
  opts: { samples?: number; log?: (line: string) => void } = {},
): Promise<BenchRow[]> {
  const samples = opts.samples ?? Number(process.env.BENCH_SAMPLES ?? 15);
  const report = opts.log ?? (() => {});
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
  const local = localChannelFor(store);
  const core = new Core({ config, store, runtime, broker, log, channels: [local] });
  try {
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
    report(`cold start (new container): ${describe(cold)}`);

    // Warm: follow-ups into one idle container.
    core.addGroup({ name: 'warm' });
    await timeReply('warm', '@Andy first');
    const warm: number[] = [];
    for (let i = 0; i < samples; i++) warm.push(await timeReply('warm', `@Andy again ${i}`));
    report(`warm follow-up (idle container): ${describe(warm)}`);

    return [
      latencyRow('send→reply cold (new container)', cold, COLD_TARGET_MS),
      latencyRow('send→reply warm (idle container)', warm, WARM_TARGET_MS),
    ];
  } finally {
    await core.shutdown(5_000);
    store.close();
    await fake.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
}

/**
 * WhatsApp round trip with a warm container: from the fake contact sending a group message to
 * it decrypting the assistant's reply. The real Baileys socket against the fake WhatsApp
 * server, real Docker (the agent image built from this checkout), real SQLite, and the real
 * SDK against the fake Messages API, which answers at once.
 *
 * Everything runs in this process: the fake WhatsApp server points Baileys' process-wide
 * `WA_CERT_DETAILS` at its test root key.
 *
 * Samples: env BENCH_SAMPLES, default 15.
 */
import fs from 'node:fs';
import { ModelBroker } from '../main/core/agent/model-broker.js';
import type { ChannelState } from '../main/core/channels/channel.js';
import { localChannelFor } from '../main/core/channels/local.js';
import { whatsappChannelFor } from '../main/core/channels/whatsapp/boot.js';
import { loadConfig } from '../main/core/config.js';
import { Core } from '../main/core/core.js';
import { silentLogger } from '../main/core/logger.js';
import { DockerRuntime } from '../main/core/sandbox/docker.js';
import { scopeForHome } from '../main/core/sandbox/runtime.js';
import { openStore } from '../main/core/store/index.js';
import { lastUserText, startFakeAnthropic, textTurn } from '../test/fakes/anthropic-api.js';
import { startFakeWhatsApp } from '../test/fakes/whatsapp/server.js';
import { ensureAgentImage, tempHome, TEST_AGENT_IMAGE } from '../test/helpers/clawbar.js';
import { quantile, type BenchRow } from './row.js';

const API_KEY = 'sk-ant-bench-whatsapp';
/** The target: a median under 150 ms. */
const MEDIAN_TARGET_MS = 150;
/** Twice the median's target. */
const P90_TARGET_MS = 300;
/**
 * The gap between two samples. The channel paces replies like a person typing (one a second,
 * three at once after a pause); samples closer than that would measure the pacing.
 */
const SAMPLE_GAP_MS = 1_100;
/** How long pairing, a warm-up reply or one sample may take before the bench fails. */
const STEP_TIMEOUT_MS = 60_000;

function describe(values: number[]): string {
  const at = (q: number) => quantile(values, q).toFixed(0);
  return `median ${at(0.5)} ms, p90 ${at(0.9)} ms, min ${at(0)} ms, max ${at(1)} ms (n=${values.length})`;
}

function row(name: string, value: number, target: number): BenchRow {
  const rounded = Math.round(value);
  return { name, value: rounded, unit: 'ms', target, met: rounded < target };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Measures contact→decrypted reply over WhatsApp with a warm container; returns median and p90. */
export async function whatsappBench(
  opts: { samples?: number; log?: (line: string) => void } = {},
): Promise<BenchRow[]> {
  const samples = opts.samples ?? Number(process.env.BENCH_SAMPLES ?? 15);
  const report = opts.log ?? (() => {});
  await ensureAgentImage();
  // Echoes the sample number, so each reply is told from the others.
  const anthropic = await startFakeAnthropic({
    apiKey: API_KEY,
    fallback: (request) => textTurn(`pong ${/ping (\d+)/.exec(lastUserText(request))?.[1] ?? '?'}`),
  });
  const fake = await startFakeWhatsApp();
  const home = tempHome('clawbar-bench-wa-');
  const config = {
    ...loadConfig({ CLAWBAR_HOME: home, CLAWBAR_IMAGE: TEST_AGENT_IMAGE }, () => undefined),
    waUrl: fake.url,
    maxConcurrency: 1,
  };
  const store = openStore(config.dbPath);
  const log = silentLogger();
  const runtime = new DockerRuntime({ log, scope: scopeForHome(home) });
  const broker = new ModelBroker({
    apiKey: API_KEY,
    baseURL: anthropic.url,
    model: config.model,
    log,
  });
  const whatsapp = whatsappChannelFor({ store, config, log });
  const core = new Core({
    config,
    store,
    runtime,
    broker,
    log,
    channels: [localChannelFor(store), whatsapp.channel],
    whatsapp: whatsapp.control,
  });
  try {
    await core.start();

    // Pair by QR, as `clawbar pair` does.
    const open = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`WhatsApp did not open within ${STEP_TIMEOUT_MS} ms`)),
        STEP_TIMEOUT_MS,
      );
      const off = core.events.on('channel:state', (e) => {
        const state: ChannelState = e.state;
        if (e.channel !== 'whatsapp') return;
        if (state.state === 'qr') {
          fake.scanQr(state.qr).catch((err: unknown) => {
            clearTimeout(timer);
            off();
            reject(err instanceof Error ? err : new Error(String(err)));
          });
        } else if (state.state === 'open') {
          clearTimeout(timer);
          off();
          resolve();
        }
      });
    });
    await whatsapp.control.startPairing({});
    await open;

    const alice = await fake.addContact({ phone: '15550002222', pushName: 'Alice' });
    const groupJid = fake.createGroup({
      subject: 'Bench',
      participants: [alice],
      id: '120363000000000042',
    });
    core.addGroup({ name: 'Bench', jid: groupJid });

    const roundTrip = async (i: number): Promise<number> => {
      const started = performance.now();
      await fake.deliverText({ from: alice, group: groupJid, text: `@Andy ping ${i}` });
      await fake.waitForOutbox((entry) => entry.text === `Andy: pong ${i}`, STEP_TIMEOUT_MS);
      return performance.now() - started;
    };

    // The first message starts the container; the samples are follow-ups into it, warm.
    const cold = await roundTrip(0);
    report(`first message (cold container, not counted): ${cold.toFixed(0)} ms`);
    const warm: number[] = [];
    for (let i = 1; i <= samples; i++) {
      await sleep(SAMPLE_GAP_MS);
      warm.push(await roundTrip(i));
    }
    report(`contact → decrypted reply, warm container: ${describe(warm)}`);
    const errors = fake.protocolErrors();
    if (errors.length > 0) {
      throw new Error(
        `the fake WhatsApp server saw protocol errors: ${errors.map((e) => e.message).join('; ')}`,
      );
    }

    return [
      row('WhatsApp contact→reply warm, median', quantile(warm, 0.5), MEDIAN_TARGET_MS),
      row('WhatsApp contact→reply warm, p90', quantile(warm, 0.9), P90_TARGET_MS),
    ];
  } finally {
    await core.shutdown(5_000);
    store.close();
    await fake.close();
    await anthropic.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
}

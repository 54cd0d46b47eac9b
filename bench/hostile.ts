/**
 * The attacks issue 6 measured, run again against the host: the real runner in a real
 * container, made by the fake model to forge frames on its own stdout, stop itself, or spam.
 * Each row is a figure from the "before" list, measured now (test/helpers/hostile.ts
 * is the lab; test/e2e/hostile-agent.test.ts asserts the same behaviour).
 */
import { startFakeAnthropic } from '../test/fakes/anthropic-api.js';
import { ensureAgentImage } from '../test/helpers/clawbar.js';
import {
  ATTACKER,
  chatOf,
  ATTACKS,
  HOSTILE_API_KEY,
  HostileLab,
  storeBytes,
} from '../test/helpers/hostile.js';
import type { BenchRow } from './row.js';

const MB = 1024 * 1024;

function row(name: string, value: number, unit: string, target: number): BenchRow {
  return { name, value: Math.round(value * 10) / 10, unit, target, met: value <= target };
}

export async function hostileBench(
  opts: { log?: (line: string) => void } = {},
): Promise<BenchRow[]> {
  const report = opts.log ?? (() => {});
  await ensureAgentImage();
  const fake = await startFakeAnthropic({ apiKey: HOSTILE_API_KEY });
  const lab = new HostileLab(fake);
  const rows: BenchRow[] = [];
  try {
    // 5000 forged 1 MB output frames. Before: serve grew to 4.4 GB and died; 100 of them put
    // 100 messages in the chat and 189 MB in the database.
    {
      const h = await lab.twoGroups();
      lab.scriptAttack(ATTACKS.outputFlood);
      const rssBefore = process.memoryUsage().rss;
      let rssPeak = rssBefore;
      const sampler = setInterval(() => {
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }, 20);
      const attack = await lab.attack(h);
      clearInterval(sampler);
      const stored = (await chatOf(h, ATTACKER)).filter((line) => line.includes('xxxx')).length;
      report(`output flood: ${attack.result.error ?? 'run did not fail'}`);
      rows.push(
        row('output flood: host memory growth (peak RSS)', (rssPeak - rssBefore) / MB, 'MB', 300),
        row('output flood: forged replies stored', stored, 'count', 0),
        row('output flood: database size', storeBytes(h) / MB, 'MB', 5),
        row('output flood: other group answered in', attack.bystanderMs, 'ms', 5_000),
      );
      await lab.closeAll();
    }

    // 300 forged model requests, max_tokens 32000, and one with a url image. Before: all 300
    // in flight at once, the url reached the API, usage taken from the container.
    {
      const h = await lab.twoGroups();
      lab.scriptAttack(ATTACKS.modelFlood);
      const attack = await lab.attack(h);
      const bodies = fake.requests.map((r) => JSON.stringify(r.body));
      report(`model flood: ${attack.result.error ?? 'run did not fail'}`);
      rows.push(
        row(
          'model flood: forged calls that reached the API (of 300)',
          bodies.filter((b) => b.includes('EVIL')).length,
          'count',
          1,
        ),
        row(
          'model flood: url sources that reached the API',
          bodies.filter((b) => b.includes('attacker.example')).length,
          'count',
          0,
        ),
        row(
          'model flood: largest max_tokens sent to the API',
          Math.max(...fake.requests.map((r) => r.body.max_tokens)),
          'tokens',
          8192,
        ),
      );
      await lab.closeAll();
    }

    // 500 forged send_message calls. Before: all delivered in 2 s.
    {
      const h = await lab.twoGroups();
      lab.scriptAttack(ATTACKS.sendFlood);
      await lab.attack(h);
      const spam = (await chatOf(h, ATTACKER)).filter((line) => line.startsWith('bot: spam'));
      rows.push(row('send flood: forged messages delivered (of 500)', spam.length, 'count', 5));
      await lab.closeAll();
    }

    // A runner stopped with SIGSTOP while a background job writes a blank line to its stdout.
    // Before: "busy" past the 15-minute timeout, for good. Here the silence timeout is 4 s.
    {
      const h = await lab.twoGroups({ hardTimeoutMs: 4_000 });
      let started = 0;
      let held = 0;
      h.core.events.on('run:started', (e) => {
        if (e.groupJid === h.jidOf(ATTACKER)) started = Date.now();
      });
      h.core.events.on('run:finished', (e) => {
        if (e.groupJid === h.jidOf(ATTACKER)) held = Date.now() - started;
      });
      lab.scriptAttack(ATTACKS.stoppedRunner);
      const attack = await lab.attack(h);
      report(`stopped runner: ${attack.result.error ?? 'run did not fail'}`);
      rows.push(
        row('stopped runner: slot held (silence timeout 4 s)', held, 'ms', 8_000),
        row(
          'stopped runner: retries',
          attack.runs.filter((r) => r.group === ATTACKER).length - 1,
          'count',
          0,
        ),
      );
      await lab.closeAll();
    }
    return rows;
  } finally {
    await lab.closeAll();
    await fake.close();
  }
}

/**
 * `npm run bench`: runs each benchmark, prints a table and writes bench/results.json, an array
 * of `{ name, value, unit, target, met }`, one row per figure.
 *
 *   npm run bench                                   every benchmark
 *   npm run build && node --import tsx bench/index.ts cli-start    only the ones named
 *
 * A benchmark that fails is reported and the others still run; the exit code is then 1.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchRow } from './row.js';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results.json');

interface Benchmark {
  name: string;
  run(log: (line: string) => void): Promise<BenchRow[]>;
}

// Each is imported when it runs, so one that cannot load (say, the core mid-refactor) is
// reported as failed and the others still run.
const BENCHMARKS: Benchmark[] = [
  // First, so that the latency bench's containers do not share the CPU with it.
  {
    name: 'cli-start',
    run: async (log) => (await import('./cli-start.js')).cliStartBench({ log }),
  },
  // Real-time timers: also before any container shares the CPU with it.
  {
    name: 'scheduler',
    run: async (log) => (await import('./scheduler.js')).schedulerBench({ log }),
  },
  {
    name: 'latency',
    run: async (log) => (await import('./latency.js')).latencyBench({ log }),
  },
  {
    name: 'first-run',
    run: async (log) => (await import('./first-run.js')).firstRunBench({ log }),
  },
  {
    name: 'hostile',
    run: async (log) => (await import('./hostile.js')).hostileBench({ log }),
  },
  {
    name: 'whatsapp',
    run: async (log) => (await import('./whatsapp.js')).whatsappBench({ log }),
  },
  {
    name: 'cache',
    run: async (log) => (await import('./cache.js')).cacheBench({ log }),
  },
];

/** Units whose figure is good at or above its target; for every other unit, at or below. */
const AT_LEAST_UNITS = new Set(['% cache reads']);

function table(rows: BenchRow[]): string {
  const header = ['benchmark', 'value', 'target', 'met'];
  const lines = rows.map((r) => [
    r.name,
    `${r.value} ${r.unit}`,
    `${r.unit === 'ratio' ? '<' : AT_LEAST_UNITS.has(r.unit) ? '≥' : '≤'} ${r.target} ${r.unit}`,
    r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) =>
    cells.map((c, i) => (i === 1 || i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)));
  return [header, widths.map((w) => '-'.repeat(w)), ...lines]
    .map((cells, i) => (i === 1 ? cells : format(cells)).join('  ').trimEnd())
    .join('\n');
}

async function main(only: string[]): Promise<number> {
  const unknown = only.filter((name) => !BENCHMARKS.some((b) => b.name === name));
  if (unknown.length > 0) {
    console.error(
      `unknown benchmark ${unknown.join(', ')}; known: ${BENCHMARKS.map((b) => b.name).join(', ')}`,
    );
    return 2;
  }
  const selected = only.length ? BENCHMARKS.filter((b) => only.includes(b.name)) : BENCHMARKS;
  const rows: BenchRow[] = [];
  let failed = false;
  for (const bench of selected) {
    console.log(`${bench.name}…`);
    try {
      rows.push(...(await bench.run((line) => console.log(`  ${line}`))));
    } catch (err) {
      failed = true;
      console.error(`  ${bench.name} failed:`, err);
    }
  }
  fs.writeFileSync(RESULTS, `${JSON.stringify(rows, null, 2)}\n`);
  console.log(`\n${table(rows)}\n\nwrote ${path.relative(process.cwd(), RESULTS)}`);
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);

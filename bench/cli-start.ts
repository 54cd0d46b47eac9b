/**
 * CLI start-up cost: the CPU time (user + sys) of `node bin/clawbar.js --help` over that of
 * `node -e 0`, so the figure means the same on a fast machine and a slow one. CPU, not wall
 * time, because the CLI's cost is loading modules, and wall time mostly measures the machine's
 * load. Each side runs RUNS times inside one bash, whose `times` builtin reports the CPU its
 * children used: Node cannot read a finished child's rusage itself.
 *
 * Needs the built CLI (`npm run build`).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BenchRow } from './row.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'bin', 'clawbar.js');
/** `--help` may cost at most this many times a bare Node start. */
const TARGET_RATIO = 2;

// $1 is the run count, the rest is the command. The second line of `times` is the children's
// "user sys", as `0m1.234s 0m0.567s`.
const LOOP = 'n=$1; shift; for ((i = 0; i < n; i++)); do "$@" > /dev/null || exit 1; done; times';

function seconds(field: string): number {
  const match = /^(\d+)m([\d.]+)s$/.exec(field);
  if (!match) throw new Error(`unexpected field in bash's times output: "${field}"`);
  return Number(match[1]) * 60 + Number(match[2]);
}

/** CPU seconds per run of `command`, averaged over `runs` runs. */
export async function cpuSecondsPerRun(command: string[], runs: number): Promise<number> {
  const { stdout } = await promisify(execFile)(
    'bash',
    ['-c', LOOP, 'bench-loop', String(runs), ...command],
    { cwd: ROOT },
  );
  const children = stdout.trim().split('\n').at(-1)?.trim().split(/\s+/) ?? [];
  if (children.length !== 2) throw new Error(`unexpected output from bash's times: ${stdout}`);
  return (seconds(children[0] as string) + seconds(children[1] as string)) / runs;
}

export async function cliStartBench(
  opts: { runs?: number; log?: (line: string) => void } = {},
): Promise<BenchRow[]> {
  const runs = opts.runs ?? Number(process.env.BENCH_CLI_RUNS ?? 20);
  const report = opts.log ?? (() => {});
  if (!fs.existsSync(path.join(ROOT, 'dist', 'main', 'cli', 'index.js')))
    throw new Error('dist/main/cli/index.js is missing: run `npm run build` first');
  const node = process.execPath;
  // One untimed run each, so neither side pays for a cold file cache.
  await cpuSecondsPerRun([node, '-e', '0'], 1);
  await cpuSecondsPerRun([node, CLI, '--help'], 1);
  const bare = await cpuSecondsPerRun([node, '-e', '0'], runs);
  const help = await cpuSecondsPerRun([node, CLI, '--help'], runs);
  report(
    `CPU per run: node -e 0 ${(bare * 1000).toFixed(0)} ms, clawbar --help ${(help * 1000).toFixed(0)} ms (n=${runs})`,
  );
  const value = Number((help / bare).toFixed(2));
  return [
    {
      name: 'clawbar --help CPU ÷ node -e 0',
      value,
      unit: 'ratio',
      target: TARGET_RATIO,
      met: value < TARGET_RATIO,
    },
  ];
}

/**
 * The log file rotates by size and keeps a few generations (issue 7): real files in a temp
 * directory, real renames, real concurrent writers. And CLI commands log to their own file,
 * never into serve's.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withLocalCore } from '../../main/cli/local-core.js';
import { CLI_LOG_FILE, createLogger, LOG_FILE, type Logger } from '../../main/core/logger.js';
import { ROOT } from '../helpers/clawbar.js';

let scratch: string;
let logDir: string;
let file: string;
beforeEach(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-rotate-'));
  logDir = path.join(scratch, 'logs');
  file = path.join(logDir, LOG_FILE);
});
afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** The `seq` of every line of one log file, in order. */
function seqs(name: string): number[] {
  return fs
    .readFileSync(name, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { seq: number }).seq);
}

/** Logs lines numbered from 0, each about 100 bytes. */
function logLines(log: Logger, count: number, from = 0): void {
  for (let seq = from; seq < from + count; seq++) log.info({ seq, pad: 'x'.repeat(20) }, 'line');
}

/** The generations in the log directory, `clawbar.log.N`, by number. */
function generations(): number[] {
  return fs
    .readdirSync(logDir)
    .map((name) => /^clawbar\.log\.(\d+)$/.exec(name)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

describe('rotation by size', () => {
  it('renames the file to .1 once it passes the limit, and goes on in a new 0600 file, losing nothing', () => {
    const log = createLogger({ logDir, stderr: false, maxFileBytes: 1000 });
    logLines(log, 10);
    expect(generations()).toEqual([]);
    logLines(log, 10, 10);

    expect(generations()).toEqual([1]);
    const older = seqs(`${file}.1`);
    const newer = seqs(file);
    // Every line once, in order: the line that passed the limit ends the old file.
    expect([...older, ...newer]).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(fs.statSync(`${file}.1`).size).toBeGreaterThanOrEqual(1000);
    expect(fs.statSync(`${file}.1`).size).toBeLessThan(1200);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(`${file}.rotating`)).toBe(false);
  });

  it('keeps only as many generations as asked, dropping the oldest', () => {
    const log = createLogger({ logDir, stderr: false, maxFileBytes: 1000, keepFiles: 3 });
    logLines(log, 200);

    expect(generations()).toEqual([1, 2, 3]);
    // The newest lines, in order across the generations, with no gap at any boundary.
    const kept = [...seqs(`${file}.3`), ...seqs(`${file}.2`), ...seqs(`${file}.1`), ...seqs(file)];
    expect(kept.at(-1)).toBe(199);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => kept[0]! + i));
    for (const n of [1, 2, 3]) expect(fs.statSync(`${file}.${n}`).mode & 0o777).toBe(0o600);
  });

  it('rotates at the first line a file an older version left too big', () => {
    fs.mkdirSync(logDir, { mode: 0o700 });
    fs.writeFileSync(file, `${JSON.stringify({ seq: -1, pad: 'y'.repeat(5000) })}\n`, {
      mode: 0o600,
    });
    const log = createLogger({ logDir, stderr: false, maxFileBytes: 1000 });
    logLines(log, 2);
    expect(seqs(`${file}.1`)).toEqual([-1, 0]);
    expect(seqs(file)).toEqual([1]);
  });

  it('never writes through a link planted at clawbar.log.1: the link is replaced', () => {
    fs.mkdirSync(logDir, { mode: 0o700 });
    const target = path.join(scratch, 'precious.txt');
    fs.writeFileSync(target, 'untouched');
    fs.symlinkSync(target, `${file}.1`);
    const log = createLogger({ logDir, stderr: false, maxFileBytes: 1000, keepFiles: 1 });
    logLines(log, 40);

    expect(fs.readFileSync(target, 'utf8')).toBe('untouched');
    expect(fs.lstatSync(`${file}.1`).isFile()).toBe(true);
    expect(fs.lstatSync(file).isFile()).toBe(true);
    expect(seqs(`${file}.1`).length).toBeGreaterThan(0);
  });

  it('moves a link at an older generation along without following it', () => {
    fs.mkdirSync(logDir, { mode: 0o700 });
    const target = path.join(scratch, 'precious.txt');
    fs.writeFileSync(target, 'untouched');
    fs.symlinkSync(target, `${file}.1`);
    const log = createLogger({ logDir, stderr: false, maxFileBytes: 1000, keepFiles: 3 });
    logLines(log, 12);

    expect(fs.readFileSync(target, 'utf8')).toBe('untouched');
    expect(fs.lstatSync(`${file}.1`).isFile()).toBe(true);
    expect(fs.lstatSync(`${file}.2`).isSymbolicLink()).toBe(true);
  });

  it('says once on stderr that it cannot rotate, and goes on logging into the file', () => {
    fs.mkdirSync(logDir, { mode: 0o700 });
    // Nothing can be renamed onto a directory that holds something.
    fs.mkdirSync(`${file}.1`);
    fs.writeFileSync(path.join(`${file}.1`, 'keep'), '');
    const stderrFile = path.join(scratch, 'stderr.log');
    const stderrFd = fs.openSync(stderrFile, 'w');
    try {
      const log = createLogger({
        logDir,
        stderrFd,
        isTTY: false,
        env: {},
        maxFileBytes: 1000,
        keepFiles: 1,
      });
      logLines(log, 60);
    } finally {
      fs.closeSync(stderrFd);
    }
    const notices = fs
      .readFileSync(stderrFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { msg: string; err?: { code?: string } })
      .filter((entry) => entry.msg.includes('could not be rotated'));
    expect(notices).toEqual([
      expect.objectContaining({
        msg: `the log file ${file} could not be rotated; logging goes on in it, and rotation is tried again as it grows`,
        err: expect.objectContaining({
          code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST)$/),
        }),
      }),
    ]);
    expect(seqs(file)).toEqual(Array.from({ length: 60 }, (_, i) => i));
  });

  it('lets two processes append and rotate the same file without losing or tearing a line', async () => {
    const script = path.join(scratch, 'writer.ts');
    const lines = 1500;
    const go = path.join(scratch, 'go');
    fs.writeFileSync(
      script,
      [
        `import fs from 'node:fs';`,
        `import { createLogger } from ${JSON.stringify(path.join(ROOT, 'main/core/logger.ts'))};`,
        `const log = createLogger({ logDir: ${JSON.stringify(logDir)}, stderr: false, maxFileBytes: 4000, keepFiles: 1000 });`,
        `const who = process.argv[2];`,
        // Both start writing at once, so their lines and rotations really interleave.
        `process.stdout.write('ready\\n');`,
        `while (!fs.existsSync(${JSON.stringify(go)})) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);`,
        `for (let seq = 0; seq < ${lines}; seq++) log.info({ who, seq, pad: 'z'.repeat(seq % 50) }, 'line');`,
      ].join('\n'),
    );
    const start = (who: string) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, who], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const ready = new Promise<void>((resolve, reject) => {
        child.once('error', reject);
        child.stdout?.once('data', () => resolve());
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { ready, exited };
    };
    const writers = [start('a'), start('b')];
    await Promise.all(writers.map((w) => w.ready));
    fs.writeFileSync(go, '');
    expect(await Promise.all(writers.map((w) => w.exited))).toEqual([0, 0]);

    const seen = { a: [] as number[], b: [] as number[] };
    let shared = 0;
    for (const name of fs.readdirSync(logDir)) {
      if (!name.startsWith(LOG_FILE)) continue;
      const writers = new Set<string>();
      for (const line of fs.readFileSync(path.join(logDir, name), 'utf8').split('\n')) {
        if (!line) continue;
        const entry = JSON.parse(line) as { who: 'a' | 'b'; seq: number };
        seen[entry.who].push(entry.seq);
        writers.add(entry.who);
      }
      if (writers.size === 2) shared += 1;
    }
    // They did write at the same time: files hold lines of both.
    expect(shared).toBeGreaterThan(0);
    const all = Array.from({ length: lines }, (_, i) => i);
    expect(seen.a.sort((x, y) => x - y)).toEqual(all);
    expect(seen.b.sort((x, y) => x - y)).toEqual(all);
    expect(generations().length).toBeGreaterThan(5);
    expect(fs.existsSync(`${file}.rotating`)).toBe(false);
  }, 60_000);

  it('refuses limits that are not whole numbers', () => {
    expect(() => createLogger({ logDir, stderr: false, maxFileBytes: 0 })).toThrow(RangeError);
    expect(() => createLogger({ logDir, stderr: false, keepFiles: 1.5 })).toThrow(
      'keepFiles must be a whole number of at least 1, got 1.5',
    );
  });
});

describe('CLI commands', () => {
  let savedHome: string | undefined;
  beforeEach(() => {
    savedHome = process.env.CLAWBAR_HOME;
  });
  afterEach(() => {
    if (savedHome === undefined) delete process.env.CLAWBAR_HOME;
    else process.env.CLAWBAR_HOME = savedHome;
  });

  it('log to logs/cli.log, never into serve’s clawbar.log', async () => {
    const home = path.join(scratch, 'home');
    // Left open to others, so booting the core has something to log: it makes it private.
    fs.mkdirSync(home, { mode: 0o755 });
    fs.chmodSync(home, 0o755);
    fs.mkdirSync(logDir.replace(scratch, home), { mode: 0o700 });
    const servesLog = path.join(home, 'logs', LOG_FILE);
    fs.writeFileSync(servesLog, '{"msg":"serve was here"}\n', { mode: 0o600 });
    process.env.CLAWBAR_HOME = home;

    const groups = await withLocalCore((control) => control.request('groups.list', {}));

    expect(groups).toEqual([]);
    expect(fs.readFileSync(servesLog, 'utf8')).toBe('{"msg":"serve was here"}\n');
    const cliLog = fs.readFileSync(path.join(home, 'logs', CLI_LOG_FILE), 'utf8');
    expect(cliLog).toContain('data directory was open to other users; made it 0700');
    expect(fs.statSync(path.join(home, 'logs', CLI_LOG_FILE)).mode & 0o777).toBe(0o600);
  });
});

/**
 * The logger on a disk that fills up: a real tmpfs, really full. The log file is dropped, the
 * log goes on on stderr with one line that says so, and a process whose log cannot be written
 * still exits at once (pino's own exit flush retried ENOSPC for ever: issue 6).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../main/core/config.js';
import { createLogger, LOG_FILE, logLevel } from '../../main/core/logger.js';
import { ROOT } from '../helpers/clawbar.js';
import { fillDisk, mountTmpfs, requireTmpfs, type Tmpfs } from '../helpers/tmpfs.js';

let scratch: string;
beforeEach(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-log-'));
});
afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

function lines(file: string): Array<Record<string, unknown>> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('log file permissions', () => {
  it('creates the log file 0600 in a 0700 directory', () => {
    const logDir = path.join(scratch, 'logs');
    createLogger({ logDir, stderr: false }).info('hello');
    expect(fs.statSync(logDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(logDir, LOG_FILE)).mode & 0o777).toBe(0o600);
    expect(lines(path.join(logDir, LOG_FILE)).map((l) => l.msg)).toEqual(['hello']);
  });

  it('makes a log directory and file an older version left readable private', () => {
    const logDir = path.join(scratch, 'logs');
    fs.mkdirSync(logDir, { mode: 0o755 });
    fs.chmodSync(logDir, 0o755);
    fs.writeFileSync(path.join(logDir, LOG_FILE), '', { mode: 0o644 });
    fs.chmodSync(path.join(logDir, LOG_FILE), 0o644);
    createLogger({ logDir, stderr: false }).info('hello');
    expect(fs.statSync(logDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(logDir, LOG_FILE)).mode & 0o777).toBe(0o600);
  });

  it('never writes the log through a link planted where the file should be', () => {
    const logDir = path.join(scratch, 'logs');
    fs.mkdirSync(logDir, { mode: 0o700 });
    const target = path.join(scratch, 'elsewhere.txt');
    fs.writeFileSync(target, 'untouched');
    fs.symlinkSync(target, path.join(logDir, LOG_FILE));
    const stderrFile = path.join(scratch, 'stderr.log');
    const stderrFd = fs.openSync(stderrFile, 'w');
    try {
      createLogger({ logDir, stderrFd }).info('hello');
    } finally {
      fs.closeSync(stderrFd);
    }
    expect(fs.readFileSync(target, 'utf8')).toBe('untouched');
    const written = lines(stderrFile);
    expect(written[0]?.msg).toMatch(/could not be opened; logging continues on stderr only/);
    expect(written.map((l) => l.msg)).toContain('hello');
  });
});

requireTmpfs('the log on a full disk', () => {
  let disk: Tmpfs;
  beforeEach(() => {
    disk = mountTmpfs(1024 * 1024);
  });
  afterEach(() => disk.unmount());

  it('drops the log file when a write fails and goes on on stderr, saying so once', () => {
    const logDir = path.join(disk.dir, 'logs');
    const stderrFile = path.join(scratch, 'stderr.log');
    const stderrFd = fs.openSync(stderrFile, 'w');
    try {
      const log = createLogger({ logDir, stderrFd });
      log.info('before the disk filled');
      fillDisk(disk.dir);
      for (let i = 0; i < 5; i++) log.info({ i, pad: 'x'.repeat(8_000) }, 'while full');
      log.info('still logging');
    } finally {
      fs.closeSync(stderrFd);
    }
    const onStderr = lines(stderrFile);
    const drops = onStderr.filter((l) => String(l.msg).includes('could not be written'));
    expect(drops).toHaveLength(1);
    expect(drops[0]).toMatchObject({
      level: 40,
      file: path.join(logDir, LOG_FILE),
      err: expect.objectContaining({ code: 'ENOSPC' }),
      msg: `the log file ${path.join(logDir, LOG_FILE)} could not be written; logging continues on stderr only`,
    });
    expect(onStderr.map((l) => l.msg)).toEqual(
      expect.arrayContaining(['before the disk filled', 'while full', 'still logging']),
    );
    expect(onStderr.filter((l) => l.msg === 'while full')).toHaveLength(5);
    expect(fs.readFileSync(path.join(logDir, LOG_FILE), 'utf8')).toContain(
      'before the disk filled',
    );
  });

  it('lets a process exit at once when both its log file and its stderr are on the full disk', async () => {
    const logDir = path.join(disk.dir, 'logs');
    const script = path.join(scratch, 'log-and-exit.ts');
    fs.writeFileSync(
      script,
      [
        `import fs from 'node:fs';`,
        `import { createLogger } from ${JSON.stringify(path.join(ROOT, 'main/core/logger.ts'))};`,
        `const log = createLogger({ logDir: ${JSON.stringify(logDir)} });`,
        `log.info('started');`,
        `const fd = fs.openSync(${JSON.stringify(path.join(disk.dir, 'filler.bin'))}, 'a');`,
        `const chunk = Buffer.alloc(65536, 0x5a);`,
        `try { for (;;) fs.writeSync(fd, chunk); } catch {}`,
        `try { for (;;) fs.writeSync(fd, Buffer.alloc(512, 0x5a)); } catch {}`,
        `for (let i = 0; i < 200; i++) log.info({ i }, 'logging into a full disk');`,
        `process.stdout.write('exiting\\n');`,
        `process.exit(0);`,
      ].join('\n'),
    );
    // stderr is a file on the same full disk, as with `serve 2>>$CLAWBAR_HOME/serve.log`.
    const stderrFd = fs.openSync(path.join(disk.dir, 'stderr.log'), 'w');
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', stderrFd],
    });
    fs.closeSync(stderrFd);
    let stdout = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      // Generous: the bug this guards against never exits at all.
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', (exitCode) => {
        clearTimeout(timer);
        resolve(exitCode);
      });
    });
    expect(stdout).toBe('exiting\n');
    expect(code).toBe(0);
  }, 30_000);
});

describe('LOG_LEVEL', () => {
  it('takes a known level in any case, defaults to info, and refuses others in one line', () => {
    expect(logLevel(undefined)).toBe('info');
    expect(logLevel('  ')).toBe('info');
    expect(logLevel('DEBUG')).toBe('debug');
    expect(() => logLevel('bogus')).toThrow(ConfigError);
    expect(() => logLevel('bogus')).toThrow(
      'LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent; got "bogus"',
    );
    expect(() => createLogger({ level: 'loud', stderr: false })).toThrow(/^LOG_LEVEL must be/);
  });
});

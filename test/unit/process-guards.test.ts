import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { ROOT } from '../helpers/clawbar.js';

/** Runs a module body in a fresh Node process (with tsx) and collects its output. */
function runScript(
  script: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const guards = pathToFileURL(path.join(ROOT, 'main/core/process-guards.ts')).href;
const logger = pathToFileURL(path.join(ROOT, 'main/core/logger.ts')).href;

it('a rejection nobody handled is logged as a bug and the process keeps running', async () => {
  const run = await runScript(`
    const { installProcessGuards } = await import(${JSON.stringify(guards)});
    const { createLogger } = await import(${JSON.stringify(logger)});
    installProcessGuards(createLogger({ stderr: true }));
    void Promise.reject(new Error('a forgotten kill() failure'));
    setTimeout(() => process.stdout.write('still alive\\n'), 100);
  `);
  expect(run.code).toBe(0);
  expect(run.stdout).toContain('still alive');
  expect(run.stderr).toContain('unhandled promise rejection');
  expect(run.stderr).toContain('a forgotten kill() failure');
}, 30_000);

it('without the guards, the same rejection ends the process (so the guard is what saves it)', async () => {
  const run = await runScript(`
    void Promise.reject(new Error('a forgotten kill() failure'));
    setTimeout(() => console.log('still alive'), 100);
  `);
  expect(run.code).not.toBe(0);
  expect(run.stdout).not.toContain('still alive');
}, 30_000);

it("a library's console lines become log lines with their text only: no session keys reach the output", async () => {
  // What libsignal does under Baileys: console.info("Closing session:", session), where the
  // session record holds private ratchet keys.
  const run = await runScript(`
    const { installProcessGuards } = await import(${JSON.stringify(guards)});
    const { createLogger } = await import(${JSON.stringify(logger)});
    installProcessGuards(createLogger({ stderr: true, level: 'debug' }));
    class SessionEntry {
      constructor() {
        this.currentRatchet = { ephemeralKeyPair: { privKey: Buffer.from('PRIVATEKEYBYTES1') } };
        this.rootKey = 'ROOTKEYSECRET';
      }
    }
    console.info('Closing session:', new SessionEntry());
    console.warn('Closing open session in favor of incoming prekey bundle');
    console.log('%s of %d', 'one', 2);
  `);
  expect(run.code).toBe(0);
  const output = run.stdout + run.stderr;
  expect(output).not.toMatch(/PRIVATEKEYBYTES1|50 52 49|ROOTKEYSECRET|privKey/);
  const lines = run.stderr
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { level: number; mod: string; msg: string });
  expect(lines).toEqual([
    expect.objectContaining({ level: 20, mod: 'console', msg: 'Closing session: [SessionEntry]' }),
    expect.objectContaining({
      level: 40,
      mod: 'console',
      msg: 'Closing open session in favor of incoming prekey bundle',
    }),
    expect.objectContaining({ level: 20, mod: 'console', msg: 'one of 2' }),
  ]);
  expect(run.stdout).toBe('');
}, 30_000);

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
    setTimeout(() => console.log('still alive'), 100);
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

/**
 * AgentRun's run log and extra mounts, without Docker: a scripted runner as a plain child
 * process through {@link ProcessRuntime}, over a real SQLite file in a temp home.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it, vi } from 'vitest';

import type { AgentRun } from '../../main/core/agent/agent-run.js';
import { HostTools } from '../../main/core/agent/host-tools.js';
import { runLogsRoot } from '../../main/core/agent/run-log.js';
import { CoreEventBus } from '../../main/core/events.js';
import { formatOutbound } from '../../main/core/router.js';
import { mountAllowlistPath } from '../../main/core/sandbox/mount-allowlist.js';
import { agentRunHome, type AgentRunHome } from '../helpers/agent-run.js';
import { ProcessRuntime } from '../helpers/process-runtime.js';
import { scriptedRunner } from '../helpers/scripted-runner.js';

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function setUp(): { home: AgentRunHome; runtime: ProcessRuntime; start(): AgentRun } {
  const home = agentRunHome('clawbar-runlog-run-', 'UTC');
  const runtime = new ProcessRuntime();
  const outbox = { notify: () => undefined, whenSettled: async () => undefined };
  const hostTools = new HostTools({
    store: home.store,
    outbox: outbox as never,
    formatOutbound,
    now: Date.now,
    log: home.log,
  });
  const broker = {
    complete: async () => {
      throw new Error('this runner makes no model calls');
    },
  };
  cleanups.push(async () => {
    await home.stopRuns();
    await runtime.cleanup();
    home.close();
  });
  const start = (): AgentRun =>
    home.run({ runtime, broker, hostTools, outbox, events: new CoreEventBus() });
  return { home, runtime, start };
}

/** The one run log file of the Family group. */
function onlyRunLog(home: AgentRunHome): string {
  const dir = path.join(runLogsRoot(home.dir), 'family');
  const files = fs.readdirSync(dir);
  expect(files).toHaveLength(1);
  return fs.readFileSync(path.join(dir, files[0] as string), 'utf8');
}

describe('AgentRun run log', () => {
  it('writes the exit code, the image, the mounts and the redacted stderr tail when the run ends', async () => {
    const { home, start, runtime } = setUp();
    home.post('@Andy hi');
    const key = `sk-ant-api03-${'k'.repeat(30)}`;
    runtime.useScript(
      scriptedRunner({
        onPrompt: `process.stderr.write('runner saw ${key}\\nabout to fail\\n', () => process.exit(3));`,
      }),
    );
    const outcome = await start().finished;
    expect(outcome).toMatchObject({ ok: false, failure: 'retry' });
    const text = onlyRunLog(home);
    expect(text).toContain('exit code:  3');
    expect(text).toContain('image:      unused');
    expect(text).toContain('work:       messages');
    expect(text).toMatch(/outcome: {4}failed \(retry\): the agent container exited \(code 3\)/);
    expect(text).toContain(
      `  ${path.join(home.config.groupsDir, 'family')} -> /workspace/group (rw)`,
    );
    expect(text).toContain(`  ${home.config.globalDir} -> /workspace/global (ro)`);
    expect(text).toContain('about to fail');
    expect(text).not.toContain(key);
    // Out of the container's reach: nothing was written into the group folder's logs/.
    expect(fs.existsSync(path.join(home.config.groupsDir, 'family', 'logs'))).toBe(false);
  });

  it('says why a run was stopped from outside, rather than calling the kill a failure', async () => {
    const { home, start, runtime } = setUp();
    home.post('@Andy hi');
    // The runner takes the prompt and then works on it for as long as it is let.
    runtime.useScript(scriptedRunner({ onPrompt: 'setInterval(() => undefined, 1_000);' }));
    const run = start();
    await vi.waitFor(() => expect(runtime.started).toHaveLength(1));
    await run.kill('the daily budget is reached');
    await run.finished;
    const text = onlyRunLog(home);
    expect(text).toMatch(/outcome: {4}stopped: the daily budget is reached\n/);
    expect(text).not.toContain('failed (');
  });

  it('mounts the extra folders the allowlist grants, skips the refused ones, and logs both', async () => {
    const { home, start, runtime } = setUp();
    const outside = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-extra-')));
    cleanups.push(() => fs.rmSync(outside, { recursive: true, force: true }));
    fs.mkdirSync(path.join(outside, 'docs'));
    fs.mkdirSync(path.join(outside, '.aws'));
    fs.writeFileSync(
      mountAllowlistPath(home.dir),
      JSON.stringify({ roots: [{ path: outside, allowReadWrite: true }] }),
    );
    home.store.updateGroupSettings(home.group.jid, {
      extraMounts: [
        { hostPath: path.join(outside, 'docs'), readonly: false },
        { hostPath: path.join(outside, '.aws') },
      ],
    });
    home.post('@Andy hi');
    runtime.useScript(scriptedRunner({ onPrompt: 'process.exit(0);' }));
    await start().finished;

    // A non-main group: read-only, whatever it asked (nonMainReadOnly defaults to on).
    expect(runtime.started[0]?.spec.mounts.slice(2)).toEqual([
      {
        hostPath: path.join(outside, 'docs'),
        containerPath: '/workspace/extra/docs',
        readOnly: true,
      },
    ]);
    const text = onlyRunLog(home);
    expect(text).toContain(`  ${path.join(outside, 'docs')} -> /workspace/extra/docs (ro)`);
    expect(text).toMatch(/refused mounts:\n {2}.*\.aws: .*secret-bearing/);
  });

  it('with no allowlist file, a requested mount is refused with the reason and the run goes on', async () => {
    const { home, start, runtime } = setUp();
    home.store.updateGroupSettings(home.group.jid, { extraMounts: [{ hostPath: os.tmpdir() }] });
    home.post('@Andy hi');
    runtime.useScript(scriptedRunner({ onPrompt: 'process.exit(0);' }));
    await start().finished;
    expect(runtime.started).toHaveLength(1);
    expect(runtime.started[0]?.spec.mounts).toHaveLength(2);
    expect(onlyRunLog(home)).toContain('there is no mount allowlist');
  });

  it('keeps only the newest run logs of the group', async () => {
    const { home, start, runtime } = setUp();
    runtime.useScript(scriptedRunner({ onPrompt: 'process.exit(0);' }));
    const dir = path.join(runLogsRoot(home.dir), 'family');
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 50; i++) {
      fs.writeFileSync(
        path.join(dir, `2000-01-01T00-00-${String(i).padStart(2, '0')}-000Z-00000000.log`),
        '',
      );
    }
    home.post('@Andy hi');
    await start().finished;
    const files = fs.readdirSync(dir).sort();
    expect(files).toHaveLength(50);
    expect(files[0]).toBe('2000-01-01T00-00-01-000Z-00000000.log');
    expect(files.at(-1)).toMatch(/^\d{4}-.*Z-[0-9a-f]{8}\.log$/);
    expect(files.at(-1)?.startsWith('2000')).toBe(false);
  });
});

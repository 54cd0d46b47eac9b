import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  RUN_LOG_STDERR_CHARS,
  formatRunLog,
  rotateRunLogs,
  runLogName,
  runLogsRoot,
  writeRunLog,
  type RunLogRecord,
} from '../../main/core/agent/run-log.js';
import { UnsafePathError } from '../../main/core/safe-fs.js';
import { InvalidFolderNameError } from '../../main/core/sandbox/mounts.js';

const START = Date.UTC(2025, 0, 2, 9, 30, 0, 0);

function record(overrides: Partial<RunLogRecord> = {}): RunLogRecord {
  return {
    runId: '1a2b3c4d-0000-4000-8000-000000000000',
    group: { name: 'Family', folder: 'family', jid: 'local:family' },
    work: 'messages',
    image: 'clawbar-agent:latest',
    container: 'clawbar-family-1a2b3c4d',
    startedAt: START,
    endedAt: START + 12_345,
    exitCode: 0,
    turns: 2,
    outcome: { ok: true },
    mounts: [
      { hostPath: '/data/groups/family', containerPath: '/workspace/group', readOnly: false },
      { hostPath: '/data/groups/global', containerPath: '/workspace/global', readOnly: true },
    ],
    refusedMounts: [],
    stderr: 'runner: ready\n',
    ...overrides,
  };
}

describe('run log', () => {
  let home: string;
  let root: string;

  beforeEach(() => {
    home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-runlog-')));
    root = runLogsRoot(home);
  });

  afterEach(() => {
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('goes to logs/runs/<folder> on the host, outside the group folder the container mounts', () => {
    const file = writeRunLog(root, record());
    expect(file).toBe(
      path.join(home, 'logs', 'runs', 'family', '2025-01-02T09-30-00-000Z-1a2b3c4d.log'),
    );
    expect(file.startsWith(path.join(home, 'groups'))).toBe(false);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });

  it('records image, mounts with their modes, exit code, duration, times, outcome and stderr', () => {
    const text = fs.readFileSync(
      writeRunLog(
        root,
        record({
          refusedMounts: [{ hostPath: '~/.ssh', reason: 'secret-bearing' }],
          mounts: [
            ...record().mounts,
            { hostPath: '/home/u/app', containerPath: '/workspace/extra/app', readOnly: true },
          ],
        }),
      ),
      'utf8',
    );
    expect(text).toContain('run:        1a2b3c4d-0000-4000-8000-000000000000');
    expect(text).toContain('image:      clawbar-agent:latest');
    expect(text).toContain('started:    2025-01-02T09:30:00.000Z');
    expect(text).toContain('ended:      2025-01-02T09:30:12.345Z');
    expect(text).toContain('duration:   12.3 s');
    expect(text).toContain('exit code:  0');
    expect(text).toContain('outcome:    ok');
    expect(text).toContain('  /data/groups/family -> /workspace/group (rw)');
    expect(text).toContain('  /data/groups/global -> /workspace/global (ro)');
    expect(text).toContain('  /home/u/app -> /workspace/extra/app (ro)');
    expect(text).toContain('refused mounts:\n  ~/.ssh: secret-bearing');
    expect(text).toContain('stderr:\n  runner: ready\n');
  });

  it('a failed run that never started: no container, no exit code, the error', () => {
    const text = formatRunLog(
      record({
        container: null,
        exitCode: null,
        outcome: { ok: false, kind: 'not-ready', error: 'no engine\nat all' },
        stderr: '',
      }),
    );
    expect(text).toContain('container:  (not started)');
    expect(text).toContain('exit code:  (none)');
    expect(text).toContain('outcome:    failed (not-ready): no engine?at all');
    expect(text).toContain('stderr:\n  (empty)');
  });

  it('keeps only the end of stderr, redacted, with no terminal escapes', () => {
    const key = `sk-ant-api03-${'x'.repeat(40)}`;
    const stderr = `${'old line\n'.repeat(2000)}Authorization: Bearer abc123\nkey ${key}\n\u001b[2Jcleared\n`;
    const text = formatRunLog(record({ stderr }));
    expect(text).toContain(`stderr (its last ${RUN_LOG_STDERR_CHARS} characters):`);
    const tail = text.slice(text.indexOf('stderr ('));
    expect(tail.length).toBeLessThan(RUN_LOG_STDERR_CHARS * 1.5);
    expect(text).not.toContain('abc123');
    expect(text).not.toContain(key);
    expect(text).toContain('[redacted]');
    expect(text).not.toContain('\u001b');
    expect(text).toContain('?[2Jcleared');
  });

  it('rotates: keeps the newest N per group and leaves other files alone', () => {
    for (let i = 0; i < 7; i++) {
      writeRunLog(
        root,
        record({
          runId: `0000000${i}-aaaa`,
          startedAt: START + i * 60_000,
          endedAt: START + i * 60_000 + 1,
        }),
        { keep: 3 },
      );
    }
    fs.writeFileSync(path.join(root, 'family', 'notes.txt'), 'mine');
    const names = fs.readdirSync(path.join(root, 'family')).sort();
    expect(names).toEqual([
      runLogName({ startedAt: START + 4 * 60_000, runId: '00000004' }),
      runLogName({ startedAt: START + 5 * 60_000, runId: '00000005' }),
      runLogName({ startedAt: START + 6 * 60_000, runId: '00000006' }),
      'notes.txt',
    ]);
    expect(rotateRunLogs(path.join(root, 'family'), 1)).toHaveLength(2);
    writeRunLog(root, record({ group: { name: 'Other', folder: 'other', jid: 'local:other' } }));
    expect(fs.readdirSync(path.join(root, 'family'))).toHaveLength(2);
  });

  it('never writes through a link planted where the group folder or the file would be', () => {
    const target = path.join(home, 'target');
    fs.mkdirSync(target);
    fs.mkdirSync(root, { recursive: true });
    fs.symlinkSync(target, path.join(root, 'family'));
    expect(() => writeRunLog(root, record())).toThrow(UnsafePathError);
    expect(fs.readdirSync(target)).toEqual([]);

    fs.rmSync(path.join(root, 'family'));
    fs.mkdirSync(path.join(root, 'family'));
    const victim = path.join(home, 'victim');
    fs.writeFileSync(victim, 'keep');
    fs.symlinkSync(victim, path.join(root, 'family', runLogName(record())));
    expect(() => writeRunLog(root, record())).toThrow(UnsafePathError);
    expect(fs.readFileSync(victim, 'utf8')).toBe('keep');
  });

  it('refuses a folder name that is not one safe name', () => {
    expect(() =>
      writeRunLog(root, record({ group: { name: 'x', folder: '../x', jid: 'local:x' } })),
    ).toThrow(InvalidFolderNameError);
  });
});

/**
 * One log file per agent run: what ran (image, mounts), how it ended (exit code, outcome,
 * duration) and the tail of what the runner wrote to stderr. Old files rotate: the newest
 * {@link DEFAULT_RUN_LOGS_KEPT} per group stay.
 *
 * Where: `$CLAWBAR_HOME/logs/runs/<folder>/`, on the host, not in the group's own folder. The
 * group folder is the container's `/workspace/group`, read-write: an agent could read its run
 * logs there (learning host paths such as the user's home), and rewrite or delete them, which
 * makes them worthless as a record of what the agent did. It could also plant a link at
 * `logs/` to steer the host's writes. Out of its reach, the log stays the host's word.
 *
 * The file is written once, at the end of the run, with `O_CREAT|O_EXCL|O_NOFOLLOW`
 * (safe-fs.ts), mode 0600. Nothing secret goes in: no environment, mounts as paths and modes
 * only, and the stderr tail redacted (redact.ts) and bounded, with control characters shown
 * as `?` so reading the file in a terminal cannot be hijacked by escape sequences.
 */
import fs from 'node:fs';
import path from 'node:path';

import { redactSecrets } from '../redact.js';
import { ensureDirInside, writeFileNew } from '../safe-fs.js';
import { validateFolderName } from '../sandbox/mounts.js';
import type { Mount } from '../sandbox/runtime.js';

/** Run log files kept per group; older ones are removed when a new one is written. */
export const DEFAULT_RUN_LOGS_KEPT = 50;

/** The most of the runner's stderr (its end) a run log keeps. */
export const RUN_LOG_STDERR_CHARS = 4_000;

/** Where the run logs of the data root `home` live, one folder per group. */
export function runLogsRoot(home: string): string {
  return path.join(home, 'logs', 'runs');
}

/** What one run log records. */
export interface RunLogRecord {
  runId: string;
  group: { name: string; folder: string; jid: string };
  /** What the run worked on: chat `messages`, or a `task`. */
  work: string;
  image: string;
  /** The container's name; null when it never started. */
  container: string | null;
  /** Milliseconds since the epoch. */
  startedAt: number;
  endedAt: number;
  /** null when the container never started or its exit was not seen. */
  exitCode: number | null;
  turns: number;
  outcome: { ok: true } | { ok: false; kind: string; error: string };
  mounts: readonly Mount[];
  /** Extra mounts asked for and refused, with why. */
  refusedMounts: readonly { hostPath: string; reason: string }[];
  /** The runner's stderr, any length: the log keeps its end. */
  stderr: string;
}

/** Options of {@link writeRunLog}. */
export interface WriteRunLogOptions {
  /** @default {@link DEFAULT_RUN_LOGS_KEPT} */
  keep?: number;
}

/**
 * Writes the run's log into `<root>/<folder>/` and removes the oldest past `keep`. Returns the
 * new file's path. Throws on a folder name that is not a single safe name, or a link anywhere
 * from `root` down ({@link UnsafePathError}).
 */
export function writeRunLog(
  root: string,
  record: RunLogRecord,
  opts: WriteRunLogOptions = {},
): string {
  const folder = record.group.folder;
  validateFolderName(folder);
  const dir = ensureDirInside(root, folder, { mode: 0o700 });
  const name = runLogName(record);
  writeFileNew(root, `${folder}/${name}`, formatRunLog(record), { mode: 0o600 });
  rotateRunLogs(dir, opts.keep ?? DEFAULT_RUN_LOGS_KEPT);
  return path.join(dir, name);
}

/** Run log names start with the start time, so sorting by name sorts by time. */
const RUN_LOG_NAME = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z-[0-9a-f]{8}\.log$/;

/** `2024-05-01T09-30-00-000Z-1a2b3c4d.log`: the start time, then the run id's first 8 digits. */
export function runLogName(record: Pick<RunLogRecord, 'startedAt' | 'runId'>): string {
  const stamp = new Date(record.startedAt).toISOString().replace(/[:.]/g, '-');
  const id = record.runId
    .replace(/[^0-9a-f]/gi, '')
    .toLowerCase()
    .slice(0, 8)
    .padEnd(8, '0');
  return `${stamp}-${id}.log`;
}

/** Keeps the newest `keep` run logs in `dir`; files of other names are left alone. */
export function rotateRunLogs(dir: string, keep: number): string[] {
  const logs = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && RUN_LOG_NAME.test(e.name))
    .map((e) => e.name)
    .sort();
  const removed = logs.slice(0, Math.max(0, logs.length - keep));
  // unlink never follows a link at its last name, and only regular files were picked.
  for (const name of removed) fs.rmSync(path.join(dir, name), { force: true });
  return removed;
}

/** The log file's text: one `field: value` a line, then the stderr tail. */
export function formatRunLog(record: RunLogRecord): string {
  const durationMs = Math.max(0, record.endedAt - record.startedAt);
  const outcome = record.outcome.ok
    ? 'ok'
    : record.outcome.kind === 'stopped'
      ? `stopped: ${oneLine(record.outcome.error)}`
      : `failed (${record.outcome.kind}): ${oneLine(record.outcome.error)}`;
  const lines = [
    `run:        ${record.runId}`,
    `group:      ${oneLine(record.group.name)} (folder ${record.group.folder}, ${oneLine(record.group.jid)})`,
    `work:       ${oneLine(record.work)}`,
    `image:      ${oneLine(record.image)}`,
    `container:  ${record.container === null ? '(not started)' : oneLine(record.container)}`,
    `started:    ${new Date(record.startedAt).toISOString()}`,
    `ended:      ${new Date(record.endedAt).toISOString()}`,
    `duration:   ${(durationMs / 1000).toFixed(1)} s`,
    `exit code:  ${record.exitCode === null ? '(none)' : String(record.exitCode)}`,
    `turns:      ${record.turns}`,
    `outcome:    ${outcome}`,
    'mounts:',
    ...(record.mounts.length === 0
      ? ['  (none)']
      : record.mounts.map(
          (m) =>
            `  ${oneLine(m.hostPath)} -> ${oneLine(m.containerPath)} (${m.readOnly ? 'ro' : 'rw'})`,
        )),
  ];
  if (record.refusedMounts.length > 0) {
    lines.push(
      'refused mounts:',
      ...record.refusedMounts.map((m) => `  ${oneLine(m.hostPath)}: ${oneLine(m.reason)}`),
    );
  }
  const tail = stderrTail(record.stderr);
  lines.push(
    tail.clipped ? `stderr (its last ${RUN_LOG_STDERR_CHARS} characters):` : 'stderr:',
    ...(tail.text === '' ? ['  (empty)'] : tail.text.split('\n').map((l) => `  ${l}`)),
  );
  return `${lines.join('\n')}\n`;
}

/** The end of the stderr text, redacted, with control characters but tab and newline as `?`. */
function stderrTail(stderr: string): { text: string; clipped: boolean } {
  const clipped = stderr.length > RUN_LOG_STDERR_CHARS;
  // Redact before clipping too: a cut could halve a key and hide it from the pattern.
  const text = redactSecrets(redactSecrets(stderr).slice(-RUN_LOG_STDERR_CHARS))
    .replace(/\r\n?/g, '\n')
    .replace(/[^\P{Cc}\n\t]/gu, '?')
    .trimEnd();
  return { text, clipped };
}

/** A value for one line of the log: redacted, control characters as `?`. */
function oneLine(text: string): string {
  return redactSecrets(text).replace(/[\p{Cc}]/gu, '?');
}

/**
 * Writes a skipped suite down where the global setup's teardown (test/setup/global-docker.ts)
 * reads it, so a run that skipped suites ends with a loud warning instead of a quiet green.
 * No file without the global setup (a single file run with its own config): nothing is written.
 */
import fs from 'node:fs';
import { inject } from 'vitest';
import { DOCKER_SKIP_LOG_KEY, type SkippedPart } from '../setup/test-base.js';

export function recordSkip(part: SkippedPart, name: string, reason: string): void {
  const log = inject(DOCKER_SKIP_LOG_KEY) as string | undefined;
  if (!log) return;
  const clean = (text: string): string => text.replace(/[\t\n\r]+/g, ' ');
  fs.appendFileSync(log, `${part}\t${clean(name)}\t${clean(reason)}\n`);
}

/**
 * Memory templates (CLAUDE.md files) copied into the data folder.
 *
 * The target is a group's folder or the global memory: folders a container writes. A file that
 * is there already is the agent's own memory and stays as it is. A link in its place was put
 * there by the agent (issue 6: a main agent linked `global/CLAUDE.md` to a host path, and the
 * next CLI command, as root, created that host file): it is neither followed nor replaced, only
 * reported. Replacing it would be safe too, but the file is the agent's own; refusing to write
 * through it is the safe minimum, and a link left in place harms nothing once nobody follows it.
 */
import fs from 'node:fs';
import path from 'node:path';

import type { Logger } from './logger.js';
import { ensureDirInside, UnsafePathError, writeFileNew } from './safe-fs.js';

/** What {@link installTemplates} did, each path relative to the target folder. */
export interface TemplateReport {
  created: string[];
  /** Already there (the user's or agent's memory): left as it is. */
  kept: string[];
  /** A link or other non-file in the way: not followed, not replaced. */
  refused: Array<{ path: string; reason: string }>;
}

export interface InstallTemplatesOptions {
  /** Where a refused template is reported (a warning). @default none: see the returned report */
  log?: Logger;
}

/**
 * Copies templates that are missing at the target; never overwrites what the user edited, and
 * never follows a link that sits in the target folder or in its place. `targetDir`'s parent is
 * trusted (a host folder such as `$CLAWBAR_HOME/groups`); `targetDir` and below are not.
 */
export function installTemplates(
  templatesDir: string,
  targetDir: string,
  opts: InstallTemplatesOptions = {},
): TemplateReport {
  const report: TemplateReport = { created: [], kept: [], refused: [] };
  if (!fs.existsSync(templatesDir)) return report;
  const refuse = (rel: string, err: UnsafePathError): void => {
    report.refused.push({ path: rel, reason: err.message });
    opts.log?.warn(
      { target: targetDir, path: rel, reason: err.message },
      'memory template not installed: something the agent put in its place was left alone',
    );
  };
  try {
    ensureDirInside(path.dirname(targetDir), path.basename(targetDir));
  } catch (err) {
    if (!(err instanceof UnsafePathError)) throw err;
    refuse('.', err);
    return report;
  }
  copyMissing(templatesDir, targetDir, '', report, refuse);
  return report;
}

/** Copies the templates under `templatesDir/rel` that `targetDir/rel` lacks. */
function copyMissing(
  templatesDir: string,
  targetDir: string,
  rel: string,
  report: TemplateReport,
  refuse: (rel: string, err: UnsafePathError) => void,
): void {
  // The templates ship with the app: read them plainly. Only the target is untrusted.
  for (const entry of fs.readdirSync(path.join(templatesDir, rel), { withFileTypes: true })) {
    const entryRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
    try {
      if (entry.isDirectory()) {
        ensureDirInside(targetDir, entryRel);
        copyMissing(templatesDir, targetDir, entryRel, report, refuse);
      } else if (entry.isFile()) {
        const content = fs.readFileSync(path.join(templatesDir, entryRel));
        const outcome = writeFileNew(targetDir, entryRel, content, { mode: 0o644 });
        (outcome === 'created' ? report.created : report.kept).push(entryRel);
      }
    } catch (err) {
      if (!(err instanceof UnsafePathError)) throw err;
      refuse(entryRel, err);
    }
  }
}

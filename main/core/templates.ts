/** Memory templates (CLAUDE.md files) copied into the data folder. */
import fs from 'node:fs';
import path from 'node:path';

/** Copies templates that are missing at the target; never overwrites what the user edited. */
export function installTemplates(templatesDir: string, targetDir: string): void {
  if (!fs.existsSync(templatesDir)) return;
  fs.mkdirSync(targetDir, { recursive: true });
  for (const entry of fs.readdirSync(templatesDir, { withFileTypes: true })) {
    const from = path.join(templatesDir, entry.name);
    const to = path.join(targetDir, entry.name);
    if (entry.isDirectory()) installTemplates(from, to);
    else if (entry.isFile() && !fs.existsSync(to)) fs.copyFileSync(from, to);
  }
}

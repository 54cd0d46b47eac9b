/** Where Clawbar's shipped files are, whether run from a checkout or a package. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** The package root: the nearest folder above this module with Clawbar's package.json. */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      const { name } = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string };
      if (name === 'clawbar') return (cached = dir);
    }
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error('cannot find the Clawbar package root (package.json named "clawbar")');
    dir = parent;
  }
}

/** Memory templates copied on first run: `groups/global`, `groups/main`. */
export const templatesDir = (): string => path.join(packageRoot(), 'groups');

/** The agent image's build context. */
export const agentImageContext = (): string => path.join(packageRoot(), 'sandbox-images', 'agent');

/** The script that makes `clawbar-base:offline` with no registry (debootstrap, as root). */
export const offlineBaseScript = (): string =>
  path.join(packageRoot(), 'sandbox-images', 'offline-base.sh');

#!/usr/bin/env node
// Builds the parts of the Electron shell that tsc alone cannot:
// - the preload, bundled as CommonJS (a sandboxed preload cannot load ES modules), with
//   `electron` left external;
// - the renderer's script, bundled for the browser (it imports the contract's channel list);
// - the renderer page and its stylesheet, copied next to its script.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

try {
  await build({
    entryPoints: [path.join(root, 'preload/index.ts')],
    outfile: path.join(root, 'dist/preload/index.cjs'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    external: ['electron'],
    minify: true,
    logLevel: 'warning',
  });
  // The page's script, bundled with the browser bridge and the contract's channel list
  // (renderer/bridge.ts), over tsc's unbundled output: a page cannot import from ../preload.
  await build({
    entryPoints: [path.join(root, 'renderer/main.ts')],
    outfile: path.join(root, 'dist/renderer/main.js'),
    bundle: true,
    platform: 'browser',
    format: 'esm',
    minify: true,
    logLevel: 'warning',
  });
  mkdirSync(path.join(root, 'dist/renderer'), { recursive: true });
  // The page and its stylesheet, beside the script (the CSP allows no inline styles).
  for (const file of ['index.html', 'styles.css'])
    copyFileSync(path.join(root, 'renderer', file), path.join(root, 'dist/renderer', file));
  console.log('build-shell: dist/preload/index.cjs, dist/renderer/{main.js,index.html,styles.css}');
} catch (err) {
  console.error(`build-shell: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}

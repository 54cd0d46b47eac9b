#!/usr/bin/env node
// Bundles the in-container agent runner (sandbox-images/agent/runner) into one self-contained
// ES module, sandbox-images/agent/dist/runner.mjs, which the agent image copies in. zod and the
// shared protocol are bundled, so the image needs no node_modules and no npm install.
//
// The target is node18 because the offline base image (sandbox-images/offline-base.sh) carries
// Debian bookworm's Node 18; the registry base, node:22, runs the same file.
import { build } from 'esbuild';
import { statSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const entry = path.join(root, 'sandbox-images/agent/runner/index.ts');
const outfile = path.join(root, 'sandbox-images/agent/dist/runner.mjs');

try {
  await build({
    entryPoints: [entry],
    outfile,
    // Paths in the bundle's comments are relative to the package root wherever the build is run
    // from, so the same sources give the same bytes, and the image's runner hash (the label that
    // decides whether serve rebuilds the image) does not change with the working directory.
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    target: 'node18',
    format: 'esm',
    // Not minified: stack traces in container logs should name real functions.
    legalComments: 'none',
    sourcemap: false,
    logLevel: 'warning',
  });
} catch {
  // esbuild has already printed the errors.
  process.stderr.write('build-runner: bundling the agent runner failed\n');
  process.exit(1);
}
const kb = Math.round(statSync(outfile).size / 1024);
process.stdout.write(`build-runner: ${path.relative(root, outfile)} (${kb} KB)\n`);

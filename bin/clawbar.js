#!/usr/bin/env node
// The published entry point: runs the compiled CLI. `npm ci` builds it (the `prepare` script).
import('../dist/main/cli/index.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('clawbar: not built yet; run `npm run build` first\n');
  } else {
    process.stderr.write(`clawbar: ${err && err.stack ? err.stack : err}\n`);
  }
  process.exit(1);
});

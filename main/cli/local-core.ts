/**
 * The CLI's fallback when `serve` is not running: the core in-process on the same database,
 * with dispatch off, answering the same control methods. Imported on demand by control.ts,
 * because it pulls in the database, the container runtime, the SDK and the logger.
 */
import path from 'node:path';
import { bootCore } from '../core/boot.js';
import { ensurePrivateHome, resolveHome } from '../core/config.js';
import { ControlRequestError } from '../core/control/client.js';
import { controlHandlers } from '../core/control/handlers.js';
import { invokeControl } from '../core/control/server.js';
import { CLI_LOG_FILE, createLogger } from '../core/logger.js';
import type { ControlLike } from './control.js';

export async function withLocalCore<T>(fn: (control: ControlLike) => Promise<T>): Promise<T> {
  const home = resolveHome();
  // First, so that a data directory that cannot be one is the one plain error the user sees
  // (the log file would fail there too). Tightening it is said in the log, as serve says it.
  const tightened = ensurePrivateHome(home);
  // Quiet on the terminal: the command's own output is what the user asked for. Its own file,
  // so a command never writes into serve's log, nor rotates it under serve.
  const log = createLogger({
    logDir: path.join(home, 'logs'),
    fileName: CLI_LOG_FILE,
    stderr: false,
  });
  for (const { dir, was } of tightened)
    log.warn({ dir, was: was.toString(8) }, 'data directory was open to other users; made it 0700');
  const booted = bootCore({ dispatch: false, log });
  booted.core.groups.ensureLayout();
  const handlers = controlHandlers({ core: booted.core, serving: false });
  try {
    return await fn({
      async request(method, params) {
        const answer = await invokeControl(handlers, method, params, log);
        if (!answer.ok) throw new ControlRequestError(answer.error.message, answer.error.code);
        return answer.result;
      },
    });
  } finally {
    booted.store.close();
  }
}

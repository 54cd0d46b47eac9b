/**
 * Reaching the core from the CLI: through `serve`'s control socket when it runs, otherwise
 * in-process on the same database with dispatch off.
 */
import path from 'node:path';
import { bootCore } from '../core/boot.js';
import { resolveHome } from '../core/config.js';
import {
  ControlClient,
  ControlRequestError,
  ServeNotRunningError,
} from '../core/control/client.js';
import { controlHandlers } from '../core/control/handlers.js';
import type { ControlMethod, ControlParams } from '../core/control/protocol.js';
import { invokeControl } from '../core/control/server.js';
import { createLogger } from '../core/logger.js';

export interface ControlLike {
  request<M extends ControlMethod>(method: M, params: ControlParams<M>): Promise<unknown>;
}

export function socketPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(resolveHome(env), 'clawbar.sock');
}

export async function withControl<T>(fn: (control: ControlLike) => Promise<T>): Promise<T> {
  let client: ControlClient;
  try {
    client = await ControlClient.connect(socketPath());
  } catch (err) {
    if (!(err instanceof ServeNotRunningError)) throw err;
    return withLocalCore(fn);
  }
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

async function withLocalCore<T>(fn: (control: ControlLike) => Promise<T>): Promise<T> {
  const home = resolveHome();
  // Quiet on the terminal: the command's own output is what the user asked for.
  const log = createLogger({ logDir: path.join(home, 'logs'), stderr: false });
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

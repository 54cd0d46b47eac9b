/**
 * Reaching the core from the CLI: through `serve`'s control socket when it runs, otherwise
 * in-process on the same database with dispatch off.
 *
 * This module stays light (Node built-ins, config paths and the socket client): every command
 * that `serve` answers loads only this. The in-process core (database, Docker, SDK, logger)
 * is imported only when nothing answers on the socket.
 */
import { resolveHome, socketPathIn } from '../core/config.js';
import {
  ControlClient,
  ServeNotRunningError,
  type RequestOptions,
} from '../core/control/client.js';
import type { ControlMethod, ControlParams } from '../core/control/protocol.js';

export interface ControlLike {
  /** `opts.onProgress` hears a long request's progress from serve (nothing in-process). */
  request<M extends ControlMethod>(
    method: M,
    params: ControlParams<M>,
    opts?: RequestOptions,
  ): Promise<unknown>;
}

export function socketPath(env: NodeJS.ProcessEnv = process.env): string {
  return socketPathIn(resolveHome(env));
}

export async function withControl<T>(fn: (control: ControlLike) => Promise<T>): Promise<T> {
  let client: ControlClient;
  try {
    client = await ControlClient.connect(socketPath());
  } catch (err) {
    if (!(err instanceof ServeNotRunningError)) throw err;
    const { withLocalCore } = await import('./local-core.js');
    return withLocalCore(fn);
  }
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

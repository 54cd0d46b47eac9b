/**
 * A real Core over a real SQLite file in a temp dir, for unit tests of the Electron shell. Only
 * the two outside systems are stand-ins: the container runtime is "unavailable" (every start
 * fails) and the model broker throws. Everything else (store, groups, queue, events) is real.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ModelCaller } from '../../main/core/agent/agent-run.js';
import { loadConfig } from '../../main/core/config.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import { Core } from '../../main/core/core.js';
import { silentLogger } from '../../main/core/logger.js';
import type { RetryPolicy } from '../../main/core/queue/group-queue.js';
import type { ContainerRuntime } from '../../main/core/sandbox/runtime.js';
import { openStore, type Store } from '../../main/core/store/index.js';

export interface UnitCore {
  core: Core;
  store: Store;
  home: string;
  dbPath: string;
  /** Shuts the core down, closes the database and removes the temp dir. */
  close(): Promise<void>;
}

export const unavailableRuntime: ContainerRuntime = {
  kind: 'docker',
  check: async () => ({ ok: false, reason: 'test', fix: 'none' }),
  inspectImage: async (image) => ({ image, present: false }),
  start: async () => {
    throw new Error('no containers in unit tests');
  },
  listOurs: async () => [],
  removeOrphans: async () => 0,
};

/** An engine that answers its health check but cannot start containers: runs fail as faults. */
export const brokenRuntime: ContainerRuntime = {
  ...unavailableRuntime,
  check: async () => ({ ok: true, version: 'test' }),
};

export const throwingBroker: ModelCaller = {
  complete: async () => {
    throw new Error('no model in unit tests');
  },
};

export async function startUnitCore(
  opts: { retry?: RetryPolicy; runtime?: ContainerRuntime } = {},
): Promise<UnitCore> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-app-'));
  const config = loadConfig({ CLAWBAR_HOME: home }, () => undefined);
  const dbPath = path.join(home, 'clawbar.db');
  const store = openStore(dbPath);
  const log = silentLogger();
  const core = new Core({
    config,
    store,
    runtime: opts.runtime ?? unavailableRuntime,
    broker: throwingBroker,
    log,
    channels: [localChannelFor(store)],
    ...(opts.retry ? { retry: opts.retry } : {}),
  });
  await core.start();
  return {
    core,
    store,
    home,
    dbPath,
    async close() {
      await core.shutdown(0);
      store.close();
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

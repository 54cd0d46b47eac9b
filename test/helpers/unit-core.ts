/**
 * A real Core over a real SQLite file in a temp dir, for unit tests. Only the two outside
 * systems are stand-ins. In {@link startUnitCore} (the Electron shell's tests) the container
 * runtime is "unavailable" (every start fails) and the model broker throws; in
 * {@link processCore} (the orchestrator's tests) each container is a child process running the
 * real runner bundle or a script, and the broker calls the fake Messages API. Everything else
 * (store, groups, queue, events) is real.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ModelCaller } from '../../main/core/agent/agent-run.js';
import { ModelBroker } from '../../main/core/agent/model-broker.js';
import { loadConfig, type ClawbarConfig } from '../../main/core/config.js';
import type { Channel } from '../../main/core/channels/channel.js';
import { localChannelFor } from '../../main/core/channels/local.js';
import type { WhatsAppControl } from '../../main/core/channels/whatsapp-control.js';
import { Core, type CoreDeps } from '../../main/core/core.js';
import { silentLogger, type Logger } from '../../main/core/logger.js';
import type { RetryPolicy } from '../../main/core/queue/group-queue.js';
import type { ContainerRuntime } from '../../main/core/sandbox/runtime.js';
import { openStore, type Store } from '../../main/core/store/index.js';
import { ProcessRuntime } from './process-runtime.js';

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

/**
 * An engine that answers its health check and has the image, but cannot start containers:
 * runs fail as faults (and are retried), rather than being held as not ready.
 */
export const brokenRuntime: ContainerRuntime = {
  ...unavailableRuntime,
  check: async () => ({ ok: true, version: 'test' }),
  inspectImage: async (image) => ({ image, present: true }),
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

export interface ProcessCore {
  core: Core;
  store: Store;
  /** The settings the core runs with, overrides included. */
  config: ClawbarConfig;
  runtime: ProcessRuntime;
  /** Shuts the core down, kills what the runtime started, closes the store, removes the home. */
  close(): Promise<void>;
}

export interface ProcessCoreOptions {
  /** Start of the temp home's name, so a dir left behind says which test made it. */
  prefix: string;
  /** @default a new ProcessRuntime running the real runner bundle */
  runtime?: ProcessRuntime;
  /** Where model calls go: the fake Messages API and the key it takes. @default every call throws */
  api?: { url: string; apiKey: string };
  /** Settings over those loaded for the home, where `TZ` is UTC. */
  config?: Partial<ClawbarConfig>;
  /** @default silentLogger() */
  log?: Logger;
  /** The core's other deps. @default retry: one retry after 50 ms, so a failed run settles fast */
  deps?: Pick<CoreDeps, 'retry' | 'runtimeRecheckMs' | 'disk' | 'imageBuilder' | 'keyFix'>;
  /**
   * Runs the core in this home instead of a new temp dir: a restart over the same database.
   * `close` then leaves the home in place (its first owner removes it).
   */
  home?: string;
  /**
   * A second channel besides the local chat (the WhatsApp channel), made over this core's store
   * and settings; its `control` becomes `core.whatsapp`. @default the local chat only
   */
  channel?: (parts: { store: Store; config: ClawbarConfig; log: Logger }) => {
    channel: Channel;
    control?: WhatsAppControl;
  };
}

/**
 * A Core (not yet started) in a temp home of its own, whose containers are child processes. The
 * caller starts it, and registers `close` to run after the test.
 */
export function processCore(opts: ProcessCoreOptions): ProcessCore {
  const home = opts.home ?? fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), opts.prefix)));
  const config: ClawbarConfig = {
    ...loadConfig({ CLAWBAR_HOME: home, TZ: 'UTC' }, () => undefined),
    ...opts.config,
  };
  const store = openStore(config.dbPath);
  const log = opts.log ?? silentLogger();
  const runtime = opts.runtime ?? new ProcessRuntime();
  const broker = opts.api
    ? new ModelBroker({ apiKey: opts.api.apiKey, baseURL: opts.api.url, model: config.model, log })
    : throwingBroker;
  const extra = opts.channel?.({ store, config, log });
  const core = new Core({
    config,
    store,
    runtime,
    broker,
    log,
    channels: extra ? [localChannelFor(store), extra.channel] : [localChannelFor(store)],
    ...(extra?.control ? { whatsapp: extra.control } : {}),
    retry: { baseDelayMs: 50, maxRetries: 1 },
    ...opts.deps,
  });
  return {
    core,
    store,
    config,
    runtime,
    async close() {
      await core.shutdown(1_000);
      await runtime.cleanup();
      store.close();
      if (!opts.home) fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

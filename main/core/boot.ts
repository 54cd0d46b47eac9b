/**
 * Assembles the core from its parts, in order: data directory and database, configuration,
 * logger, container runtime, model broker, channels, orchestrator. `clawbar serve`, the
 * Electron app and the CLI's offline path all start here.
 */
import path from 'node:path';
import { ModelBroker } from './agent/model-broker.js';
import { ensurePrivateHome, loadConfig, resolveHome, type ClawbarConfig } from './config.js';
import { localChannelFor } from './channels/local.js';
import { whatsappChannelFor } from './channels/whatsapp/boot.js';
import { Core } from './core.js';
import { createLogger, type Logger } from './logger.js';
import { agentImageContext, offlineBaseScript } from './paths.js';
import { AppleContainerRuntime } from './sandbox/apple-container.js';
import { appleImageBuilder } from './sandbox/apple-image-builder.js';
import { DockerRuntime } from './sandbox/docker.js';
import { dockerImageBuilder } from './sandbox/image-builder.js';
import type { ContainerRuntime } from './sandbox/runtime.js';
import { scopeForHome } from './sandbox/runtime.js';
import type { ImageBuilder } from './setup.js';
import { openStore, type Store } from './store/index.js';

export interface BootOptions {
  env?: NodeJS.ProcessEnv;
  /** Dispatch messages to agents (serve, app) or only store them (CLI without serve). @default true */
  dispatch?: boolean;
  /** @default a pino logger writing to `$CLAWBAR_HOME/logs` and stderr */
  log?: Logger;
  /**
   * Build the agent image at start when it is missing or from another runner (serve, app).
   * @default false
   */
  buildImage?: boolean;
  /**
   * The `sandbox-images` folder the agent image is built from. The packaged desktop app ships
   * it outside `app.asar` and passes `sandboxImagesDir(...)` (paths.ts) here.
   * @default `sandbox-images` in the package root
   */
  sandboxImagesDir?: string;
  /**
   * A better-sqlite3 addon built for this process's ABI, used instead of the installed one
   * (`npm start` passes Electron's; see devSqliteBinding in paths.ts).
   * @default the installed addon
   */
  sqliteNativeBinding?: string;
  /** How the user sets the API key, for the "no key" problem (the app: its Settings). */
  keyFix?: string;
}

export interface BootedCore {
  core: Core;
  store: Store;
  config: ClawbarConfig;
  log: Logger;
  /** Shuts the core down and closes the database. */
  close(graceMs?: number): Promise<void>;
}

export function createRuntime(config: ClawbarConfig, log: Logger): ContainerRuntime {
  switch (config.runtime) {
    case 'docker':
      return new DockerRuntime({ log, scope: scopeForHome(config.home) });
    case 'apple':
      return new AppleContainerRuntime({ log, scope: scopeForHome(config.home) });
    default: {
      const unreachable: never = config.runtime;
      throw new Error(`unknown runtime ${String(unreachable)}`);
    }
  }
}

/** How `serve` builds a missing or stale image with the chosen runtime. */
function imageBuilderFor(
  config: ClawbarConfig,
  log: Logger,
  runtime: ContainerRuntime,
  sandboxDir: string | undefined,
): ImageBuilder {
  const contextDir = agentImageContext(sandboxDir);
  return runtime instanceof AppleContainerRuntime
    ? appleImageBuilder(config, log, runtime, contextDir)
    : dockerImageBuilder(config, log, undefined, contextDir, offlineBaseScript(sandboxDir));
}

export function bootCore(opts: BootOptions = {}): BootedCore {
  const env = opts.env ?? process.env;
  const home = resolveHome(env);
  // Before anything is written there: the database, logs and socket live in it (0700).
  const tightened = ensurePrivateHome(home);
  const store = openStore(
    path.join(home, 'clawbar.db'),
    opts.sqliteNativeBinding ? { nativeBinding: opts.sqliteNativeBinding } : {},
  );
  try {
    const config = loadConfig(env, (key) => store.getSetting(key));
    const log = opts.log ?? createLogger({ logDir: config.logsDir, env });
    for (const { dir, was } of tightened) {
      log.warn(
        { dir, was: was.toString(8) },
        'data directory was open to other users; made it 0700',
      );
    }
    const runtime = createRuntime(config, log);
    const broker = new ModelBroker({
      apiKey: config.apiKey ?? '',
      ...(config.baseURL ? { baseURL: config.baseURL } : {}),
      model: config.model,
      log,
    });
    const local = localChannelFor(store);
    // WhatsApp where agents answer (serve, the app): it connects only once a phone is linked
    // (`clawbar pair`), so a fresh install makes no connection until asked to.
    const whatsapp = (opts.dispatch ?? true) ? whatsappChannelFor({ store, config, log }) : null;
    const core = new Core({
      config,
      store,
      runtime,
      ...(opts.buildImage
        ? { imageBuilder: imageBuilderFor(config, log, runtime, opts.sandboxImagesDir) }
        : {}),
      broker,
      ...(opts.keyFix ? { keyFix: opts.keyFix } : {}),
      log,
      channels: whatsapp ? [local, whatsapp.channel] : [local],
      ...(whatsapp ? { whatsapp: whatsapp.control } : {}),
      dispatch: opts.dispatch ?? true,
    });
    return {
      core,
      store,
      config,
      log,
      async close(graceMs = 10_000) {
        await core.shutdown(graceMs);
        store.close();
      },
    };
  } catch (err) {
    store.close();
    throw err;
  }
}

/**
 * `clawbar serve`: the core in the foreground until SIGTERM or SIGINT.
 *
 * Stopping is bounded: runs get their grace period, and if the whole shutdown (or something
 * that keeps the process alive after it) takes longer than {@link SHUTDOWN_DEADLINE_MS}, the
 * process exits anyway. A second signal exits at once. Before this, serve on a full disk
 * ignored SIGTERM for good (issue 6).
 */
import { fileURLToPath } from 'node:url';
import { bootCore } from '../core/boot.js';
import { controlHandlers } from '../core/control/handlers.js';
import {
  HttpAddressError,
  loadDashboardToken,
  parseHttpAddress,
  startHttpBridge,
  type HttpAddress,
  type HttpBridge,
} from '../core/control/http-server.js';
import { ControlServer } from '../core/control/server.js';
import { createUiApi } from '../core/control/ui-api.js';
import { CliError } from './output.js';
import { installProcessGuards } from '../core/process-guards.js';

/** Grace for runs to finish at shutdown; then their containers are killed. */
const RUN_GRACE_MS = 10_000;

/**
 * How long a stop may take in all, from the signal to the exit: the runs' grace, the outbox's
 * and channels' close, the database's, with room to spare. Past it the process exits (code 1).
 */
export const SHUTDOWN_DEADLINE_MS = 30_000;

export async function serveCommand(opts: {
  json: boolean;
  /** `--http HOST:PORT`: also serve the dashboard there. */
  http?: string;
}): Promise<number> {
  const httpAddress = opts.http === undefined ? null : parseHttpOption(opts.http);
  // Serve makes its own agent image when it is missing or outdated, holding work meanwhile.
  const booted = bootCore({ buildImage: true });
  const { core, config, log } = booted;
  // One run's forgotten rejection must not take every group down with the process.
  installProcessGuards(log);
  const control = new ControlServer(
    config.socketPath,
    controlHandlers({ core, serving: true }),
    log,
  );
  try {
    await control.listen();
  } catch (err) {
    booted.store.close();
    throw err;
  }
  try {
    await core.start();
  } catch (err) {
    // Without this the control socket kept the process alive after the error was printed.
    await control.close();
    await booted.close(0);
    throw err;
  }
  let dashboard: { bridge: HttpBridge; url: string } | null = null;
  if (httpAddress) {
    try {
      dashboard = await startDashboard(httpAddress, booted);
    } catch (err) {
      await core.shutdown(RUN_GRACE_MS);
      await control.close();
      await booted.close(0);
      throw err;
    }
  }
  const started = {
    serving: true,
    home: config.home,
    socket: config.socketPath,
    pid: process.pid,
    ...(dashboard ? { dashboard: dashboard.url } : {}),
  };
  process.stdout.write(
    opts.json
      ? `${JSON.stringify(started)}\n`
      : `clawbar serving from ${config.home} (control socket ${config.socketPath}); Ctrl-C stops it\n` +
          (dashboard ? `dashboard: ${dashboard.url}\n` : ''),
  );

  return new Promise((resolve) => {
    let stopping = false;
    /** The exit code, once the orderly shutdown has finished. */
    let finished: number | null = null;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        // Still listening after the orderly part, so a late signal is never swallowed.
        log.warn({ signal }, 'second signal: exiting now, without waiting for the shutdown');
        process.exit(finished ?? 1);
      }
      stopping = true;
      log.info({ signal }, 'shutting down');
      // The deadline holds whatever hangs: a run, the engine, a write to a full disk, or a
      // handle that keeps the process alive after the orderly part is done. Unref'd, it never
      // delays an exit that happens on its own.
      const deadline = setTimeout(() => {
        log.error(
          { deadlineMs: SHUTDOWN_DEADLINE_MS, finished: finished !== null },
          finished === null
            ? 'shutdown did not finish in time; exiting now'
            : 'something kept the process alive after shutdown; exiting now',
        );
        process.exit(finished ?? 1);
      }, SHUTDOWN_DEADLINE_MS);
      deadline.unref();
      const done = (code: number): void => {
        finished = code;
        resolve(code);
      };
      (async () => {
        // The core first: waiting clients are answered ("shutting down") while the control
        // socket can still carry the answer, and runs get their grace period.
        await core.shutdown(RUN_GRACE_MS);
        await dashboard?.bridge.close();
        await control.close();
        log.info('stopped');
        await booted.close(0);
        done(0);
      })().catch((err: unknown) => {
        log.error({ err }, 'unclean shutdown');
        done(1);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

function parseHttpOption(spec: string): HttpAddress {
  try {
    return parseHttpAddress(spec);
  } catch (err) {
    if (err instanceof HttpAddressError) throw new CliError(err.message);
    throw err;
  }
}

/**
 * Serves the dashboard (DESIGN.md §6): the built renderer next to this module once compiled
 * (`dist/renderer`), the token from `$CLAWBAR_HOME/dashboard-token`. Returns the URL to open,
 * with the token in its fragment (never sent to a server, and removed from the address bar).
 */
async function startDashboard(
  address: HttpAddress,
  booted: ReturnType<typeof bootCore>,
): Promise<{ bridge: HttpBridge; url: string }> {
  const { core, config, log } = booted;
  if (!address.loopback)
    process.stderr.write(
      `warning: the dashboard on ${address.host} can be reached from other machines; anyone who has its token controls this Clawbar. Use 127.0.0.1 unless you mean it.\n`,
    );
  const token = loadDashboardToken(config.home);
  const bridge = await startHttpBridge({
    address,
    token,
    api: createUiApi({ core, serving: true, log }),
    events: core.events,
    rendererDir: fileURLToPath(new URL('../../renderer/', import.meta.url)),
    log,
  });
  return { bridge, url: `${bridge.url}#token=${token}` };
}

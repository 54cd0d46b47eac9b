/** `clawbar serve`: the core in the foreground until SIGTERM or SIGINT. */
import { bootCore } from '../core/boot.js';
import { controlHandlers } from '../core/control/handlers.js';
import { ControlServer } from '../core/control/server.js';
import { installProcessGuards } from '../core/process-guards.js';

export async function serveCommand(opts: { json: boolean }): Promise<number> {
  const booted = bootCore();
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
  if (!config.apiKey) log.warn('ANTHROPIC_API_KEY is not set: the agent cannot answer until it is');
  const started = { serving: true, home: config.home, socket: config.socketPath, pid: process.pid };
  process.stdout.write(
    opts.json
      ? `${JSON.stringify(started)}\n`
      : `clawbar serving from ${config.home} (control socket ${config.socketPath}); Ctrl-C stops it\n`,
  );

  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      (async () => {
        // The core first: waiting clients are answered ("shutting down") while the control
        // socket can still carry the answer, and runs get their grace period.
        await core.shutdown();
        await control.close();
        await booted.close(0);
        resolve(0);
      })().catch((err: unknown) => {
        log.error({ err }, 'unclean shutdown');
        resolve(1);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

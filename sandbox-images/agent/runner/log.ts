/**
 * Runner logging. stdout is reserved for protocol frames, so every log line goes to stderr,
 * where the host collects it into its own log.
 */

/** Where a log line goes. Injected so that tools and the loop stay quiet under test. */
export interface RunnerLog {
  info(message: string): void;
  warn(message: string): void;
  error(message: string, err?: unknown): void;
}

/** The real logger: one plain line per event on stderr, prefixed so it stands out in host logs. */
export const stderrLog: RunnerLog = {
  info: (message) => console.error(`[runner] ${message}`),
  warn: (message) => console.error(`[runner] warn: ${message}`),
  error: (message, err) =>
    console.error(
      `[runner] error: ${message}${err === undefined ? '' : `: ${describeError(err)}`}`,
    ),
};

/** A logger that drops everything. */
export const silentLog: RunnerLog = { info: () => {}, warn: () => {}, error: () => {} };

/** A one-line description of any thrown value, for logs and error frames. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

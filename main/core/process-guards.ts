/**
 * Process-wide safety nets for the long-running hosts (`clawbar serve`, the tray app).
 *
 * - Node exits on an unhandled promise rejection. In a process that holds every group's runs,
 *   one forgotten `.catch` in one run must not take all of them down: the rejection is logged,
 *   with its stack, and the process goes on. Code should still catch its own errors; this is
 *   the net under it, and its log line is a bug report.
 * - Our code never writes to `console`, but libraries do, and not harmlessly: libsignal (under
 *   Baileys) prints whole Signal session records, private ratchet keys included, with
 *   `console.info("Closing session:", session)`. Console calls become log lines instead, with
 *   their text only: an object argument is replaced by its class name, so no key material
 *   reaches the terminal, the journal or the log file.
 */
import { format } from 'node:util';

import type { Logger } from './logger.js';

const CONSOLE_METHODS = ['log', 'info', 'debug', 'trace', 'warn', 'error'] as const;
type ConsoleMethod = (typeof CONSOLE_METHODS)[number];

/** A library's console line, without its objects: "Closing session: [SessionEntry]". */
export function consoleText(args: readonly unknown[]): string {
  const parts = args.map((arg) => {
    if (typeof arg === 'string') return arg;
    if (typeof arg === 'number' || typeof arg === 'boolean' || typeof arg === 'bigint')
      return String(arg);
    if (arg instanceof Error) return `${arg.name}: ${arg.message}`;
    if (arg === null || arg === undefined) return String(arg);
    const name = (arg as { constructor?: { name?: unknown } }).constructor?.name;
    return `[${typeof name === 'string' && name ? name : typeof arg}]`;
  });
  // `format` applies %s-style placeholders the way console would, on the reduced parts only.
  return format(...(parts as [string, ...string[]])).slice(0, 500);
}

/** Installs the handlers; returns the function that removes them (for tests). */
export function installProcessGuards(
  log: Logger,
  proc: NodeJS.Process = process,
  con: Pick<Console, ConsoleMethod> = console,
): () => void {
  const onRejection = (reason: unknown): void => {
    log.error({ err: reason }, 'unhandled promise rejection; this is a bug, and Clawbar goes on');
  };
  proc.on('unhandledRejection', onRejection);

  const consoleLog = log.child({ mod: 'console' });
  const originals = new Map<ConsoleMethod, Console[ConsoleMethod]>();
  for (const method of CONSOLE_METHODS) {
    originals.set(method, con[method]);
    con[method] = (...args: unknown[]): void => {
      const text = consoleText(args);
      if (method === 'warn' || method === 'error') consoleLog.warn(text);
      else consoleLog.debug(text);
    };
  }
  return () => {
    proc.off('unhandledRejection', onRejection);
    for (const [method, original] of originals) con[method] = original;
  };
}

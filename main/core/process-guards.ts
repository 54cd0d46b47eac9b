/**
 * Process-wide safety nets for the long-running hosts (`clawbar serve`, the tray app).
 *
 * Node exits on an unhandled promise rejection. In a process that holds every group's runs,
 * one forgotten `.catch` in one run must not take all of them down: the rejection is logged,
 * with its stack, and the process goes on. Code should still catch its own errors; this is
 * the net under it, and its log line is a bug report.
 */
import type { Logger } from './logger.js';

/** Installs the handlers; returns the function that removes them (for tests). */
export function installProcessGuards(log: Logger, proc: NodeJS.Process = process): () => void {
  const onRejection = (reason: unknown): void => {
    log.error({ err: reason }, 'unhandled promise rejection; this is a bug, and Clawbar goes on');
  };
  proc.on('unhandledRejection', onRejection);
  return () => {
    proc.off('unhandledRejection', onRejection);
  };
}

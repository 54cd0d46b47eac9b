/**
 * Watches for the container engine to come back after a run found it unreachable.
 *
 * It does nothing while the engine is up: there is no periodic check. When told the engine is
 * down, it asks the runtime again after 1 s, 2 s, 4 s… (capped), and on the first good answer
 * reports it once and goes quiet again.
 */
import type { Logger } from '../logger.js';
import type { ContainerRuntime, RuntimeState } from './runtime.js';

export interface RuntimeHealthDeps {
  runtime: Pick<ContainerRuntime, 'check'>;
  log: Logger;
  /** The engine answers again. Awaited before the next state change; must not throw. */
  onRestored(): Promise<void> | void;
  /** The engine was found down (once per outage). */
  onDown?(state: Extract<RuntimeState, { ok: false }>): void;
  /** @default 1000 */
  baseDelayMs?: number;
  /** @default 30000 */
  maxDelayMs?: number;
}

export class RuntimeHealth {
  private down: Extract<RuntimeState, { ok: false }> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly deps: RuntimeHealthDeps) {
    this.log = deps.log.child({ mod: 'runtime-health' });
  }

  /** The last known outage, or null while the engine is thought to be up. */
  get outage(): Extract<RuntimeState, { ok: false }> | null {
    return this.down;
  }

  /** A run (or a check) found the engine unreachable: start watching for its return. */
  reportDown(reason: string, fix: string): void {
    if (this.stopped) return;
    if (!this.down) {
      this.down = { ok: false, reason, fix };
      this.log.warn({ reason, fix }, 'container engine unreachable; waiting for it');
      this.deps.onDown?.(this.down);
    }
    if (!this.timer) this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    const base = this.deps.baseDelayMs ?? 1_000;
    const max = this.deps.maxDelayMs ?? 30_000;
    const delay = Math.min(base * 2 ** this.attempt, max);
    this.attempt += 1;
    this.timer = setTimeout(() => {
      this.probe().catch((err: unknown) => {
        this.log.error({ err }, 'engine health probe failed');
        this.timer = null;
        if (!this.stopped) this.schedule();
      });
    }, delay);
    // The watch must not keep a process alive that is otherwise done.
    this.timer.unref();
  }

  private async probe(): Promise<void> {
    const state = await this.deps.runtime.check();
    this.timer = null;
    if (this.stopped) return;
    if (!state.ok) {
      this.down = state;
      this.log.debug({ reason: state.reason }, 'container engine still unreachable');
      this.schedule();
      return;
    }
    this.log.info({ version: state.version }, 'container engine answers again');
    this.down = null;
    this.attempt = 0;
    await this.deps.onRestored();
  }
}

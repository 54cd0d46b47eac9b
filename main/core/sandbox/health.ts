/**
 * Watches for the container engine to come back after a run found it unreachable.
 *
 * It does nothing while the engine is up: there is no periodic check. When told the engine may
 * be down, it asks the runtime at once, then again after 1 s, 2 s, 4 s… (capped), and on the
 * first good answer reports it once and goes quiet again. The runtime's own answer says why
 * it is down and how to fix it.
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
  private down = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private probing = false;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly deps: RuntimeHealthDeps) {
    this.log = deps.log.child({ mod: 'runtime-health' });
  }

  /** A run (or a check) found the engine unreachable: watch for its return. */
  reportDown(): void {
    if (this.stopped || this.timer || this.probing) return;
    this.attempt = 0;
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delay?: number): void {
    const base = this.deps.baseDelayMs ?? 1_000;
    const max = this.deps.maxDelayMs ?? 30_000;
    const wait = delay ?? Math.min(base * 2 ** this.attempt++, max);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.probing = true;
      this.probe()
        .catch((err: unknown) => {
          this.log.error({ err }, 'engine health probe failed');
          if (!this.stopped) this.schedule();
        })
        .finally(() => (this.probing = false));
    }, wait);
    // The watch must not keep a process alive that is otherwise done.
    this.timer.unref();
  }

  private async probe(): Promise<void> {
    const state = await this.deps.runtime.check();
    if (this.stopped) return;
    if (!state.ok) {
      if (!this.down) {
        this.down = true;
        this.log.warn(
          { reason: state.reason, fix: state.fix },
          'container engine unreachable; waiting for it',
        );
        this.deps.onDown?.(state);
      }
      this.schedule();
      return;
    }
    if (this.down) this.log.info({ version: state.version }, 'container engine answers again');
    this.down = false;
    await this.deps.onRestored();
  }
}

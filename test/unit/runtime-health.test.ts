import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { silentLogger } from '../../main/core/logger.js';
import { RuntimeHealth } from '../../main/core/sandbox/health.js';
import type { RuntimeState } from '../../main/core/sandbox/runtime.js';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

function watch() {
  let up = false;
  const checks: number[] = [];
  const events: string[] = [];
  const health = new RuntimeHealth({
    runtime: {
      check: async (): Promise<RuntimeState> => {
        checks.push(Date.now());
        return up ? { ok: true, version: '1' } : { ok: false, reason: 'gone', fix: 'start it' };
      },
    },
    log: silentLogger(),
    onDown: (state) => events.push(`down: ${state.reason} (${state.fix})`),
    onRestored: () => {
      events.push('restored');
    },
    baseDelayMs: 1_000,
    maxDelayMs: 4_000,
  });
  return { health, checks, events, setUp: (value: boolean) => (up = value) };
}

it('asks at once, then backs off 1 s, 2 s, 4 s (capped), and reports the outage and the return once each', async () => {
  const w = watch();
  const start = Date.now();
  w.health.reportDown();
  w.health.reportDown(); // a second report during the watch adds nothing
  await vi.advanceTimersByTimeAsync(11_000);
  expect(w.checks.map((t) => t - start)).toEqual([0, 1_000, 3_000, 7_000, 11_000]);
  expect(w.events).toEqual(['down: gone (start it)']);

  w.setUp(true);
  await vi.advanceTimersByTimeAsync(4_000);
  expect(w.events).toEqual(['down: gone (start it)', 'restored']);
  // Quiet while the engine is up: no periodic checks.
  await vi.advanceTimersByTimeAsync(60_000);
  expect(w.checks).toHaveLength(6);
});

it('a report that finds the engine answering restores at once, without announcing an outage', async () => {
  const w = watch();
  w.setUp(true);
  w.health.reportDown();
  await vi.advanceTimersByTimeAsync(0);
  expect(w.events).toEqual(['restored']);
});

it('stop() ends the watch: no further checks and no timer left', async () => {
  const w = watch();
  w.health.reportDown();
  await vi.advanceTimersByTimeAsync(0);
  w.health.stop();
  await vi.advanceTimersByTimeAsync(60_000);
  expect(w.checks).toHaveLength(1);
  expect(vi.getTimerCount()).toBe(0);
});

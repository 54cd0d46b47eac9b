import { DisconnectReason } from '@whiskeysockets/baileys';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RECONNECT_POLICY,
  DisconnectCode,
  describeDisconnect,
  disconnectCode,
  ReconnectPolicy,
  type DisconnectDecision,
} from '../../main/core/channels/whatsapp/connection-policy.js';

/** An error shaped as Baileys' Boom errors are: the status code in `output.statusCode`. */
function boom(message: string, statusCode: number): Error {
  return Object.assign(new Error(message), { output: { statusCode } });
}

/** A seeded generator, so a failing schedule can be replayed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function delayOf(decision: DisconnectDecision): number {
  if (decision.action !== 'reconnect')
    throw new Error(`expected a reconnect, got ${decision.action}`);
  return decision.delayMs;
}

/**
 * Connection attempts in each simulated minute when every attempt fails at once (the socket
 * closes with `code` as soon as it is made), over `minutes` minutes.
 */
function attemptsPerMinute(policy: ReconnectPolicy, minutes: number, code = 428): number[] {
  const counts = Array.from({ length: minutes }, () => 0);
  let now = 0;
  while (now < minutes * 60_000) {
    counts[Math.floor(now / 60_000)]! += 1;
    now += delayOf(policy.closed(code, now));
  }
  return counts;
}

describe('the reconnect policy', () => {
  it('agrees with Baileys on the status codes it names', () => {
    expect(DisconnectCode.restartRequired).toBe(DisconnectReason.restartRequired);
    expect(DisconnectCode.connectionReplaced).toBe(DisconnectReason.connectionReplaced);
    expect(DisconnectCode.loggedOut).toBe(DisconnectReason.loggedOut);
    expect(DisconnectCode.forbidden).toBe(DisconnectReason.forbidden);
    expect(DisconnectCode.multideviceMismatch).toBe(DisconnectReason.multideviceMismatch);
    expect(DisconnectCode.connectionClosed).toBe(DisconnectReason.connectionClosed);
    expect(DisconnectCode.connectionLost).toBe(DisconnectReason.connectionLost);
    expect(DisconnectCode.badSession).toBe(DisconnectReason.badSession);
    expect(DisconnectCode.unavailableService).toBe(DisconnectReason.unavailableService);
  });

  it('reads the status code from a Boom, and none from a plain error', () => {
    expect(disconnectCode(boom('Stream Errored (restart required)', 515))).toBe(515);
    expect(disconnectCode(new Error('ECONNREFUSED'))).toBeUndefined();
    expect(disconnectCode(undefined)).toBeUndefined();
    expect(disconnectCode({ output: { statusCode: '401' } })).toBeUndefined();
  });

  it('reconnects at once after 515 restartRequired', () => {
    const policy = new ReconnectPolicy({}, () => 0.5);
    expect(policy.closed(515, 0)).toMatchObject({ action: 'reconnect', delayMs: 0, code: 515 });
  });

  it('backs off a server that keeps answering 515', () => {
    const policy = new ReconnectPolicy({ maxImmediateRestarts: 3 }, () => 0);
    const delays = Array.from({ length: 6 }, (_, i) => delayOf(policy.closed(515, i)));
    expect(delays.slice(0, 3)).toEqual([0, 0, 0]);
    expect(delays.slice(3)).toEqual([500, 1000, 2000]);
  });

  it.each([408, 428, 500, 503, 999, undefined])(
    'backs off exponentially after a close with code %s',
    (code) => {
      const policy = new ReconnectPolicy({}, () => 0);
      const delays = Array.from({ length: 4 }, (_, i) => delayOf(policy.closed(code, i)));
      expect(delays).toEqual([500, 1000, 2000, 4000]);
    },
  );

  it('keeps every delay within its jitter bounds and under the cap', () => {
    const { baseDelayMs, maxDelayMs } = DEFAULT_RECONNECT_POLICY;
    const policy = new ReconnectPolicy({}, seeded(7));
    for (let attempt = 0; attempt < 200; attempt++) {
      const step = Math.min(maxDelayMs, baseDelayMs * 2 ** attempt);
      const delay = delayOf(policy.closed(503, attempt));
      expect(delay).toBeGreaterThanOrEqual(step / 2);
      expect(delay).toBeLessThanOrEqual(step);
      expect(delay).toBeLessThanOrEqual(maxDelayMs);
    }
  });

  it('reaches the cap and stays there under repeated drops', () => {
    const policy = new ReconnectPolicy({}, () => 1);
    const delays = Array.from({ length: 12 }, (_, i) => delayOf(policy.closed(408, i)));
    expect(delays).toEqual([
      1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000, 60000, 60000,
    ]);
  });

  it('bounds connection attempts per minute under continuous drops', () => {
    // Worst case: the random half is always 0, so every wait is at its floor.
    const worst = attemptsPerMinute(new ReconnectPolicy({}, () => 0), 10);
    expect(worst[0]).toBe(7);
    expect(Math.max(...worst.slice(1))).toBeLessThanOrEqual(2);
    const typical = attemptsPerMinute(new ReconnectPolicy({}, seeded(42)), 10);
    expect(typical[0]).toBeLessThanOrEqual(7);
    expect(Math.max(...typical.slice(1))).toBeLessThanOrEqual(2);
    expect(typical.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(
      worst.reduce((a, b) => a + b, 0),
    );
  });

  it('resets the backoff once a connection has stayed open for the stable spell', () => {
    const policy = new ReconnectPolicy({ stableAfterMs: 60_000 }, () => 0);
    for (let i = 0; i < 5; i++) policy.closed(428, i);
    expect(policy.attempts).toBe(5);
    policy.opened(10_000);
    expect(delayOf(policy.closed(428, 70_000))).toBe(500);
    expect(policy.attempts).toBe(1);
  });

  it('does not reset the backoff for a connection that drops before it is stable', () => {
    const policy = new ReconnectPolicy({ stableAfterMs: 60_000 }, () => 0);
    for (let i = 0; i < 5; i++) policy.closed(428, i);
    policy.opened(10_000);
    expect(delayOf(policy.closed(428, 69_999))).toBe(16_000);
  });

  it('stops after 440 connectionReplaced and says another client took over', () => {
    const decision = new ReconnectPolicy().closed(440, 0);
    expect(decision).toMatchObject({ action: 'stop', code: 440 });
    expect(decision.reason).toMatch(/another WhatsApp Web client took over/);
    expect(decision.reason).toMatch(/clawbar pair/);
  });

  it.each([401, 403, 411])('treats %s as logged out, telling the user to pair again', (code) => {
    const decision = new ReconnectPolicy().closed(code, 0);
    expect(decision).toMatchObject({ action: 'logged-out', code });
    expect(decision.reason).toMatch(/clawbar pair/);
  });

  it('describes a plain network error by its message', () => {
    expect(describeDisconnect(undefined, new Error('connect ECONNREFUSED 127.0.0.1:1'))).toBe(
      'connect ECONNREFUSED 127.0.0.1:1',
    );
    expect(describeDisconnect(undefined)).toBe('connection failed');
  });
});

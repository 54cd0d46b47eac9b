/**
 * The core's recent activity (`activity:recent`): which events it keeps, with when, newest
 * first, how many, and that it stops listening when closed. A real event bus; a clock by hand.
 */
import { describe, expect, it } from 'vitest';
import { RecentActivity } from '../../main/core/control/recent-activity.js';
import { CoreEventBus } from '../../main/core/events.js';

const GROUP = 'local:family';

describe('RecentActivity', () => {
  it('keeps runs, failures and state changes with their time, newest first, and nothing else', () => {
    const bus = new CoreEventBus();
    let now = 1_000;
    const recent = new RecentActivity(bus, () => now);
    bus.emit('run:started', { groupJid: GROUP, runId: 'r1', container: 'c1' });
    now = 2_000;
    bus.emit('run:finished', { groupJid: GROUP, runId: 'r1', ok: false, error: 'exit 1' });
    // Not activity: a task edited, a group paused, typing.
    bus.emit('task:changed', { kind: 'added', taskId: 't1' });
    bus.emit('group:changed', { groupJid: GROUP, change: 'paused' });
    bus.emit('chat:typing', { chatJid: GROUP, typing: true });
    now = 3_000;
    bus.emit('budget:reached', {
      groupJid: GROUP,
      limit: '1,000 tokens',
      used: '1,200 tokens',
      day: '2026-11-26',
      resetsAt: 4_000,
    });
    expect(recent.list()).toEqual([
      {
        at: 3_000,
        event: expect.objectContaining({ type: 'budget:reached', limit: '1,000 tokens' }),
      },
      {
        at: 2_000,
        event: { type: 'run:finished', groupJid: GROUP, runId: 'r1', ok: false, error: 'exit 1' },
      },
      // Only what the window needs crosses: not the container's name.
      { at: 1_000, event: { type: 'run:started', groupJid: GROUP, runId: 'r1' } },
    ]);
    // A copy: the caller cannot change what is kept.
    recent.list().pop();
    expect(recent.list()).toHaveLength(3);
  });

  it('keeps the newest only, up to its limit, and stops listening when closed', () => {
    const bus = new CoreEventBus();
    let now = 0;
    const recent = new RecentActivity(bus, () => now, 3);
    for (let i = 1; i <= 5; i++) {
      now = i;
      bus.emit('run:gave-up', { groupJid: GROUP, error: `e${i}`, attempts: 6 });
    }
    expect(recent.list().map((r) => r.at)).toEqual([5, 4, 3]);
    const before = bus.listenerCount();
    recent.close();
    expect(bus.listenerCount()).toBeLessThan(before);
    bus.emit('run:gave-up', { groupJid: GROUP, error: 'late', attempts: 6 });
    expect(recent.list().map((r) => r.at)).toEqual([5, 4, 3]);
  });
});

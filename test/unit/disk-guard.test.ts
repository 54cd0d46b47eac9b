/**
 * The disk limits wired into the orchestrator, with the real runner as a plain process (no
 * Docker), a real SQLite file, real group folders, and the real SDK against the fake API:
 * a folder over its budget pauses the group and tells the chat, and too little free space
 * holds work without failing it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { localChannelFor } from '../../main/core/channels/local.js';
import { loadConfig, type ClawbarConfig } from '../../main/core/config.js';
import { controlHandlers, type GroupView } from '../../main/core/control/handlers.js';
import type { Core } from '../../main/core/core.js';
import type { DiskGuardOptions } from '../../main/core/disk.js';
import { textTurn } from '../fakes/anthropic-api.js';
import { runnerSuite } from '../helpers/runner-suite.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-disk-guard';
const MiB = 1024 * 1024;
const suite = runnerSuite(API_KEY);

function makeCore(overrides: Partial<ClawbarConfig>, disk: DiskGuardOptions = {}): ProcessCore {
  const made = processCore({
    prefix: 'clawbar-diskg-',
    api: { url: suite.fake.url, apiKey: API_KEY },
    config: { ...overrides, idleTimeoutMs: 30_000 },
    deps: { disk },
  });
  suite.defer(made.close);
  return made;
}

/** Writes `bytes` of real data (never sparse) into a file, making its folder. */
function writeReal(file: string, bytes: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.alloc(bytes, 0x5a));
}

async function until<T>(what: string, probe: () => T | undefined | null | false): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The notices in a group's chat that say it was paused for its folder. */
function pauseNotices(core: Core, groupJid: string): string[] {
  return core
    .messages(groupJid, 100)
    .map((m) => m.text)
    .filter((text) => text.includes("I've paused"));
}

describe('group folder budget', () => {
  it('pauses a group found over its budget at start before its waiting message runs, tells its chat once, and shows why', async () => {
    const { core, store, config, runtime } = makeCore({ groupMaxBytes: 1 * MiB });
    const group = core.addGroup({ name: 'Family' });
    const groupDir = path.join(config.groupsDir, group.folder);
    writeReal(path.join(groupDir, 'download.bin'), 3 * MiB);
    // Stored while Clawbar was stopped: recovery at start queues it.
    store.insertMessage(localChannelFor(store).compose(group, 'Alice', '@Andy hi'));
    await core.start();

    await until('the pause', () => core.groups.resolve('Family').paused);
    const notices = await until('the notice', () => {
      const found = pauseNotices(core, group.jid);
      return found.length > 0 && found;
    });
    expect(notices).toHaveLength(1);
    const escaped = groupDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(notices[0]).toMatch(
      new RegExp(
        `^I've paused: my folder uses 3(\\.\\d)? MB, over the 1 MB limit\\. Free some space in ${escaped}, then resume me with \`clawbar groups resume Family\`\\.$`,
      ),
    );

    // Paused: a new message is stored, not answered, and the chat is not told again.
    core.postLocal('Family', 'Alice', '@Andy are you there?');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(runtime.startCalls).toBe(0);
    expect(pauseNotices(core, group.jid)).toHaveLength(1);

    // Status and the group list say why.
    const status = await core.status();
    expect(status.disk.overBudget).toEqual([
      expect.objectContaining({
        groupJid: group.jid,
        name: 'Family',
        reason: expect.stringMatching(/^folder uses 3(\.\d)? MB, over the 1 MB limit$/),
      }),
    ]);
    const handlers = controlHandlers({ core, serving: true });
    const list = (await handlers['groups.list'](
      {},
      { signal: new AbortController().signal, progress: () => undefined },
    )) as GroupView[];
    expect(list[0]).toMatchObject({
      paused: true,
      pausedReason: expect.stringMatching(/over the 1 MB limit/),
    });
  });

  it('resumed without freeing space, holds the run, pauses again and says so; once space is freed, answers what waited', async () => {
    const { core, config, runtime } = makeCore({ groupMaxBytes: 1 * MiB });
    const group = core.addGroup({ name: 'Family' });
    const big = path.join(config.groupsDir, group.folder, 'big.bin');
    writeReal(big, 3 * MiB);
    await core.start();
    await until('the pause', () => core.groups.resolve('Family').paused);
    core.postLocal('Family', 'Alice', '@Andy one');

    core.resumeGroup('Family');
    await until('the second pause', () => core.groups.resolve('Family').paused);
    await until('the second notice', () => pauseNotices(core, group.jid).length === 2);
    expect(runtime.startCalls).toBe(0); // held while measured, never started

    fs.rmSync(big);
    suite.fake.script([textTurn('Caught up.')]);
    expect(core.resumeGroup('Family').paused).toBe(false);
    const reply = await until('the answer', () =>
      core.messages(group.jid, 100).find((m) => m.fromBot && m.text === 'Caught up.'),
    );
    expect(reply.text).toBe('Caught up.');
    expect(runtime.startCalls).toBe(1);
    expect((await core.status()).disk.overBudget).toEqual([]);
  });

  it('after a turn that fills the folder past its budget, the reply arrives, then the group is paused and told', async () => {
    const { core, config } = makeCore({ groupMaxBytes: 2 * MiB });
    await core.start();
    const group = core.addGroup({ name: 'Family' });
    const groupDir = path.join(config.groupsDir, group.folder);
    suite.fake.script([
      () => {
        // The agent writes into its folder during the turn (as its bash tool would).
        writeReal(path.join(groupDir, 'dump', 'part1.bin'), 2 * MiB);
        writeReal(path.join(groupDir, 'dump', 'part2.bin'), 2 * MiB);
        return textTurn('Saved the files.');
      },
    ]);
    const posted = core.postLocal('Family', 'Alice', '@Andy save everything');
    const reply = await core.waitForReply(group.jid, posted.message.seq, 15_000);
    expect(reply.replies.map((m) => m.text)).toEqual(['Saved the files.']);
    await until('the pause', () => core.groups.resolve('Family').paused);
    const notices = await until('the notice', () => {
      const found = pauseNotices(core, group.jid);
      return found.length > 0 && found;
    });
    expect(notices).toEqual([
      expect.stringMatching(/^I've paused: my folder uses 4(\.\d)? MB, over the 2 MB limit\./),
    ]);
  });

  it('does not count, mount or remove the session folder an older version left behind', async () => {
    const { core, config, runtime } = makeCore({ groupMaxBytes: 1 * MiB });
    const group = core.addGroup({ name: 'Family' });
    // Older versions kept the transcript in <home>/sessions/<folder>; nothing uses it now.
    const oldTranscript = path.join(config.home, 'sessions', group.folder, 'transcript.json');
    writeReal(oldTranscript, 3 * MiB);
    await core.start();
    suite.fake.script([textTurn('Still here.')]);
    const posted = core.postLocal('Family', 'Alice', '@Andy hello');
    const reply = await core.waitForReply(group.jid, posted.message.seq, 15_000);
    expect(reply.replies.map((m) => m.text)).toEqual(['Still here.']);
    expect(core.groups.resolve('Family').paused).toBe(false);
    expect((await core.status()).disk.overBudget).toEqual([]);
    expect(runtime.started[0]?.spec.mounts.map((m) => m.containerPath)).toEqual([
      '/workspace/group',
      '/workspace/global',
    ]);
    expect(fs.statSync(oldTranscript).size).toBe(3 * MiB);
  });
});

describe('free space floor', () => {
  it('holds work while the data disk is low, says so in status, spends no retry, and answers once space is back', async () => {
    let free = 100 * MiB;
    const { core, runtime, config } = makeCore(
      { minFreeBytes: 512 * MiB },
      {
        statfs: () => ({ bavail: free / 4096, bsize: 4096 }),
        recheckBaseMs: 50,
        recheckMaxMs: 100,
      },
    );
    await core.start();
    const group = core.addGroup({ name: 'Family' });
    suite.fake.script([textTurn('Room again.')]);
    const posted = core.postLocal('Family', 'Alice', '@Andy hello?');
    const waiting = core.waitForReply(group.jid, posted.message.seq, 15_000);

    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(runtime.startCalls).toBe(0);
    const status = await core.status();
    expect(status.disk).toMatchObject({
      low: true,
      freeBytes: 100 * MiB,
      waiting: [group.jid],
      summary: `100 MB free in ${config.home}, below the 512 MB needed to start runs`,
    });
    expect(status.queue.retrying).toEqual([]);
    expect(core.groups.resolve('Family').paused).toBe(false);

    free = 2048 * MiB;
    const reply = await waiting;
    expect(reply.replies.map((m) => m.text)).toEqual(['Room again.']);
    expect(runtime.startCalls).toBe(1);
    const after = await core.status();
    expect(after.disk).toMatchObject({ low: false, waiting: [] });
    expect(after.disk.summary).toBe(`2 GB free in ${config.home}`);
  });
});

describe('disk settings', () => {
  it('defaults to a 2 GB budget per group and a 512 MB free-space floor', () => {
    const config = loadConfig({ CLAWBAR_HOME: os.tmpdir() }, () => undefined);
    expect(config.groupMaxBytes).toBe(2 * 1024 * MiB);
    expect(config.minFreeBytes).toBe(512 * MiB);
  });

  it('takes both from the environment over stored settings, in bytes', () => {
    const stored: Record<string, string> = { groupMaxBytes: String(8 * MiB), minFreeBytes: '0' };
    const fromSettings = loadConfig({ CLAWBAR_HOME: os.tmpdir() }, (key) => stored[key]);
    expect(fromSettings).toMatchObject({ groupMaxBytes: 8 * MiB, minFreeBytes: 0 });
    const fromEnv = loadConfig(
      {
        CLAWBAR_HOME: os.tmpdir(),
        CLAWBAR_GROUP_MAX_BYTES: String(5 * MiB),
        CLAWBAR_MIN_FREE_BYTES: String(64 * MiB),
      },
      (key) => stored[key],
    );
    expect(fromEnv).toMatchObject({ groupMaxBytes: 5 * MiB, minFreeBytes: 64 * MiB });
  });

  it('refuses a budget that is not a whole number of bytes, or under 1 MB, with the range', () => {
    expect(() =>
      loadConfig({ CLAWBAR_HOME: os.tmpdir(), CLAWBAR_GROUP_MAX_BYTES: '2GB' }, () => undefined),
    ).toThrow(/CLAWBAR_GROUP_MAX_BYTES must be a whole number from 1048576 to/);
    expect(() =>
      loadConfig({ CLAWBAR_HOME: os.tmpdir(), CLAWBAR_GROUP_MAX_BYTES: '1000' }, () => undefined),
    ).toThrow(/got "1000"/);
    expect(() =>
      loadConfig({ CLAWBAR_HOME: os.tmpdir(), CLAWBAR_MIN_FREE_BYTES: '-1' }, () => undefined),
    ).toThrow(/CLAWBAR_MIN_FREE_BYTES must be a whole number/);
  });
});

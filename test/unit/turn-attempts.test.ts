/**
 * Crash-loop protection: attempts at a group's pending messages are counted in the database
 * (`turn_attempts`), and once {@link MAX_TURN_ATTEMPTS} are spent the messages are given up with
 * a notice instead of being run again. Real SQLite files in temp dirs; the crash-loop test kills
 * a real process in the middle of a turn.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RunFailedError } from '../../main/core/agent/agent-run.js';
import { ModelError, type ModelErrorKind } from '../../main/core/agent/model-errors.js';
import { MAX_TURN_ATTEMPTS, messageTurns, taskTurn } from '../../main/core/agent/turns.js';
import type { RunOutcome } from '../../main/core/queue/group-queue.js';
import { ImageMissingError } from '../../main/core/sandbox/runtime.js';
import {
  MAX_TURN_ERROR_CHARS,
  openStore,
  type Group,
  type Store,
} from '../../main/core/store/index.js';
import { tempStore, type TempStore } from '../helpers/store.js';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
const USAGE = { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 };
const CRASHED = { ok: false, error: new Error('the agent container exited (code 1)') } as const;

let temp: TempStore;
let store: Store;
let family: Group;
/** Stores a test opened again on the temp file; closed before the temp dir goes. */
const reopened: Store[] = [];

beforeEach(() => {
  temp = tempStore('clawbar-attempts-');
  ({ store, family } = temp);
});
afterEach(() => {
  for (const other of reopened.splice(0)) other.close();
  temp.close();
});

function reopen(): Store {
  const other = openStore(path.join(temp.dir, 'clawbar.db'));
  reopened.push(other);
  return other;
}

let nextId = 0;
function post(text: string): number {
  nextId += 1;
  return store.insertMessage({
    chatJid: family.jid,
    id: `m${nextId}`,
    sender: 'local:alice',
    senderName: 'Alice',
    text,
    timestamp: 1_000 + nextId,
  }).message.seq;
}

function source(extra: { onGaveUp?: (turnId: string, throughSeq: number) => void } = {}) {
  return messageTurns({ store, groupJid: family.jid, timezone: 'UTC', now: () => 5_000, ...extra });
}

describe('turn attempts in the store', () => {
  it('counts attempts at the same cursor and starts again at 1 for another', () => {
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
    expect(store.recordTurnAttempt(family.jid, { afterSeq: 4, throughSeq: 5 }, 10)).toMatchObject({
      afterSeq: 4,
      throughSeq: 5,
      attempts: 1,
    });
    store.recordTurnError(family.jid, 4, 'container crashed', 11);
    // Messages arrived in between: the next attempt carried them too.
    expect(store.recordTurnAttempt(family.jid, { afterSeq: 4, throughSeq: 7 }, 12)).toEqual({
      groupJid: family.jid,
      afterSeq: 4,
      throughSeq: 7,
      attempts: 2,
      lastError: 'container crashed',
      updatedAt: 12,
    });
    // The cursor moved: these are other messages, with a clean record.
    expect(store.recordTurnAttempt(family.jid, { afterSeq: 9, throughSeq: 10 }, 13)).toMatchObject({
      afterSeq: 9,
      throughSeq: 10,
      attempts: 1,
      lastError: null,
    });
  });

  it('refuses an attempt that carries no message', () => {
    expect(() => store.recordTurnAttempt(family.jid, { afterSeq: 4, throughSeq: 4 }, 10)).toThrow(
      /CHECK constraint failed/,
    );
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
  });

  it('keeps an error only for the attempt it belongs to, cut to a bounded length', () => {
    store.recordTurnAttempt(family.jid, { afterSeq: 4, throughSeq: 5 }, 10);
    store.recordTurnError(family.jid, 3, 'an older run', 11);
    expect(store.turnAttemptOf(family.jid)?.lastError).toBeNull();
    store.recordTurnError(family.jid, 4, 'x'.repeat(100_000), 12);
    expect(store.turnAttemptOf(family.jid)?.lastError).toHaveLength(MAX_TURN_ERROR_CHARS + 1);
  });

  it('takes back an attempt that was not the messages’ fault, never below zero', () => {
    store.recordTurnAttempt(family.jid, { afterSeq: 4, throughSeq: 5 }, 10);
    store.recordTurnAttempt(family.jid, { afterSeq: 4, throughSeq: 5 }, 11);
    store.forgiveTurnAttempt(family.jid, 4, 12);
    expect(store.turnAttemptOf(family.jid)?.attempts).toBe(1);
    store.forgiveTurnAttempt(family.jid, 3, 13); // another cursor: not this count
    store.forgiveTurnAttempt(family.jid, 4, 14);
    store.forgiveTurnAttempt(family.jid, 4, 15);
    expect(store.turnAttemptOf(family.jid)?.attempts).toBe(0);
  });

  it('is cleared by a commit and by a skip, in their own transaction', () => {
    const seq = post('@Andy hi');
    store.recordTurnAttempt(family.jid, { afterSeq: 0, throughSeq: 1 }, 10);
    store.commitTurn({
      groupJid: family.jid,
      throughSeq: seq,
      turnId: 't1',
      replies: [],
      transcript: null,
      now: 11,
    });
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();

    const next = post('@Andy again');
    store.recordTurnAttempt(family.jid, { afterSeq: seq, throughSeq: next }, 12);
    store.skipTurn({ groupJid: family.jid, throughSeq: next, turnId: 't2', notice: 'no', now: 13 });
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
  });

  it('keeps the count when the commit fails and rolls back', () => {
    const seq = post('@Andy hi');
    store.recordTurnAttempt(family.jid, { afterSeq: 0, throughSeq: 1 }, 10);
    expect(() =>
      store.commitTurn({
        groupJid: family.jid,
        throughSeq: seq,
        turnId: 't1',
        replies: [{ chatJid: 'local:nobody', text: 'to a chat that does not exist' }],
        transcript: null,
        now: 11,
      }),
    ).toThrow();
    expect(store.turnAttemptOf(family.jid)).toMatchObject({ afterSeq: 0, attempts: 1 });
    expect(store.cursorOf(family.jid)).toBe(0);
  });

  it('goes with its group when the group is removed', () => {
    store.recordTurnAttempt(family.jid, { afterSeq: 0, throughSeq: 1 }, 10);
    store.removeGroup(family.jid);
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
  });

  it('is found again after the file is closed and opened by a new store', () => {
    store.recordTurnAttempt(family.jid, { afterSeq: 7, throughSeq: 8 }, 10);
    store.recordTurnError(family.jid, 7, 'out of memory', 11);
    store.close();
    store = reopen();
    expect(store.turnAttemptOf(family.jid)).toMatchObject({
      afterSeq: 7,
      attempts: 1,
      lastError: 'out of memory',
    });
  });
});

describe('message turns and their attempts', () => {
  it('counts an attempt only once the prompt has reached the container', () => {
    post('@Andy hi');
    const turn = source().next()!;
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
    turn.began?.(10);
    expect(store.turnAttemptOf(family.jid)).toMatchObject({ afterSeq: 0, attempts: 1 });
  });

  it(`gives the messages up with a notice after ${MAX_TURN_ATTEMPTS} failed attempts, and goes on with later ones`, () => {
    const first = post('@Andy do the impossible');
    const second = post('and quickly');
    for (let attempt = 1; attempt <= MAX_TURN_ATTEMPTS; attempt++) {
      const run = source();
      const turn = run.next();
      expect(turn?.throughSeq, `attempt ${attempt}`).toBe(second);
      turn!.began?.(attempt);
      run.runEnded?.({ outcome: { ...CRASHED, failure: 'retry' }, killedBy: null, now: attempt });
    }
    const closed: Array<[string, number]> = [];
    const run = source({ onGaveUp: (turnId, throughSeq) => closed.push([turnId, throughSeq]) });

    expect(run.next()).toBeNull();

    expect(store.cursorOf(family.jid)).toBe(second);
    const [notice] = store.queuedOutbox();
    expect(notice).toMatchObject({
      kind: 'notice',
      chatJid: family.jid,
      text: `Sorry, I gave up on your last message after ${MAX_TURN_ATTEMPTS} attempts: the agent container exited (code 1).`,
    });
    expect(closed).toEqual([[notice!.turnId, second]]);
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
    // The given-up messages stay in the history.
    expect(store.messagesSince(family.jid, first - 1).map((m) => m.seq)).toEqual([first, second]);

    const later = post('@Andy are you there?');
    const turn = run.next();
    expect(turn?.throughSeq).toBe(later);
    expect(turn?.prompt).toContain('are you there?');
    expect(turn?.prompt).not.toContain('impossible');
  });

  it('does not count a run the user stopped, one killed at shutdown, or one the container engine lost', () => {
    post('@Andy hi');
    for (const ending of [
      { outcome: { ...CRASHED, failure: 'retry' as const }, killedBy: 'stop' as const },
      { outcome: { ...CRASHED, failure: 'retry' as const }, killedBy: 'shutdown' as const },
      { outcome: { ...CRASHED, failure: 'not-ready' as const }, killedBy: null },
    ]) {
      for (let i = 0; i < MAX_TURN_ATTEMPTS + 1; i++) {
        const run = source();
        run.next()!.began?.(i);
        run.runEnded?.({ ...ending, now: i });
      }
    }
    expect(store.turnAttemptOf(family.jid)?.attempts).toBe(0);
    expect(source().next()).not.toBeNull();
    expect(store.queuedOutbox()).toEqual([]);
  });

  it('does not count a failure of the key, the account or the setup, found among its causes', () => {
    post('@Andy hi');
    const modelFailure = (kind: ModelErrorKind) =>
      new RunFailedError('the turn failed', {
        cause: new ModelError(`model call failed (${kind})`, { kind, retryable: false }),
      });
    const causes: Error[] = [
      modelFailure('no_key'),
      modelFailure('auth'),
      modelFailure('billing'),
      modelFailure('permission'),
      modelFailure('not_found'),
      // Deeper in the chain, as a start failure wraps the runtime's error.
      new RunFailedError('could not start the agent container', {
        cause: new Error('start failed', { cause: new ImageMissingError('clawbar-agent:latest') }),
      }),
    ];
    for (const [i, error] of causes.entries()) {
      for (let attempt = 0; attempt < MAX_TURN_ATTEMPTS; attempt++) {
        const run = source();
        run.next()!.began?.(i);
        run.runEnded?.({ outcome: { ok: false, error, failure: 'final' }, killedBy: null, now: i });
      }
    }
    expect(store.turnAttemptOf(family.jid)?.attempts).toBe(0);
    expect(source().next()).not.toBeNull();
    expect(store.queuedOutbox()).toEqual([]);
  });

  it('still counts model failures the request itself may have caused', () => {
    post('@Andy hi');
    const refused: RunOutcome = {
      ok: false,
      error: new RunFailedError('the API rejected the request', {
        cause: new ModelError('The Anthropic API rejected the request (400).', {
          kind: 'bad_request',
          retryable: false,
        }),
      }),
      failure: 'final',
    };
    for (let attempt = 1; attempt <= 2; attempt++) {
      const run = source();
      run.next()!.began?.(attempt);
      run.runEnded?.({ outcome: refused, killedBy: null, now: attempt });
    }
    expect(store.turnAttemptOf(family.jid)).toMatchObject({
      attempts: 2,
      lastError: 'the API rejected the request',
    });
  });

  it('gives up only the messages the spent attempts carried; one that came later is a turn of its own', () => {
    const poisoned = post('@Andy the poisoned message');
    const attempt = () => {
      const run = source();
      const turn = run.next()!;
      turn.began?.(1);
      run.runEnded?.({ outcome: { ...CRASHED, failure: 'retry' }, killedBy: null, now: 2 });
      return turn.throughSeq;
    };
    expect(attempt()).toBe(poisoned);
    expect(attempt()).toBe(poisoned);
    // Arrives between attempts: the last attempt carries it too, so it goes with the give-up.
    const alongside = post('and this too');
    expect(attempt()).toBe(alongside);
    // Arrives after the last attempt: never handed to an agent.
    const later = post('@Andy a new question');
    const closed: Array<[string, number]> = [];

    const turn = source({ onGaveUp: (id, through) => closed.push([id, through]) }).next();

    expect(store.cursorOf(family.jid)).toBe(alongside);
    expect(closed).toEqual([[expect.stringMatching(/^gave-up:/), alongside]]);
    expect(turn?.throughSeq).toBe(later);
    expect(turn?.prompt).toContain('a new question');
    expect(turn?.prompt).not.toContain('poisoned');
    expect(turn?.prompt).not.toContain('and this too');
  });

  it('leaves a later message that is not a trigger pending after a give-up', () => {
    const poisoned = post('@Andy the poisoned message');
    for (let attempt = 1; attempt <= MAX_TURN_ATTEMPTS; attempt++) {
      const run = source();
      run.next()!.began?.(attempt);
      run.runEnded?.({ outcome: { ...CRASHED, failure: 'retry' }, killedBy: null, now: attempt });
    }
    const chatter = post('just chatting');

    expect(source().next()).toBeNull();

    expect(store.cursorOf(family.jid)).toBe(poisoned);
    expect(store.messagesSince(family.jid, poisoned).map((m) => m.seq)).toEqual([chatter]);
    // The next trigger answers both.
    post('@Andy what do you think?');
    expect(source().next()?.prompt).toContain('just chatting');
  });

  it('leaves no count behind for a turn that was closed before its run ended', () => {
    const seq = post('@Andy hi');
    const run = source();
    const turn = run.next()!;
    turn.began?.(1);
    turn.commit({ turnId: 't1', replies: ['hello'], messages: null, usage: USAGE, now: 2 });
    run.runEnded?.({ outcome: { ...CRASHED, failure: 'retry' }, killedBy: null, now: 3 });
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
    expect(store.cursorOf(family.jid)).toBe(seq);
  });

  it('does not count scheduled task turns', () => {
    post('@Andy waiting');
    const task = taskTurn({
      store,
      group: family,
      prompt: 'briefing',
      history: null,
      timezone: 'UTC',
    });
    const turn = task.next()!;
    turn.began?.(1);
    task.runEnded?.({ outcome: { ...CRASHED, failure: 'retry' }, killedBy: null, now: 2 });
    expect(store.turnAttemptOf(family.jid)).toBeUndefined();
  });

  it('stops a crash loop: a host killed in the middle of the same turn gives it up on the next start', async () => {
    const file = path.join(temp.dir, 'clawbar.db');
    const seq = post('@Andy the message that kills the host');
    store.close();
    // One "serve": open the database, plan the pending turn, hand it to the agent, and die
    // before the turn is closed, as a host killed by its run would.
    const host = `
      const { openStore } = await import(${JSON.stringify(moduleUrl('main/core/store/index.ts'))});
      const { messageTurns } = await import(${JSON.stringify(moduleUrl('main/core/agent/turns.ts'))});
      const store = openStore(process.argv[1]);
      const turn = messageTurns({ store, groupJid: 'local:family', timezone: 'UTC' }).next();
      if (!turn) { console.log('nothing to run'); process.exit(0); }
      turn.began(Date.now());
      console.log('running');
      process.kill(process.pid, 'SIGKILL');`;

    const starts: string[] = [];
    for (let start = 0; start < MAX_TURN_ATTEMPTS + 2; start++) {
      const run = await runNodeScript(host, [file]);
      starts.push(`${run.stdout.trim()} ${run.signal ?? 'exit'}`);
      if (run.signal === null) break;
    }

    expect(starts).toEqual([
      ...Array(MAX_TURN_ATTEMPTS).fill('running SIGKILL'),
      'nothing to run exit',
    ]);
    store = reopen();
    expect(store.cursorOf(family.jid)).toBe(seq);
    expect(store.queuedOutbox().map((item) => item.text)).toEqual([
      `Sorry, I gave up on your last message after ${MAX_TURN_ATTEMPTS} attempts: ` +
        'no run lived to say why (Clawbar itself may have stopped each time).',
    ]);
    const later = post('@Andy hello again');
    expect(source().next()?.throughSeq).toBe(later);
  }, 60_000);
});

function moduleUrl(relative: string): string {
  return pathToFileURL(path.join(projectRoot, relative)).href;
}

/** Runs an ES module snippet in a separate Node process that can import the TypeScript sources. */
function runNodeScript(
  script: string,
  args: string[],
): Promise<{ signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, ...args],
      { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code !== null && code !== 0) {
        reject(new Error(`the host script exited ${code}:\n${stderr}`));
        return;
      }
      resolve({ signal, stdout, stderr });
    });
  });
}

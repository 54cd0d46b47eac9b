/**
 * `serve` on a data disk that fills up: a small tmpfs as `CLAWBAR_HOME`, filled to the brim
 * while serve runs. Before issue 6, serve hung for good in pino's exit flush (ENOSPC retried
 * for ever), ignored SIGTERM, and the next serve would not start.
 *
 * What must hold: serve keeps answering `status` over its control socket, says the disk is
 * low and that runs wait, starts no run, drops its log file for stderr with one line, and
 * stops on SIGTERM with exit code 0. A new serve starts on the full disk, and once space is
 * freed the message that waited is answered, exactly once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CoreStatus } from '../../main/core/core.js';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
import {
  cli,
  ensureAgentImage,
  requireBuild,
  startServe,
  TEST_AGENT_IMAGE,
  type ServeProcess,
} from '../helpers/clawbar.js';
import { requireDocker } from '../helpers/docker.js';
import { fillDisk, mountTmpfs, requireTmpfs, type Tmpfs } from '../helpers/tmpfs.js';

const API_KEY = 'sk-ant-test-full-disk';
const MiB = 1024 * 1024;
/** The free-space floor serve is given: runs need this much to start. */
const FLOOR = 4 * MiB;

requireDocker('serve on a full disk', () => {
  requireTmpfs('with a tmpfs data dir', () => {
    let fake: FakeAnthropic;
    let disk: Tmpfs;
    let env: NodeJS.ProcessEnv;
    const serves: ServeProcess[] = [];

    beforeAll(async () => {
      requireBuild();
      await ensureAgentImage();
      fake = await startFakeAnthropic({ apiKey: API_KEY });
      disk = mountTmpfs(24 * MiB);
      env = {
        CLAWBAR_HOME: disk.dir,
        ANTHROPIC_API_KEY: API_KEY,
        ANTHROPIC_BASE_URL: fake.url,
        CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
        CLAWBAR_MIN_FREE_BYTES: String(FLOOR),
      };
    }, 180_000);

    afterAll(async () => {
      for (const serve of serves) await serve.stop();
      await fake?.close();
      disk?.unmount();
    });

    async function status(): Promise<CoreStatus & { serving: boolean }> {
      const run = await cli(['status', '--json'], env, 15_000);
      expect(run.code, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as CoreStatus & { serving: boolean };
    }

    async function history(): Promise<Array<{ fromAssistant: boolean; text: string }>> {
      const run = await cli(['messages', '--group', 'family', '--json'], env, 15_000);
      expect(run.code, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as Array<{ fromAssistant: boolean; text: string }>;
    }

    /** Fills the disk until `leave` bytes are free (roughly: tmpfs counts whole pages). */
    function fillUntil(leave: number): string {
      const file = path.join(disk.dir, 'filler-partial.bin');
      const free = fs.statfsSync(disk.dir).bavail * fs.statfsSync(disk.dir).bsize;
      fs.writeFileSync(file, Buffer.alloc(Math.max(0, free - leave), 0x5a));
      return file;
    }

    it('stays responsive, refuses runs clearly, stops on SIGTERM, and answers once space is back', async () => {
      expect((await cli(['groups', 'add', '--name', 'Family'], env)).code).toBe(0);
      const first = await startServe(env, disk.dir);
      serves.push(first);
      fake.script([textTurn('Room again.')]);

      // Below the floor, with room for the database: the message is stored, its run waits.
      const partial = fillUntil(2 * MiB);
      const sent = await cli(['send', '--group', 'family', '@Andy are you there?'], env);
      expect(sent.code, sent.stderr).toBe(0);
      let s = await status();
      expect(s.disk).toMatchObject({ low: true, waiting: ['local:family'] });
      expect(s.disk.summary).toMatch(
        new RegExp(
          `^\\d+(\\.\\d)? (KB|MB) free in ${disk.dir}, below the 4 MB needed to start runs$`,
        ),
      );
      expect(s.queue.retrying).toEqual([]);
      const human = await cli(['status'], env);
      expect(human.stdout).toMatch(
        /^disk: +.* below the 4 MB needed to start runs; 1 group\(s\) waiting for it$/m,
      );

      // To the brim. Serve still answers, says so, and reports what it cannot store.
      const brim = fillDisk(disk.dir);
      expect(fs.statfsSync(disk.dir).bavail).toBe(0);
      s = await status();
      expect(s.serving).toBe(true);
      expect(s.disk).toMatchObject({ low: true, freeBytes: 0 });
      // Each refused message logs an error with its stack: the log file's last page fills, and
      // the log moves to stderr, saying so once.
      for (let i = 0; i < 20 && !first.logs().includes('could not be written'); i++) {
        const refused = await cli(['send', '--group', 'family', `@Andy and now ${i}?`], env);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toMatch(/disk is full/);
      }
      expect(first.logs()).toMatch(
        /the log file .*clawbar\.log could not be written; logging continues on stderr only/,
      );
      expect(first.child.exitCode).toBeNull();
      expect((await status()).serving).toBe(true);
      expect(fake.requests).toHaveLength(0);

      // SIGTERM on the full disk: a clean stop.
      expect(await first.stop()).toBe(0);

      // A new serve starts on the full disk, and holds the waiting message.
      const second = await startServe(env, disk.dir);
      serves.push(second);
      s = await status();
      expect(s.disk.low).toBe(true);
      expect(fake.requests).toHaveLength(0);

      // Space comes back: the held message is answered, once, without a restart.
      fs.rmSync(brim);
      fs.rmSync(partial);
      const deadline = Date.now() + 60_000;
      let replies: string[] = [];
      while (Date.now() < deadline) {
        replies = (await history()).filter((m) => m.fromAssistant).map((m) => m.text);
        if (replies.length > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(replies).toEqual(['Room again.']);
      expect(fake.requests).toHaveLength(1);
      expect((await status()).disk).toMatchObject({ low: false, waiting: [] });
      expect(await second.stop()).toBe(0);
    }, 180_000);
  });
});

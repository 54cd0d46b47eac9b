/**
 * Migration 009 (usage per group, day and model) on a real SQLite file: rows recorded before it
 * keep their counts under the unknown model `''`, and from then on each call adds to its
 * model's row, with the calls counted.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate } from '../../main/core/store/database.js';
import { openStore } from '../../main/core/store/index.js';
import { MIGRATIONS } from '../../main/core/store/migrations/index.js';

let dir: string;
let file: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-usage-model-'));
  file = path.join(dir, 'clawbar.db');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const usage = (input: number, output: number, read = 0, write = 0) => ({
  inputTokens: input,
  outputTokens: output,
  cacheReadTokens: read,
  cacheWriteTokens: write,
});

describe('migration 009: usage per model', () => {
  it('keeps the usage recorded before it under the unknown model, with no calls counted', () => {
    const before = new Database(file);
    migrate(before, MIGRATIONS.slice(0, 8));
    before
      .prepare(
        `INSERT INTO usage (group_jid, day, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
         VALUES ('local:family', '2026-03-10', 100, 20, 300, 40)`,
      )
      .run();
    before.close();

    const store = openStore(file);
    try {
      expect(store.usageOnDay('2026-03-10')).toEqual([
        { groupJid: 'local:family', model: '', calls: 0, usage: usage(100, 20, 300, 40) },
      ]);
      expect(store.usageOf('local:family', '2026-03-10')).toEqual(usage(100, 20, 300, 40));
    } finally {
      store.close();
    }
  });

  it('adds each call to its group, day and model, and sums the models for the day', () => {
    const store = openStore(file);
    try {
      store.addUsage('local:family', '2026-03-10', usage(10, 1, 100, 5), 'claude-sonnet-4-6');
      store.addUsage('local:family', '2026-03-10', usage(20, 2, 200, 0), 'claude-sonnet-4-6');
      store.addUsage('local:family', '2026-03-10', usage(1, 1), 'claude-haiku-4-5');
      store.addUsage('local:work', '2026-03-10', usage(7, 7));
      store.addUsage('local:family', '2026-03-11', usage(3, 3), 'claude-sonnet-4-6');

      expect(store.usageOnDay('2026-03-10')).toEqual([
        { groupJid: 'local:family', model: 'claude-haiku-4-5', calls: 1, usage: usage(1, 1) },
        {
          groupJid: 'local:family',
          model: 'claude-sonnet-4-6',
          calls: 2,
          usage: usage(30, 3, 300, 5),
        },
        { groupJid: 'local:work', model: '', calls: 1, usage: usage(7, 7) },
      ]);
      expect(store.usageOf('local:family', '2026-03-10')).toEqual(usage(31, 4, 300, 5));
      expect(store.usageOf('local:family', '2026-03-12')).toEqual(usage(0, 0));
    } finally {
      store.close();
    }
  });
});

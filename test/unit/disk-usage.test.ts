/**
 * The walk that measures a group's folders for its disk budget, on real files in a temp dir:
 * links are never followed, what counts is what is allocated, and the walk is bounded.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { availableBytes, formatBytes, measureFolders } from '../../main/core/disk.js';

const MiB = 1024 * 1024;
let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-disk-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Writes a file of `bytes` real (non-zero, so never deduplicated or compressed) bytes. */
function writeReal(file: string, bytes: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.alloc(bytes, 0x5a));
}

/** What the filesystem says the tree takes: the sum of blocks of every entry, by `du`'s rule. */
function allocated(...files: string[]): number {
  return files.reduce((sum, f) => sum + fs.lstatSync(f).blocks * 512, 0);
}

describe('measureFolders', () => {
  it('adds up files in nested directories by the blocks they take', async () => {
    const group = path.join(tmp, 'group');
    writeReal(path.join(group, 'a.bin'), 3 * MiB);
    writeReal(path.join(group, 'deep', 'er', 'b.bin'), 2 * MiB);
    const usage = await measureFolders([group]);
    expect(usage.incomplete).toBeUndefined();
    expect(usage.entries).toBe(5); // group, a.bin, deep, er, b.bin
    expect(usage.bytes).toBe(
      allocated(
        group,
        path.join(group, 'a.bin'),
        path.join(group, 'deep'),
        path.join(group, 'deep', 'er'),
        path.join(group, 'deep', 'er', 'b.bin'),
      ),
    );
    expect(usage.bytes).toBeGreaterThanOrEqual(5 * MiB);
  });

  it('does not count what a symlink points to, outside the folder or to another group', async () => {
    const outside = path.join(tmp, 'host-big.bin');
    writeReal(outside, 8 * MiB);
    const other = path.join(tmp, 'other-group');
    writeReal(path.join(other, 'theirs.bin'), 4 * MiB);
    const group = path.join(tmp, 'group');
    writeReal(path.join(group, 'mine.bin'), 1 * MiB);
    fs.symlinkSync(outside, path.join(group, 'link-to-file'));
    fs.symlinkSync(other, path.join(group, 'link-to-group'));
    fs.symlinkSync('..', path.join(group, 'link-to-parent'));

    const usage = await measureFolders([group]);
    expect(usage.incomplete).toBeUndefined();
    expect(usage.bytes).toBeLessThan(2 * MiB);
    expect(usage.entries).toBe(5); // the folder, its file, three links (not their targets)
  });

  it('does not enter a root that is itself a symlink', async () => {
    const real = path.join(tmp, 'real');
    writeReal(path.join(real, 'big.bin'), 6 * MiB);
    const root = path.join(tmp, 'root-link');
    fs.symlinkSync(real, root);
    const usage = await measureFolders([root]);
    expect(usage.entries).toBe(1);
    expect(usage.bytes).toBeLessThan(MiB);
  });

  it('counts a sparse file by the little it takes, not the size it claims', async () => {
    const group = path.join(tmp, 'group');
    fs.mkdirSync(group);
    const sparse = path.join(group, 'sparse.bin');
    const fd = fs.openSync(sparse, 'w');
    fs.ftruncateSync(fd, 24 * 1024 * MiB); // 24 GB, with no block written
    fs.writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 12 * 1024 * MiB);
    fs.closeSync(fd);
    expect(fs.statSync(sparse).size).toBe(24 * 1024 * MiB);

    const usage = await measureFolders([group]);
    expect(usage.bytes).toBe(allocated(group, sparse));
    expect(usage.bytes).toBeLessThan(MiB);
  });

  it('counts a file with many hard links once', async () => {
    const group = path.join(tmp, 'group');
    writeReal(path.join(group, 'big.bin'), 4 * MiB);
    for (let i = 0; i < 10; i++)
      fs.linkSync(path.join(group, 'big.bin'), path.join(group, `link-${i}`));
    const usage = await measureFolders([group]);
    expect(usage.bytes).toBeGreaterThanOrEqual(4 * MiB);
    expect(usage.bytes).toBeLessThan(5 * MiB);
  });

  it('adds several roots, and reports each one', async () => {
    // As for the main group: its folder and the global memory it may write.
    const group = path.join(tmp, 'groups', 'main');
    const global = path.join(tmp, 'groups', 'global');
    writeReal(path.join(group, 'a.bin'), 1 * MiB);
    writeReal(path.join(global, 'b.bin'), 3 * MiB);
    const usage = await measureFolders([group, global, path.join(tmp, 'not-made-yet')]);
    expect(usage.byRoot.map((r) => r.root)).toEqual([
      group,
      global,
      path.join(tmp, 'not-made-yet'),
    ]);
    const [g, s, missing] = usage.byRoot.map((r) => r.bytes);
    expect(g).toBeGreaterThanOrEqual(MiB);
    expect(s).toBeGreaterThanOrEqual(3 * MiB);
    expect(missing).toBe(0);
    expect(usage.bytes).toBe((g ?? 0) + (s ?? 0));
  });

  it('stops at the entry cap and says the folder is incomplete, in one huge directory and in a deep tree', async () => {
    const flat = path.join(tmp, 'flat');
    fs.mkdirSync(flat);
    for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(flat, `f${i}`), '');
    const wide = await measureFolders([flat], { maxEntries: 100 });
    expect(wide.incomplete).toEqual({
      reason: 'too-many-entries',
      detail: 'more than 100 files and folders',
    });
    expect(wide.entries).toBeLessThanOrEqual(100);

    let deep = path.join(tmp, 'deep');
    for (let i = 0; i < 150; i++) deep = path.join(deep, 'd');
    fs.mkdirSync(deep, { recursive: true });
    const tall = await measureFolders([path.join(tmp, 'deep')], { maxEntries: 100 });
    expect(tall.incomplete?.reason).toBe('too-many-entries');

    // Under the cap, the same folder is measured in full.
    expect((await measureFolders([flat], { maxEntries: 1000 })).incomplete).toBeUndefined();
  });

  it('stops at its deadline and says so', async () => {
    const group = path.join(tmp, 'group');
    for (let i = 0; i < 50; i++) fs.mkdirSync(path.join(group, `d${i}`), { recursive: true });
    const usage = await measureFolders([group], { timeoutMs: -1 });
    expect(usage.incomplete?.reason).toBe('too-slow');
  });
});

describe('free space and sizes', () => {
  it('reads the space available to this user from statfs', () => {
    expect(availableBytes(tmp, () => ({ bavail: 10, bsize: 4096 }))).toBe(40_960);
    expect(availableBytes(tmp)).toBeGreaterThan(0);
  });

  it('formats sizes the way the notices and status show them', () => {
    expect(formatBytes(0)).toBe('0 bytes');
    expect(formatBytes(512 * MiB)).toBe('512 MB');
    expect(formatBytes(2 * 1024 * MiB)).toBe('2 GB');
    expect(formatBytes(2.3 * 1024 * MiB)).toBe('2.3 GB');
    expect(formatBytes(120 * MiB + 5)).toBe('120 MB');
    expect(formatBytes(1536)).toBe('1.5 KB');
  });
});

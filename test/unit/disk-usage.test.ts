/**
 * The walk that measures a group's folders for its disk budget, on real files in a temp dir:
 * links are never followed, what counts is what is allocated, and the walk is bounded.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { availableBytes, formatBytes, measureFolders } from '../../main/core/disk.js';
import { walkMode } from '../../main/core/safe-fs.js';

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

/**
 * A container racing the walk: it swaps a directory between the `lstat` that found it and the
 * open that reads it (the `beforeOpenDir` hook stands for that moment). `host/` stands in for
 * `/`: a big file and many entries the walk must never see. Both walks run: through
 * `/proc/self/fd` (Linux) and by path (macOS).
 */
const WALKS = walkMode.procFd ? ['/proc/self/fd', 'portable'] : ['portable'];

describe.each(WALKS)('measureFolders racing an agent, with the %s walk', (walk) => {
  const platformWalk = walkMode.procFd;
  let group: string;
  let host: string;

  beforeEach(() => {
    walkMode.procFd = walk === '/proc/self/fd';
    group = path.join(tmp, 'group');
    host = path.join(tmp, 'host');
    writeReal(path.join(host, 'big.bin'), 8 * MiB);
    writeReal(path.join(host, 'b', 'big.bin'), 8 * MiB);
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(host, 'b', `f${i}`), '');
  });
  afterEach(() => {
    walkMode.procFd = platformWalk;
  });

  it('does not walk a host folder a directory was swapped for (a link at its name)', async () => {
    writeReal(path.join(group, 'sub', 'mine.bin'), 4096);
    const swapped: string[] = [];
    const usage = await measureFolders([group], {
      beforeOpenDir: (dir) => {
        if (dir !== path.join(group, 'sub')) return;
        fs.rmSync(dir, { recursive: true });
        fs.symlinkSync(host, dir);
        swapped.push(dir);
      },
    });
    expect(swapped).toHaveLength(1);
    expect(usage.bytes).toBeLessThan(MiB);
    expect(usage.entries).toBe(2); // the group and `sub` as it was found; nothing of the host
    expect(usage.incomplete).toBeUndefined();
    expect(usage.dirsSkipped).toBe(1);
  });

  it('does not walk the host folder a path leads to once a parent was swapped for a link', async () => {
    // `group/a/b` is found as a real directory; then `group/a` becomes a link to the host, so
    // the path `group/a/b` leads to `host/b`, a real directory too: O_NOFOLLOW alone cannot
    // tell, the device and inode do.
    writeReal(path.join(group, 'a', 'b', 'mine.bin'), 4096);
    const usage = await measureFolders([group], {
      beforeOpenDir: (dir) => {
        if (dir !== path.join(group, 'a', 'b')) return;
        fs.rmSync(path.join(group, 'a'), { recursive: true });
        fs.symlinkSync(host, path.join(group, 'a'));
      },
    });
    expect(usage.bytes).toBeLessThan(MiB);
    expect(usage.entries).toBe(3); // group, a, b as found
    expect(usage.incomplete).toBeUndefined();
    expect(usage.dirsSkipped).toBe(1);
  });

  it('does not enter a root swapped for a link after it was found', async () => {
    writeReal(path.join(group, 'mine.bin'), 4096);
    const usage = await measureFolders([group], {
      beforeOpenDir: (dir) => {
        if (dir !== group) return;
        fs.rmSync(group, { recursive: true });
        fs.symlinkSync(host, group);
      },
    });
    expect(usage.bytes).toBeLessThan(MiB);
    expect(usage).toMatchObject({ entries: 1, dirsSkipped: 1 });
  });

  it('skips a directory replaced by another one meanwhile, without counting the folder as over budget', async () => {
    // What a tool that moves a folder away and makes a new one does while a turn is measured.
    // (The old one is kept, so the new one cannot reuse its inode number.)
    writeReal(path.join(group, 'node_modules', 'old.bin'), 4096);
    const usage = await measureFolders([group], {
      beforeOpenDir: (dir) => {
        if (dir !== path.join(group, 'node_modules')) return;
        fs.renameSync(dir, path.join(tmp, 'old-node_modules'));
        writeReal(path.join(dir, 'new.bin'), 4096);
      },
    });
    expect(usage.incomplete).toBeUndefined();
    expect(usage.dirsSkipped).toBe(1);
    // Measured again with nothing racing it, the new directory counts.
    const again = await measureFolders([group]);
    expect(again).toMatchObject({ entries: 3, dirsSkipped: 0 });
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

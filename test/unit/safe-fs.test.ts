/**
 * Host code in folders a container writes (issue 6): nothing follows a link an agent planted.
 *
 * Every attack uses the same layout in a temp dir: `home/groups/{family,other,global}` and a
 * `host/` folder outside the home standing in for `/etc` (its `passwd` for `/etc/passwd`).
 * The tests run as root (as CI does), so chown is exercised for real: owners are asserted on
 * the files a link points at.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';

import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { GroupAdmin } from '../../main/core/group-admin.js';
import {
  chownTreeNoFollow,
  DEFAULT_CHOWN_MAX_ENTRIES,
  ensureDirInside,
  readFileInside,
  UnsafePathError,
  walkMode,
  writeFileNew,
} from '../../main/core/safe-fs.js';
import { IMAGE_UID, prepareGroupFolders } from '../../main/core/sandbox/folders.js';
import { InvalidFolderNameError } from '../../main/core/sandbox/mounts.js';
import { openStore, type Store } from '../../main/core/store/index.js';
import { installTemplates } from '../../main/core/templates.js';

/** Some uid that is neither root nor the image's user: a file "someone else" owns. */
const STRANGER_UID = 4242;

let base: string;
let groups: string;
let family: string;
let other: string;
let globalDir: string;
/** Stands in for `/etc`: outside the data directory, never to be touched. */
let host: string;
/** Stands in for `/etc/passwd`. */
let passwd: string;

beforeEach(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-safe-fs-')));
  groups = path.join(base, 'home', 'groups');
  family = path.join(groups, 'family');
  other = path.join(groups, 'other');
  globalDir = path.join(groups, 'global');
  host = path.join(base, 'host');
  passwd = path.join(host, 'passwd');
  for (const dir of [family, other, globalDir, host]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(passwd, 'root:x:0:0\n');
  fs.writeFileSync(path.join(other, 'CLAUDE.md'), "other group's memory\n");
});

afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

/** Runs `body` with the process umask set to `mask`, then restores it. */
function withUmask<T>(mask: number, body: () => T): T {
  const previous = process.umask(mask);
  try {
    return body();
  } finally {
    process.umask(previous);
  }
}

function modeOf(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

function ownerOf(p: string): number {
  return fs.lstatSync(p).uid;
}

/** Everything under `dir` (relative paths), links included, not followed. */
function listTree(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

/** What `promise` rejects with; fails the test when it resolves. */
async function rejected(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

function memoryLogger(): { log: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  return {
    log: pino({ level: 'trace' }, sink),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/**
 * Every case runs with the walk through `/proc/self/fd` (Linux) and with the portable walk that
 * macOS uses, so both are checked here.
 */
const WALKS = walkMode.procFd ? ['/proc/self/fd', 'portable'] : ['portable'];

describe.each(WALKS)('with the %s walk', (walk) => {
  const platformWalk = walkMode.procFd;
  beforeEach(() => {
    walkMode.procFd = walk === '/proc/self/fd';
  });
  afterEach(() => {
    walkMode.procFd = platformWalk;
  });

  describe('ensureDirInside', () => {
    it('creates missing directories with the exact mode asked, whatever the umask', () => {
      const made = withUmask(0o077, () => ensureDirInside(family, 'a/b', { mode: 0o750 }));
      expect(made).toBe(path.join(family, 'a', 'b'));
      expect(modeOf(path.join(family, 'a'))).toBe(0o750);
      expect(modeOf(path.join(family, 'a', 'b'))).toBe(0o750);
    });

    it('refuses a path that leaves the root by name: .., absolute, NUL', () => {
      for (const rel of ['..', '../other', 'a/../../host', '/etc', path.join(host, 'x'), 'a\0b']) {
        expect(thrown(() => ensureDirInside(family, rel))).toBeInstanceOf(UnsafePathError);
      }
      expect(listTree(host)).toEqual(['passwd']);
      expect(listTree(family)).toEqual([]);
    });

    it('refuses a link below the root and creates nothing where it points', () => {
      fs.symlinkSync(host, path.join(family, 'sub'));
      const err = thrown(() => ensureDirInside(family, 'sub/deeper'));
      expect(err).toBeInstanceOf(UnsafePathError);
      expect((err as Error).message).toContain('is a symbolic link');
      expect(listTree(host)).toEqual(['passwd']);
    });

    it('refuses a link to .. and to another group, creating nothing there', () => {
      fs.symlinkSync('..', path.join(family, 'up'));
      fs.symlinkSync(other, path.join(family, 'theirs'));
      expect(thrown(() => ensureDirInside(family, 'up/evil'))).toBeInstanceOf(UnsafePathError);
      expect(thrown(() => ensureDirInside(family, 'theirs/evil'))).toBeInstanceOf(UnsafePathError);
      expect(fs.existsSync(path.join(groups, 'evil'))).toBe(false);
      expect(listTree(other)).toEqual(['CLAUDE.md']);
    });

    it('refuses a root that is itself a link, or a file in the way', () => {
      fs.rmSync(family, { recursive: true });
      fs.symlinkSync(host, family);
      expect(thrown(() => ensureDirInside(family, 'x'))).toBeInstanceOf(UnsafePathError);
      fs.writeFileSync(path.join(other, 'file'), '');
      const err = thrown(() => ensureDirInside(other, 'file/x'));
      expect(err).toBeInstanceOf(UnsafePathError);
      expect((err as Error).message).toContain('is not a directory');
      expect(listTree(host)).toEqual(['passwd']);
    });
  });

  describe('writeFileNew', () => {
    it('creates a file with its content and the exact mode, whatever the umask', () => {
      const outcome = withUmask(0o077, () =>
        writeFileNew(family, 'CLAUDE.md', 'memory\n', { mode: 0o644 }),
      );
      expect(outcome).toBe('created');
      expect(fs.readFileSync(path.join(family, 'CLAUDE.md'), 'utf8')).toBe('memory\n');
      expect(modeOf(path.join(family, 'CLAUDE.md'))).toBe(0o644);
    });

    it('leaves an existing file as it is', () => {
      fs.writeFileSync(path.join(family, 'CLAUDE.md'), 'what the agent wrote');
      expect(writeFileNew(family, 'CLAUDE.md', 'template')).toBe('exists');
      expect(fs.readFileSync(path.join(family, 'CLAUDE.md'), 'utf8')).toBe('what the agent wrote');
    });

    it('does not create a host file through a link to it (the measured attack)', () => {
      const target = path.join(host, 'cron.d-evil');
      fs.symlinkSync(target, path.join(globalDir, 'CLAUDE.md'));
      const err = thrown(() => writeFileNew(globalDir, 'CLAUDE.md', '* * * * * root sh\n'));
      expect(err).toBeInstanceOf(UnsafePathError);
      expect((err as Error).message).toContain('is a symbolic link');
      expect(fs.existsSync(target)).toBe(false);
      expect(fs.lstatSync(path.join(globalDir, 'CLAUDE.md')).isSymbolicLink()).toBe(true);
    });

    it('does not change a host file through a link to it', () => {
      fs.symlinkSync(passwd, path.join(family, 'CLAUDE.md'));
      expect(thrown(() => writeFileNew(family, 'CLAUDE.md', 'x'))).toBeInstanceOf(UnsafePathError);
      expect(fs.readFileSync(passwd, 'utf8')).toBe('root:x:0:0\n');
    });

    it('does not write through a directory link to .. or to another group', () => {
      fs.symlinkSync('..', path.join(family, 'up'));
      fs.symlinkSync(other, path.join(family, 'theirs'));
      expect(thrown(() => writeFileNew(family, 'up/CLAUDE.md', 'x'))).toBeInstanceOf(
        UnsafePathError,
      );
      expect(thrown(() => writeFileNew(family, 'theirs/new.md', 'x'))).toBeInstanceOf(
        UnsafePathError,
      );
      expect(fs.existsSync(path.join(groups, 'CLAUDE.md'))).toBe(false);
      expect(listTree(other)).toEqual(['CLAUDE.md']);
    });

    it('refuses a FIFO in place of the file instead of blocking on it', () => {
      fs.mkdirSync(path.join(family, 'sub'));
      // Node cannot make a FIFO; the system's mkfifo stands in for an agent making one.
      const fifo = path.join(family, 'sub', 'CLAUDE.md');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      const err = thrown(() => writeFileNew(family, 'sub/CLAUDE.md', 'x'));
      expect(err).toBeInstanceOf(UnsafePathError);
      expect((err as Error).message).toContain('is not a regular file');
    });
  });

  describe('readFileInside', () => {
    it('reads a regular file inside the root', () => {
      fs.writeFileSync(path.join(family, 'notes.md'), 'hello');
      expect(readFileInside(family, 'notes.md', { maxBytes: 100 }).toString()).toBe('hello');
    });

    it('refuses a link to a host file, a file over the limit, and a FIFO (without hanging)', () => {
      fs.symlinkSync(passwd, path.join(family, 'passwd'));
      expect(thrown(() => readFileInside(family, 'passwd', { maxBytes: 100 }))).toBeInstanceOf(
        UnsafePathError,
      );
      fs.writeFileSync(path.join(family, 'big'), Buffer.alloc(101));
      expect(
        (thrown(() => readFileInside(family, 'big', { maxBytes: 100 })) as Error).message,
      ).toMatch(/101 bytes, more than the 100 allowed/);
      const fifo = path.join(family, 'pipe');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      expect(
        (thrown(() => readFileInside(family, 'pipe', { maxBytes: 100 })) as Error).message,
      ).toMatch(/not a regular file/);
    });
  });

  describe('chownTreeNoFollow', () => {
    it('hands over what root made inside, and nothing a link points at', async () => {
      fs.mkdirSync(path.join(family, 'docs'));
      fs.writeFileSync(path.join(family, 'CLAUDE.md'), 'memory');
      fs.writeFileSync(path.join(family, 'docs', 'a.md'), 'a');
      fs.writeFileSync(path.join(host, 'shadow'), 'secret');
      fs.symlinkSync(passwd, path.join(family, 'passwd'));
      fs.symlinkSync(host, path.join(family, 'etc'));
      fs.symlinkSync('..', path.join(family, 'up'));
      fs.symlinkSync(other, path.join(family, 'theirs'));
      // A folder someone else owns is neither changed nor entered.
      fs.mkdirSync(path.join(family, 'strangers'));
      fs.writeFileSync(path.join(family, 'strangers', 'root-file'), '');
      fs.chownSync(path.join(family, 'strangers'), STRANGER_UID, STRANGER_UID);

      const result = await chownTreeNoFollow(family, IMAGE_UID, IMAGE_UID, { onlyOwnedBy: 0 });

      // Looked at: CLAUDE.md, docs, docs/a.md, four links, strangers (not entered).
      expect(result).toEqual({ changed: 4, linksSkipped: 4, examined: 8, capped: false });
      for (const p of ['', 'CLAUDE.md', 'docs', 'docs/a.md']) {
        expect(ownerOf(path.join(family, p))).toBe(IMAGE_UID);
      }
      expect(ownerOf(path.join(family, 'strangers'))).toBe(STRANGER_UID);
      expect(ownerOf(path.join(family, 'strangers', 'root-file'))).toBe(0);
      // The links themselves are left as they were, and so is everything they point at.
      expect(ownerOf(path.join(family, 'passwd'))).toBe(0);
      for (const p of [passwd, host, path.join(host, 'shadow'), groups, other]) {
        expect(ownerOf(p)).toBe(0);
      }
      expect(ownerOf(path.join(other, 'CLAUDE.md'))).toBe(0);
    });

    it('refuses a root that is a link', async () => {
      fs.rmSync(family, { recursive: true });
      fs.symlinkSync(host, family);
      expect(await rejected(chownTreeNoFollow(family, IMAGE_UID, IMAGE_UID))).toBeInstanceOf(
        UnsafePathError,
      );
      expect(ownerOf(host)).toBe(0);
      expect(ownerOf(passwd)).toBe(0);
    });

    it('stops after maxEntries entries and says so, leaving the rest as it was', async () => {
      for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(family, `f${i}`), '');

      const result = await chownTreeNoFollow(family, IMAGE_UID, IMAGE_UID, {
        onlyOwnedBy: 0,
        maxEntries: 10,
      });

      expect(result).toEqual({ changed: 11, linksSkipped: 0, examined: 10, capped: true });
      const owners = fs.readdirSync(family).map((name) => ownerOf(path.join(family, name)));
      expect(owners.filter((uid) => uid === IMAGE_UID)).toHaveLength(10);
      expect(owners.filter((uid) => uid === 0)).toHaveLength(20);
    });

    it('lets the event loop turn while it walks a folder of many files', async () => {
      // The agent's own files: looked at, never changed. A synchronous walk would finish
      // before any other callback of the process could run.
      for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(family, `f${i}`), '');
      let turns = 0;
      const turn = (): void => {
        turns++;
        pending = setImmediate(turn);
      };
      let pending = setImmediate(turn);
      try {
        const result = await chownTreeNoFollow(family, IMAGE_UID, IMAGE_UID, {
          onlyOwnedBy: STRANGER_UID,
        });
        expect(result).toMatchObject({ changed: 1, examined: 300, capped: false });
      } finally {
        clearImmediate(pending);
      }
      expect(turns).toBeGreaterThan(0);
    });
  });

  describe('installTemplates', () => {
    let templates: string;

    beforeEach(() => {
      templates = path.join(base, 'templates');
      fs.mkdirSync(path.join(templates, 'sub'), { recursive: true });
      fs.writeFileSync(path.join(templates, 'CLAUDE.md'), '# template\n');
      fs.writeFileSync(path.join(templates, 'sub', 'notes.md'), 'notes\n');
    });

    it('copies what is missing and keeps what the user or agent wrote', () => {
      fs.writeFileSync(path.join(family, 'CLAUDE.md'), 'edited');
      const report = installTemplates(templates, family);
      expect(report).toEqual({ created: ['sub/notes.md'], kept: ['CLAUDE.md'], refused: [] });
      expect(fs.readFileSync(path.join(family, 'CLAUDE.md'), 'utf8')).toBe('edited');
      expect(fs.readFileSync(path.join(family, 'sub', 'notes.md'), 'utf8')).toBe('notes\n');
    });

    it('does not create the host file a planted CLAUDE.md link points at, and says so in the log', () => {
      const target = path.join(host, 'created-by-root');
      fs.symlinkSync(target, path.join(globalDir, 'CLAUDE.md'));
      const { log, lines } = memoryLogger();

      const report = installTemplates(templates, globalDir, { log });

      expect(fs.existsSync(target)).toBe(false);
      expect(fs.readlinkSync(path.join(globalDir, 'CLAUDE.md'))).toBe(target);
      expect(report.refused.map((r) => r.path)).toEqual(['CLAUDE.md']);
      expect(report.created).toEqual(['sub/notes.md']);
      expect(lines()).toEqual([
        expect.objectContaining({
          level: 40,
          path: 'CLAUDE.md',
          msg: expect.stringContaining('memory template not installed') as unknown,
        }),
      ]);
    });

    it('leaves a host file a link points at unchanged', () => {
      fs.symlinkSync(passwd, path.join(globalDir, 'CLAUDE.md'));
      installTemplates(templates, globalDir);
      expect(fs.readFileSync(passwd, 'utf8')).toBe('root:x:0:0\n');
    });

    it('does not copy into a subfolder linked to .., to the host or to another group', () => {
      for (const [dir, target] of [
        [family, '..'],
        [globalDir, host],
        [other, family],
      ] as const) {
        fs.symlinkSync(target, path.join(dir, 'sub'));
      }
      fs.rmSync(path.join(other, 'CLAUDE.md'));
      for (const dir of [family, globalDir, other]) {
        expect(installTemplates(templates, dir).refused.map((r) => r.path)).toEqual(['sub']);
      }
      expect(fs.existsSync(path.join(groups, 'notes.md'))).toBe(false);
      expect(listTree(host)).toEqual(['passwd']);
      expect(fs.existsSync(path.join(family, 'notes.md'))).toBe(false);
    });

    it('does not copy into a target folder that is itself a link', () => {
      fs.rmSync(family, { recursive: true });
      fs.symlinkSync(host, family);
      expect(installTemplates(templates, family).refused.map((r) => r.path)).toEqual(['.']);
      expect(listTree(host)).toEqual(['passwd']);
    });
  });

  describe('GroupAdmin with a planted link in global memory', () => {
    let store: Store;

    beforeEach(() => {
      store = openStore(path.join(base, 'home', 'clawbar.db'));
    });

    afterEach(() => {
      store.close();
    });

    it('ensureLayout (run by every CLI command, as root) does not create the linked host file', () => {
      const target = path.join(host, 'written-by-root');
      fs.symlinkSync(target, path.join(globalDir, 'CLAUDE.md'));
      const { log, lines } = memoryLogger();
      const admin = new GroupAdmin({
        store,
        config: { groupsDir: groups, globalDir, assistantName: 'Andy' },
        now: () => 0,
        log,
      });
      admin.ensureLayout();
      expect(fs.existsSync(target)).toBe(false);
      expect(lines().map((l) => l.msg)).toEqual([
        expect.stringContaining('memory template not installed'),
      ]);
    });
  });

  describe('prepareGroupFolders as root', () => {
    const input = (overrides: Partial<Parameters<typeof prepareGroupFolders>[0]> = {}) => ({
      groupsDir: groups,
      globalDir,
      folder: 'family',
      isMain: false,
      ...overrides,
    });

    it("creates the folders and hands them, with root's templates inside, to the image's user", async () => {
      fs.writeFileSync(path.join(family, 'CLAUDE.md'), 'template copied by root');
      fs.writeFileSync(path.join(globalDir, 'CLAUDE.md'), 'global template');
      const dirs = await prepareGroupFolders(input({ folder: 'work' }), 0);
      expect(dirs).toEqual({ group: path.join(groups, 'work') });
      expect(ownerOf(dirs.group)).toBe(IMAGE_UID);
      // No session folder any more: the transcript lives in the host's store (issue 6).
      expect(fs.readdirSync(path.join(base, 'home'))).toEqual(['groups']);

      await prepareGroupFolders(input(), 0);
      expect(ownerOf(path.join(family, 'CLAUDE.md'))).toBe(IMAGE_UID);
      // Only main writes global memory.
      expect(ownerOf(globalDir)).toBe(0);
      await prepareGroupFolders(input({ isMain: true }), 0);
      expect(ownerOf(globalDir)).toBe(IMAGE_UID);
      expect(ownerOf(path.join(globalDir, 'CLAUDE.md'))).toBe(IMAGE_UID);
    });

    it('as a normal user, changes no owner', async () => {
      const dirs = await prepareGroupFolders(input(), 1000);
      expect(ownerOf(dirs.group)).toBe(0);
    });

    it('never changes the owner of what a planted link points at: host files, .., another group', async () => {
      fs.symlinkSync(passwd, path.join(family, 'passwd'));
      fs.symlinkSync(host, path.join(family, 'etc'));
      fs.symlinkSync('..', path.join(family, 'up'));
      fs.symlinkSync(other, path.join(family, 'theirs'));
      fs.symlinkSync(path.join(groups, '..'), path.join(family, 'home'));
      fs.symlinkSync(other, path.join(globalDir, 'theirs'));

      await prepareGroupFolders(input({ isMain: true }), 0);

      for (const p of [passwd, host, groups, other, path.join(other, 'CLAUDE.md')]) {
        expect(ownerOf(p)).toBe(0);
      }
      expect(ownerOf(path.join(base, 'home'))).toBe(0);
      expect(ownerOf(family)).toBe(IMAGE_UID);
    });

    it('refuses a group or global folder that is a link, changing nothing it points at', async () => {
      const cases: Array<[string, Partial<Parameters<typeof prepareGroupFolders>[0]>]> = [
        [family, {}],
        [globalDir, { isMain: true }],
      ];
      for (const [dir, overrides] of cases) {
        fs.rmSync(dir, { recursive: true, force: true });
        fs.symlinkSync(other, dir);
        const err = await rejected(prepareGroupFolders(input(overrides), 0));
        expect(err).toBeInstanceOf(UnsafePathError);
        expect((err as Error).message).toContain(`${dir} is a symbolic link`);
        expect(ownerOf(other)).toBe(0);
        expect(ownerOf(path.join(other, 'CLAUDE.md'))).toBe(0);
        fs.rmSync(dir);
        fs.mkdirSync(dir);
      }
    });

    it('refuses a folder name that is not one safe path segment', async () => {
      for (const folder of ['..', '../host', 'a/b', 'global']) {
        expect(await rejected(prepareGroupFolders(input({ folder }), 0))).toBeInstanceOf(
          InvalidFolderNameError,
        );
      }
      expect(listTree(host)).toEqual(['passwd']);
    });
  });
});

describe('prepareGroupFolders in a folder too big to hand over in full', () => {
  it('hands over the first entries, and says in the log that it stopped', async () => {
    const count = DEFAULT_CHOWN_MAX_ENTRIES + 5;
    for (let i = 0; i < count; i++) fs.writeFileSync(path.join(family, `f${i}`), '');
    const { log, lines } = memoryLogger();

    await prepareGroupFolders(
      { groupsDir: groups, globalDir, folder: 'family', isMain: false, log },
      0,
    );

    expect(ownerOf(family)).toBe(IMAGE_UID);
    const stillRoot = fs
      .readdirSync(family)
      .filter((name) => ownerOf(path.join(family, name)) === 0);
    expect(stillRoot).toHaveLength(5);
    expect(lines()).toEqual([
      expect.objectContaining({
        level: 40,
        folder: family,
        examined: DEFAULT_CHOWN_MAX_ENTRIES,
        msg: expect.stringContaining(
          `holds more than ${DEFAULT_CHOWN_MAX_ENTRIES} files and folders, so only part of it was handed`,
        ) as unknown,
      }),
    ]);
  });
});

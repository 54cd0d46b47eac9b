import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  CONTAINER_PATHS,
  InvalidFolderNameError,
  MountPolicyError,
  folderFromName,
  groupMounts,
  validateFolderName,
  type GroupMountInput,
} from '../../main/core/sandbox/mounts.js';

describe('groupMounts', () => {
  let root: string;
  let home: string;
  let input: GroupMountInput;

  beforeEach(() => {
    // realpath: on macOS the temp dir itself sits behind the /var → /private/var symlink.
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-mounts-')));
    home = path.join(root, 'home');
    input = {
      home,
      groupDir: path.join(home, 'groups', 'family'),
      globalDir: path.join(home, 'groups', 'global'),
      isMain: false,
    };
    for (const dir of [input.groupDir, input.globalDir]) fs.mkdirSync(dir, { recursive: true });
  });

  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  function policyError(overrides: Partial<GroupMountInput>): MountPolicyError {
    try {
      groupMounts({ ...input, ...overrides });
    } catch (err) {
      expect(err).toBeInstanceOf(MountPolicyError);
      return err as MountPolicyError;
    }
    throw new Error('expected a MountPolicyError');
  }

  it('mounts only the group read-write and global memory read-only for a normal group', () => {
    // No session folder: the transcript lives in the host's store, out of the container's reach.
    expect(groupMounts(input)).toEqual([
      { hostPath: input.groupDir, containerPath: '/workspace/group', readOnly: false },
      { hostPath: input.globalDir, containerPath: '/workspace/global', readOnly: true },
    ]);
    expect(Object.values(CONTAINER_PATHS)).toEqual(['/workspace/group', '/workspace/global']);
  });

  it('lets only the main group write global memory', () => {
    const global = groupMounts({ ...input, isMain: true }).find(
      (m) => m.containerPath === CONTAINER_PATHS.global,
    );
    expect(global?.readOnly).toBe(false);
  });

  it('rejects a relative path', () => {
    expect(policyError({ groupDir: 'groups/family' }).message).toMatch(/not an absolute path/);
  });

  it('rejects a path with a .. segment, even one that resolves inside the data root', () => {
    const sneaky = `${home}/groups/family/../family`;
    expect(policyError({ groupDir: sneaky }).message).toMatch(/'\.' or '\.\.' segment/);
    expect(policyError({ groupDir: `${home}/groups/../../x` }).hostPath).toBe(
      `${home}/groups/../../x`,
    );
  });

  it('rejects a bare .. and ../x', () => {
    expect(policyError({ groupDir: '..' }).message).toMatch(/not an absolute path/);
    expect(policyError({ globalDir: '../x' }).message).toMatch(/not an absolute path/);
  });

  it('rejects an absolute path outside the data root', () => {
    const outside = path.join(root, 'elsewhere');
    fs.mkdirSync(outside);
    expect(policyError({ groupDir: outside }).message).toMatch(/not inside the data root/);
    expect(policyError({ globalDir: '/' }).message).toMatch(/not inside the data root/);
  });

  it('rejects a sibling directory whose name merely starts with the data root', () => {
    const sibling = `${home}-evil`;
    fs.mkdirSync(sibling);
    expect(policyError({ groupDir: sibling }).message).toMatch(/not inside the data root/);
  });

  it('accepts a directory whose name merely starts with two dots', () => {
    const dotted = path.join(home, '..dotted');
    fs.mkdirSync(dotted);
    expect(groupMounts({ ...input, globalDir: dotted })[1]?.hostPath).toBe(dotted);
  });

  it('rejects the data root itself', () => {
    expect(policyError({ globalDir: home }).message).toMatch(/not inside the data root/);
  });

  it('rejects a symlink that escapes the data root', () => {
    const secrets = path.join(root, 'secrets');
    fs.mkdirSync(secrets);
    const link = path.join(home, 'groups', 'escape');
    fs.symlinkSync(secrets, link);
    const err = policyError({ groupDir: link });
    expect(err.message).toMatch(/resolves to .*secrets through a symlink/);
    expect(err.hostPath).toBe(link);
  });

  it('rejects a symlink even when its target stays inside the data root', () => {
    const link = path.join(home, 'groups', 'alias');
    fs.symlinkSync(input.groupDir, link);
    expect(policyError({ groupDir: link }).message).toMatch(/through a symlink/);
  });

  it('rejects a symlinked parent directory', () => {
    fs.mkdirSync(path.join(root, 'outside', 'family'), { recursive: true });
    fs.symlinkSync(path.join(root, 'outside'), path.join(home, 'linked'));
    expect(policyError({ groupDir: path.join(home, 'linked', 'family') }).message).toMatch(
      /through a symlink/,
    );
  });

  it('rejects a data root that is itself reached through a symlink', () => {
    const linkedHome = path.join(root, 'home-link');
    fs.symlinkSync(home, linkedHome);
    expect(policyError({ home: linkedHome }).message).toMatch(/data root .* through a symlink/);
  });

  it('rejects a directory that does not exist, rather than let the engine create it as root', () => {
    const err = policyError({ groupDir: path.join(home, 'groups', 'missing') });
    expect(err.message).toMatch(/does not exist/);
    expect(err.cause).toBeDefined();
  });

  it('rejects paths that are not in normal form', () => {
    expect(policyError({ groupDir: `${input.groupDir}/` }).message).toMatch(/normal form/);
    expect(
      policyError({ groupDir: input.groupDir.replace('/groups/', '//groups/') }).message,
    ).toMatch(/normal form/);
    expect(policyError({ groupDir: `${home}/./groups/family` }).message).toMatch(/segment/);
  });

  it('rejects overlapping mounts, so a read-only mount cannot be reached read-write', () => {
    // The group folder would contain global memory: a normal group could write it.
    expect(policyError({ groupDir: path.join(home, 'groups') }).message).toMatch(/mounts overlap/);
    expect(policyError({ groupDir: input.globalDir }).message).toMatch(/mounts overlap/);
    // Global memory inside the group folder: the same files, read-write through the group mount.
    const nested = path.join(input.groupDir, 'global');
    fs.mkdirSync(nested);
    expect(policyError({ globalDir: nested }).message).toMatch(/mounts overlap/);
  });

  it('rejects an empty path or one with a NUL byte', () => {
    expect(policyError({ groupDir: '' }).message).toMatch(/empty or contains a NUL/);
    expect(policyError({ groupDir: `${input.groupDir}\0x` }).message).toMatch(/NUL/);
  });

  it('uses the injected realpath, so a path swapped for a symlink is caught', () => {
    const realpath = (p: string): string =>
      p === input.groupDir ? '/etc' : fs.realpathSync.native(p);
    expect(() => groupMounts(input, { realpath })).toThrow(/resolves to \/etc/);
  });
});

describe('validateFolderName', () => {
  it.each(['family', 'a', 'team-42', '0day', 'a'.repeat(64)])('accepts %j', (name) => {
    expect(() => validateFolderName(name)).not.toThrow();
  });

  it.each([
    ['', /empty/],
    ['a'.repeat(65), /longer than 64/],
    ['-family', /must not start with '-'/],
    ['Family', /lowercase letters/],
    ['fam ily', /lowercase letters/],
    ['fam_ily', /lowercase letters/],
    ['..', /lowercase letters/],
    ['../x', /lowercase letters/],
    ['a/b', /lowercase letters/],
    ['/abs', /lowercase letters/],
    ['família', /lowercase letters/],
    ['global', /reserved/],
  ])('rejects %j', (name, message) => {
    expect(() => validateFolderName(name)).toThrow(InvalidFolderNameError);
    expect(() => validateFolderName(name)).toThrow(message);
  });
});

describe('folderFromName', () => {
  const none = new Set<string>();

  it.each([
    ['Family', 'family'],
    ['  Book Club!! 2024 ', 'book-club-2024'],
    ['Família Silva', 'familia-silva'],
    ['Crème Brûlée Fans', 'creme-brulee-fans'],
    ['---x---', 'x'],
    ['a/../b', 'a-b'],
    ['..', 'group'],
    ['🎉🎉', 'group'],
    ['家族', 'group'],
    ['', 'group'],
    ['ＦＵＬＬ width', 'full-width'],
  ])('slugifies %j to %j', (name, folder) => {
    expect(folderFromName(name, none)).toBe(folder);
  });

  it('cuts long names to 48 characters without a trailing dash', () => {
    const folder = folderFromName(`${'a'.repeat(47)} tail`, none);
    expect(folder).toBe('a'.repeat(47));
    expect(folderFromName('x'.repeat(100), none)).toHaveLength(48);
  });

  it('makes names unique with -2, -3, …', () => {
    expect(folderFromName('Family', new Set(['family']))).toBe('family-2');
    expect(folderFromName('Family', new Set(['family', 'family-2']))).toBe('family-3');
    expect(folderFromName('🎉', new Set(['group']))).toBe('group-2');
  });

  it('treats the reserved global folder as taken', () => {
    expect(folderFromName('Global', none)).toBe('global-2');
    expect(folderFromName('GLOBAL', new Set(['global-2']))).toBe('global-3');
  });

  it('always produces a valid folder name', () => {
    const taken = new Set<string>();
    for (const name of [
      'Family',
      'Family',
      'Global',
      '🎉',
      '-',
      'z'.repeat(200),
      'Ünïcödé Grüppe',
      'x'.repeat(48),
    ]) {
      const folder = folderFromName(name, taken);
      expect(() => validateFolderName(folder)).not.toThrow();
      expect(taken.has(folder)).toBe(false);
      taken.add(folder);
    }
  });
});

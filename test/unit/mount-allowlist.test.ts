import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  DEFAULT_BLOCKED_PATTERNS,
  EXTRA_MOUNTS_DIR,
  MAX_ALLOWLIST_BYTES,
  checkExtraMount,
  loadMountAllowlist,
  mountAllowlistPath,
  parseMountSpec,
  resolveExtraMounts,
  type AllowlistLoad,
  type ExtraMountContext,
} from '../../main/core/sandbox/mount-allowlist.js';
import { loadConfig } from '../../main/core/config.js';
import { CoreInputError } from '../../main/core/errors.js';
import { GroupAdmin } from '../../main/core/group-admin.js';
import { MountPolicyError, groupMounts } from '../../main/core/sandbox/mounts.js';
import { openStore, type ExtraMountRequest, type Store } from '../../main/core/store/index.js';

/**
 * A fake user home with a projects root, Clawbar's data root and secrets, all real folders in
 * a temp dir (realpath'd: on macOS the temp dir sits behind /var → /private/var).
 */
describe('extra mounts through the allowlist', () => {
  let tmp: string;
  let user: string;
  let projects: string;
  let outside: string;
  let home: string;
  let allowlistFile: string;

  beforeEach(() => {
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-allowlist-')));
    user = path.join(tmp, 'user');
    projects = path.join(user, 'projects');
    outside = path.join(tmp, 'elsewhere');
    home = path.join(user, '.local', 'share', 'clawbar');
    for (const dir of [
      path.join(projects, 'app', 'src'),
      path.join(projects, 'notes'),
      path.join(outside, 'private'),
      path.join(home, 'groups', 'family'),
      path.join(user, '.ssh'),
    ]) {
      fs.mkdirSync(dir, { recursive: true });
    }
    fs.writeFileSync(path.join(user, '.ssh', 'id_ed25519'), 'KEY');
    allowlistFile = mountAllowlistPath(home);
  });

  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  function writeAllowlist(value: unknown): void {
    fs.writeFileSync(allowlistFile, typeof value === 'string' ? value : JSON.stringify(value));
  }

  function ctx(overrides: Partial<ExtraMountContext> = {}): ExtraMountContext {
    return {
      home,
      isMain: true,
      allowlist: loadMountAllowlist(allowlistFile),
      homedir: user,
      ...overrides,
    };
  }

  /** The reason `request` is refused; fails the test when it is granted. */
  function refusal(request: ExtraMountRequest, context: ExtraMountContext = ctx()): string {
    const verdict = checkExtraMount(request, context);
    if (verdict.ok) throw new Error(`expected a refusal, got ${JSON.stringify(verdict.mount)}`);
    return verdict.refused.reason;
  }

  function granted(request: ExtraMountRequest, context: ExtraMountContext = ctx()) {
    const verdict = checkExtraMount(request, context);
    if (!verdict.ok) throw new Error(`expected a grant, got: ${verdict.refused.reason}`);
    return verdict.mount;
  }

  describe('the allowlist file', () => {
    it('lives in the data root, which no container mounts', () => {
      expect(allowlistFile).toBe(path.join(home, 'mount-allowlist.json'));
      fs.mkdirSync(path.join(home, 'groups', 'global'));
      const mounts = groupMounts({
        home,
        groupDir: path.join(home, 'groups', 'family'),
        globalDir: path.join(home, 'groups', 'global'),
        isMain: true,
      }).map((m) => m.hostPath);
      for (const hostPath of mounts) expect(allowlistFile.startsWith(`${hostPath}/`)).toBe(false);
    });

    it('missing: no extra mounts, and the reason says how to create it', () => {
      const load = loadMountAllowlist(allowlistFile);
      expect(load).toMatchObject({ ok: false, missing: true });
      const reason = refusal({ hostPath: '~/projects/app' });
      expect(reason).toContain('there is no mount allowlist');
      expect(reason).toContain(allowlistFile);
    });

    it('not JSON: every mount is refused with the parse error, nothing throws', () => {
      writeAllowlist('{"roots": [');
      const load = loadMountAllowlist(allowlistFile);
      expect(load).toMatchObject({ ok: false, missing: false });
      expect(refusal({ hostPath: '~/projects/app' })).toMatch(/is not valid JSON/);
    });

    it('of the wrong shape: says which field is wrong', () => {
      writeAllowlist({ roots: [{ path: '~/projects', allowReadwrite: true }] });
      const reason = refusal({ hostPath: '~/projects/app' });
      expect(reason).toContain('is malformed');
      expect(reason).toContain('allowReadwrite');
      writeAllowlist({ roots: 'everything' });
      expect(refusal({ hostPath: '~/projects/app' })).toContain('roots');
      writeAllowlist({ roots: [], blockedPatterns: ['/abs'] });
      expect(refusal({ hostPath: '~/projects/app' })).toContain('blockedPatterns');
    });

    it('too large, or not a file: refused unread', () => {
      writeAllowlist(`{"roots":[],"x":"${'a'.repeat(MAX_ALLOWLIST_BYTES)}"}`);
      expect(loadMountAllowlist(allowlistFile)).toMatchObject({
        ok: false,
        reason: expect.stringContaining('more than'),
      });
      fs.rmSync(allowlistFile);
      fs.mkdirSync(allowlistFile);
      expect(loadMountAllowlist(allowlistFile)).toMatchObject({
        ok: false,
        missing: false,
        reason: expect.stringContaining('not a regular file'),
      });
    });

    it('defaults: roots read-only, non-main groups read-only, default patterns kept', () => {
      writeAllowlist({ roots: [{ path: '~/projects' }] });
      const load = loadMountAllowlist(allowlistFile) as Extract<AllowlistLoad, { ok: true }>;
      expect(load.ok).toBe(true);
      expect(load.allowlist).toEqual({
        roots: [{ path: '~/projects', allowReadWrite: false }],
        blockedPatterns: [],
        nonMainReadOnly: true,
      });
    });
  });

  describe('allowed', () => {
    beforeEach(() => {
      writeAllowlist({
        roots: [
          { path: '~/projects', allowReadWrite: true, description: 'code' },
          { path: outside },
        ],
      });
    });

    it('a folder inside a root, read-only by default, at /workspace/extra/<its name>', () => {
      expect(granted({ hostPath: '~/projects/app' })).toMatchObject({
        hostPath: path.join(projects, 'app'),
        containerPath: `${EXTRA_MOUNTS_DIR}/app`,
        readOnly: true,
        notes: [],
      });
    });

    it('the root itself, by absolute path, with a container path of its own', () => {
      expect(granted({ hostPath: outside, containerPath: 'data/outside' })).toMatchObject({
        hostPath: outside,
        containerPath: '/workspace/extra/data/outside',
      });
    });

    it('read-write for the main group when the root allows it and the request asks', () => {
      expect(granted({ hostPath: '~/projects/app', readonly: false }).readOnly).toBe(false);
    });

    it('read-only, with a note, when the root does not allow writing', () => {
      const mount = granted({ hostPath: path.join(outside, 'private'), readonly: false });
      expect(mount.readOnly).toBe(true);
      expect(mount.notes).toEqual([expect.stringContaining('does not allow writing')]);
    });

    it('read-only for a non-main group while nonMainReadOnly is on (the default)', () => {
      const mount = granted(
        { hostPath: '~/projects/app', readonly: false },
        ctx({ isMain: false }),
      );
      expect(mount.readOnly).toBe(true);
      expect(mount.notes).toEqual([expect.stringContaining('non-main')]);
    });

    it('read-write for a non-main group when nonMainReadOnly is off', () => {
      writeAllowlist({
        roots: [{ path: '~/projects', allowReadWrite: true }],
        nonMainReadOnly: false,
      });
      const mount = granted(
        { hostPath: '~/projects/app', readonly: false },
        ctx({ isMain: false }),
      );
      expect(mount.readOnly).toBe(false);
    });

    it('through a root that is itself a symlink: compared by real paths', () => {
      fs.symlinkSync(projects, path.join(user, 'code'));
      writeAllowlist({ roots: [{ path: '~/code' }] });
      expect(granted({ hostPath: '~/projects/app' }).hostPath).toBe(path.join(projects, 'app'));
      expect(granted({ hostPath: '~/code/notes' })).toMatchObject({
        hostPath: path.join(projects, 'notes'),
        containerPath: '/workspace/extra/notes',
      });
    });

    it('a symlink inside a root to another place inside a root binds the real folder', () => {
      fs.symlinkSync(path.join(projects, 'notes'), path.join(projects, 'my-notes'));
      expect(granted({ hostPath: '~/projects/my-notes' })).toMatchObject({
        hostPath: path.join(projects, 'notes'),
        containerPath: '/workspace/extra/my-notes',
      });
    });
  });

  describe('refused', () => {
    beforeEach(() => {
      writeAllowlist({ roots: [{ path: '~/projects', allowReadWrite: true }, { path: '~' }] });
    });

    it('a folder outside every root', () => {
      writeAllowlist({ roots: [{ path: '~/projects' }] });
      expect(refusal({ hostPath: outside })).toMatch(/is not inside any allowed root/);
    });

    it('a symlink inside a root that points outside it', () => {
      writeAllowlist({ roots: [{ path: '~/projects' }] });
      fs.symlinkSync(outside, path.join(projects, 'escape'));
      expect(refusal({ hostPath: '~/projects/escape' })).toMatch(
        new RegExp(`${outside} is not inside any allowed root`),
      );
    });

    it('a path with .. even when it would land inside the root', () => {
      writeAllowlist({ roots: [{ path: '~/projects' }] });
      expect(refusal({ hostPath: '~/projects/../elsewhere' })).toMatch(/'\.\.' segment/);
      expect(refusal({ hostPath: `${projects}/app/../notes` })).toMatch(/'\.\.' segment/);
      expect(refusal({ hostPath: `${projects}/./app` })).toMatch(/segment/);
    });

    it('a relative path, an empty one, or one with control characters', () => {
      expect(refusal({ hostPath: 'projects/app' })).toMatch(/not an absolute path/);
      expect(refusal({ hostPath: '' })).toMatch(/1-4096 characters/);
      expect(refusal({ hostPath: '~/projects/a\npp' })).toMatch(/control characters/);
    });

    it('a folder that does not exist, or a file', () => {
      expect(refusal({ hostPath: '~/projects/nope' })).toMatch(/does not exist/);
      fs.writeFileSync(path.join(projects, 'readme.txt'), 'hi');
      expect(refusal({ hostPath: '~/projects/readme.txt' })).toMatch(/not a folder/);
    });

    it.each(['.ssh', '.gnupg', '.aws', '.azure', '.gcloud', '.kube', '.docker', '.env'])(
      'the secret-bearing folder %s, and anything in it',
      (name) => {
        fs.mkdirSync(path.join(user, name, 'sub'), { recursive: true });
        expect(refusal({ hostPath: `~/${name}` })).toContain(`matches "${name}"`);
        expect(refusal({ hostPath: `~/${name}/sub` })).toContain('secret-bearing');
      },
    );

    it('secret names in any case (macOS folds case)', () => {
      fs.mkdirSync(path.join(user, '.AWS'));
      expect(refusal({ hostPath: '~/.AWS' })).toContain('matches ".aws"');
    });

    it('a multi-part pattern: ~/.config/gh but not ~/.config/other', () => {
      fs.mkdirSync(path.join(user, '.config', 'gh'), { recursive: true });
      fs.mkdirSync(path.join(user, '.config', 'other'), { recursive: true });
      expect(refusal({ hostPath: '~/.config/gh' })).toContain('matches ".config/gh"');
      expect(granted({ hostPath: '~/.config/other' }).hostPath).toBe(
        path.join(user, '.config', 'other'),
      );
    });

    it('a symlink with an innocent name that leads to a secret folder', () => {
      fs.symlinkSync(path.join(user, '.ssh'), path.join(projects, 'keys-backup'));
      expect(refusal({ hostPath: '~/projects/keys-backup' })).toMatch(
        /leads to .*\.ssh, which is secret-bearing/,
      );
    });

    it('a symlink to a key file is refused as a secret, before it is found to be a file', () => {
      fs.symlinkSync(path.join(user, '.ssh', 'id_ed25519'), path.join(projects, 'thing'));
      expect(refusal({ hostPath: '~/projects/thing' })).toContain('secret-bearing');
    });

    it('a folder that holds a secret inside it (mounting ~ would hand over ~/.ssh)', () => {
      expect(refusal({ hostPath: '~' })).toMatch(/holds .*(\.ssh|clawbar)/);
      fs.writeFileSync(path.join(projects, 'app', '.env'), 'TOKEN=1');
      expect(refusal({ hostPath: '~/projects/app' })).toMatch(
        /holds .*app\/\.env, which is secret-bearing \(it matches "\.env"\)/,
      );
      fs.rmSync(path.join(projects, 'app', '.env'));
      fs.writeFileSync(path.join(projects, 'app', 'src', 'server.pem'), 'PEM');
      expect(refusal({ hostPath: '~/projects/app' })).toContain('server.pem');
    });

    it('a secret inside, named by a link, counts too (the link is not followed)', () => {
      fs.symlinkSync('/nonexistent', path.join(projects, 'notes', 'id_rsa'));
      expect(refusal({ hostPath: '~/projects/notes' })).toContain('id_rsa');
    });

    it("the allowlist's own blocked patterns add to the defaults", () => {
      writeAllowlist({ roots: [{ path: '~/projects' }], blockedPatterns: ['*.sqlite', 'notes'] });
      expect(refusal({ hostPath: '~/projects/notes' })).toContain('matches "notes"');
      fs.writeFileSync(path.join(projects, 'app', 'data.SQLITE'), '');
      expect(refusal({ hostPath: '~/projects/app' })).toContain('"*.sqlite"');
      expect(DEFAULT_BLOCKED_PATTERNS).toContain('.ssh');
    });

    it("Clawbar's data root, anything inside it, and any folder that holds it", () => {
      expect(refusal({ hostPath: home })).toMatch(/Clawbar's own data/);
      expect(refusal({ hostPath: path.join(home, 'groups') })).toMatch(/Clawbar's own data/);
      expect(refusal({ hostPath: path.join(home, 'groups', 'family') })).toMatch(/own data/);
      expect(refusal({ hostPath: '~/.local' })).toMatch(/holds Clawbar's own data/);
    });

    it('the data root reached through a symlink', () => {
      fs.symlinkSync(home, path.join(projects, 'innocent'));
      expect(refusal({ hostPath: '~/projects/innocent' })).toMatch(/Clawbar's own data/);
    });

    it('a container path that is absolute, has .., a colon, or odd characters', () => {
      for (const containerPath of [
        '/etc',
        '../escape',
        'a/../../b',
        'a:b',
        'a b',
        'a//b',
        '.',
        '',
      ]) {
        expect(refusal({ hostPath: '~/projects/app', containerPath })).toMatch(
          /container path .* must be relative/,
        );
      }
    });

    it('a host path a bind mount cannot carry (a colon or a comma)', () => {
      fs.mkdirSync(path.join(projects, 'a,b'));
      expect(refusal({ hostPath: '~/projects/a,b', containerPath: 'ab' })).toMatch(
        /':', ',' or a control character/,
      );
    });
  });

  describe('resolveExtraMounts', () => {
    beforeEach(() => {
      writeAllowlist({ roots: [{ path: '~/projects', allowReadWrite: true }] });
    });

    it('keeps the good ones and gives a reason for each refused one', () => {
      const result = resolveExtraMounts(
        [
          { hostPath: '~/projects/app' },
          { hostPath: '~/.ssh' },
          { hostPath: '~/projects/notes', containerPath: 'app' },
          { hostPath: '~/projects/app', containerPath: 'again' },
          { hostPath: '~/projects/app/src', containerPath: 'src' },
          { hostPath: '~/projects/notes', readonly: false },
        ],
        ctx(),
      );
      expect(result.mounts.map((m) => [m.hostPath, m.containerPath, m.readOnly])).toEqual([
        [path.join(projects, 'app'), '/workspace/extra/app', true],
        [path.join(projects, 'notes'), '/workspace/extra/notes', false],
      ]);
      expect(result.refused.map((r) => [r.request.hostPath, r.reason])).toEqual([
        ['~/.ssh', expect.stringContaining('secret-bearing')],
        ['~/projects/notes', expect.stringContaining('clashes with /workspace/extra/app')],
        ['~/projects/app', expect.stringContaining('nests with')],
        ['~/projects/app/src', expect.stringContaining('nests with')],
      ]);
    });

    it('what passes goes through groupMounts, which checks it again', () => {
      fs.mkdirSync(path.join(home, 'groups', 'global'));
      const { mounts } = resolveExtraMounts([{ hostPath: '~/projects/app' }], ctx());
      const all = groupMounts({
        home,
        groupDir: path.join(home, 'groups', 'family'),
        globalDir: path.join(home, 'groups', 'global'),
        isMain: false,
        extra: mounts,
      });
      expect(all[2]).toEqual({
        hostPath: path.join(projects, 'app'),
        containerPath: '/workspace/extra/app',
        readOnly: true,
      });
    });

    it('groupMounts refuses an extra mount inside the data root or outside /workspace/extra', () => {
      fs.mkdirSync(path.join(home, 'groups', 'global'));
      const base = {
        home,
        groupDir: path.join(home, 'groups', 'family'),
        globalDir: path.join(home, 'groups', 'global'),
        isMain: false,
      };
      const extra = (hostPath: string, containerPath: string) => () =>
        groupMounts({ ...base, extra: [{ hostPath, containerPath, readOnly: true }] });
      expect(extra(path.join(home, 'groups'), '/workspace/extra/g')).toThrow(MountPolicyError);
      expect(extra(user, '/workspace/extra/u')).toThrow(/holds the data root/);
      expect(extra(projects, '/workspace/group/x')).toThrow(/not under \/workspace\/extra/);
      expect(extra(projects, '/workspace/extra/../group')).toThrow(MountPolicyError);
      fs.symlinkSync(projects, path.join(tmp, 'link'));
      expect(extra(path.join(tmp, 'link'), '/workspace/extra/p')).toThrow(/through a symlink/);
    });
  });

  describe('parseMountSpec', () => {
    it('reads PATH[:CONTAINER_PATH][:rw|:ro]', () => {
      expect(parseMountSpec('~/projects/app')).toEqual({ hostPath: '~/projects/app' });
      expect(parseMountSpec('~/projects/app:rw')).toEqual({
        hostPath: '~/projects/app',
        readonly: false,
      });
      expect(parseMountSpec('/srv/x:data/x:ro')).toEqual({
        hostPath: '/srv/x',
        containerPath: 'data/x',
      });
      expect(parseMountSpec('/srv/x:x:rw')).toEqual({
        hostPath: '/srv/x',
        containerPath: 'x',
        readonly: false,
      });
    });

    it('refuses what it cannot read', () => {
      for (const spec of ['', ':x', '/a:b:c', '/a::rw']) {
        expect(() => parseMountSpec(spec)).toThrow(/PATH\[:CONTAINER_PATH\]\[:rw\]/);
      }
    });
  });
});

describe('clawbar groups mounts (GroupAdmin.mounts)', () => {
  let home: string;
  let projects: string;
  let store: Store;
  let admin: GroupAdmin;

  beforeEach(() => {
    const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-gmounts-')));
    home = path.join(tmp, 'home');
    projects = path.join(tmp, 'projects');
    fs.mkdirSync(path.join(projects, 'app'), { recursive: true });
    fs.mkdirSync(path.join(projects, 'keys', '.ssh'), { recursive: true });
    const config = loadConfig({ CLAWBAR_HOME: home }, () => undefined);
    fs.mkdirSync(home, { recursive: true });
    store = openStore(config.dbPath);
    admin = new GroupAdmin({ store, config, now: () => 0 });
    admin.ensureLayout();
    admin.add({ name: 'Family' });
    fs.writeFileSync(
      mountAllowlistPath(home),
      JSON.stringify({ roots: [{ path: projects, allowReadWrite: true }] }),
    );
  });

  afterEach(() => {
    store.close();
    fs.rmSync(path.dirname(home), { recursive: true, force: true });
  });

  it('adds an allowed mount, stores it, and lists it with its mode', () => {
    const view = admin.mounts('Family', { add: `${projects}/app:code:rw` });
    expect(view.changed).toEqual({ added: `${projects}/app` });
    expect(store.findGroup('Family')?.extraMounts).toEqual([
      { hostPath: `${projects}/app`, containerPath: 'code', readonly: false },
    ]);
    expect(view.mounts).toEqual([
      expect.objectContaining({
        status: 'allowed',
        mount: {
          hostPath: `${projects}/app`,
          containerPath: '/workspace/extra/code',
          readOnly: true,
        },
        notes: [expect.stringContaining('non-main')],
      }),
    ]);
  });

  it('refuses a mount at once, says why, and stores nothing', () => {
    expect(() => admin.mounts('Family', { add: `${projects}/keys` })).toThrow(
      /cannot be mounted: .*holds .*\.ssh/,
    );
    expect(() => admin.mounts('Family', { add: '/etc' })).toThrow(CoreInputError);
    expect(() => admin.mounts('Family', { add: 'a:b:c:d' })).toThrow(/PATH\[:CONTAINER_PATH\]/);
    expect(store.findGroup('Family')?.extraMounts).toEqual([]);
  });

  it('lists a stored mount the allowlist no longer allows as refused, with the reason', () => {
    admin.mounts('Family', { add: `${projects}/app` });
    fs.rmSync(mountAllowlistPath(home));
    const view = admin.mounts('Family');
    expect(view.allowlist.state).toBe('missing');
    expect(view.mounts).toEqual([
      expect.objectContaining({
        status: 'refused',
        reason: expect.stringContaining('there is no mount allowlist'),
      }),
    ]);
  });

  it('removes a mount, and says so when there is none by that path', () => {
    admin.mounts('Family', { add: `${projects}/app` });
    expect(admin.mounts('Family', { remove: `${projects}/app/` }).mounts).toEqual([]);
    expect(store.findGroup('Family')?.extraMounts).toEqual([]);
    expect(() => admin.mounts('Family', { remove: '/nope' })).toThrow(/is not one of Family's/);
    expect(() => admin.mounts('Family', { add: `${projects}/app`, remove: '/x' })).toThrow(
      /not both/,
    );
  });
});

/**
 * Packaging and `npm start`: electron-builder.yml checked by electron-builder's own loader and
 * schema, the entitlements, the release workflow, the start script's decisions, and how the
 * app finds `sandbox-images/` and a development copy of better-sqlite3.
 *
 * app-builder-lib, builder-util and js-yaml come with the electron-builder devDependency
 * (`npm ci` installs them even with ELECTRON_SKIP_BINARY_DOWNLOAD); nothing here needs the
 * Electron binary.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Configuration } from 'app-builder-lib';
import { getConfig, validateConfiguration } from 'app-builder-lib/out/util/config/config.js';
import { DebugLogger } from 'builder-util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  agentImageContext,
  DEV_SQLITE_BINDING_ENV,
  devSqliteBinding,
  offlineBaseScript,
  sandboxImagesDir,
  templatesDir,
  unpackedPath,
} from '../../main/core/paths.js';
import { RUNNER_BUNDLE } from '../../main/core/sandbox/image.js';
import { openStore } from '../../main/core/store/index.js';
import {
  electronBinaryProblem,
  FETCH_ELECTRON_COMMAND,
  needsRebuild,
  parseStamp,
  type AddonStamp,
  type ElectronAddonTarget,
  type ElectronInstall,
} from '../../scripts/start-electron.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);
const yaml = require('js-yaml') as { load(text: string): unknown };

const read = (relative: string): string => fs.readFileSync(path.join(root, relative), 'utf8');

/** electron-builder.yml as electron-builder itself loads it (getConfig finds it by name). */
async function builderConfig(): Promise<Configuration> {
  return getConfig(root, null, null);
}

type Dict = Record<string, unknown>;
const asDict = (value: unknown): Dict => {
  expect(typeof value === 'object' && value !== null && !Array.isArray(value)).toBe(true);
  return value as Dict;
};
const asArray = (value: unknown): unknown[] => {
  expect(Array.isArray(value)).toBe(true);
  return value as unknown[];
};
/** The target names of `mac.target` / `linux.target`, whichever form each entry takes. */
const targetNames = (targets: unknown): string[] =>
  asArray(targets).map((t) => (typeof t === 'string' ? t : String(asDict(t).target)));

describe('electron-builder.yml', () => {
  it('passes electron-builder’s own configuration schema', async () => {
    const config = await builderConfig();
    await expect(validateConfiguration(config, new DebugLogger(false))).resolves.toBeUndefined();
  });

  it('is really checked by that schema: an unknown mac option is refused', async () => {
    const config = await builderConfig();
    const broken = { ...config, mac: { ...config.mac, notarise: true } } as Configuration;
    await expect(validateConfiguration(broken, new DebugLogger(false))).rejects.toThrow(
      /configuration\.mac/,
    );
  });

  it('names the app and writes to release/ with resources from build/', async () => {
    const config = await builderConfig();
    expect(config.appId).toBe('dev.clawbar.app');
    expect(config.productName).toBe('Clawbar');
    expect(config.directories?.output).toBe('release');
    expect(config.directories?.buildResources).toBe('build');
    // release/ is ignored by git, prettier and eslint, so a local `npm run dist` leaves no noise.
    expect(read('.gitignore')).toMatch(/^release\/$/m);
  });

  it('packs the compiled app, not its sources or tests', async () => {
    const files = (await builderConfig()).files as { filter: string[] }[];
    const patterns = files.flatMap((set) => set.filter);
    expect(patterns).toEqual(expect.arrayContaining(['dist/**', 'package.json', '!**/*.ts']));
    for (const pattern of patterns) {
      expect(pattern).not.toMatch(/^(main|test|bench|scripts|preload|renderer|sandbox-images)\b/);
    }
  });

  it('unpacks better-sqlite3 from the asar archive', async () => {
    const config = await builderConfig();
    expect(config.asarUnpack).toContain('**/node_modules/better-sqlite3/**');
  });

  it('ships the agent image sources as resources where sandboxImagesDir looks for them', async () => {
    const extra = asArray((await builderConfig()).extraResources).map(asDict);
    const sandbox = extra.find((set) => set.from === 'sandbox-images');
    expect(sandbox).toBeDefined();
    const filter = asArray(sandbox?.filter);
    // The files the image build and its fallback read (image.ts, ensure-image.ts).
    expect(filter).toEqual(
      expect.arrayContaining([
        'agent/Dockerfile',
        'agent/.dockerignore',
        `agent/${RUNNER_BUNDLE}`,
        'offline-base.sh',
      ]),
    );
    for (const file of ['agent/Dockerfile', 'agent/.dockerignore', 'offline-base.sh']) {
      expect(fs.existsSync(path.join(root, 'sandbox-images', file)), file).toBe(true);
    }
    const resourcesPath = '/Applications/Clawbar.app/Contents/Resources';
    expect(path.join(resourcesPath, String(sandbox?.to))).toBe(
      sandboxImagesDir({ isPackaged: true, resourcesPath, appRoot: root }),
    );
  });

  it('rebuilds native modules while packaging, and never in postinstall', async () => {
    const config = await builderConfig();
    expect(config.npmRebuild).toBe(true);
    expect(config.buildDependenciesFromSource).toBe(false);
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    for (const hook of ['preinstall', 'install', 'postinstall']) {
      expect(pkg.scripts[hook] ?? '').not.toMatch(/rebuild|electron-builder|install-app-deps/);
    }
    expect(pkg.scripts.dist).toBe('npm run build && electron-builder');
    expect(pkg.scripts.start).toBe('node --import tsx scripts/start-electron.ts');
  });

  it('builds a hardened, notarized menu-bar app for macOS as dmg and zip', async () => {
    const mac = asDict((await builderConfig()).mac);
    expect(targetNames(mac.target).sort()).toEqual(['dmg', 'zip']);
    expect(mac.hardenedRuntime).toBe(true);
    expect(mac.gatekeeperAssess).toBe(false);
    expect(mac.notarize).toBe(true);
    expect(asDict(mac.extendInfo).LSUIElement).toBe(true);
    expect(mac.category).toBe('public.app-category.productivity');
    for (const key of ['entitlements', 'entitlementsInherit', 'icon']) {
      expect(fs.existsSync(path.join(root, String(mac[key]))), key).toBe(true);
    }
  });

  it('builds an AppImage and a deb for Linux, with the fields a deb needs', async () => {
    const linux = asDict((await builderConfig()).linux);
    expect(targetNames(linux.target).sort()).toEqual(['AppImage', 'deb']);
    expect(linux.category).toBe('Utility');
    expect(linux.maintainer).toMatch(/^.+ <[^@\s]+@[^@\s]+>$/);
    expect(typeof linux.synopsis).toBe('string');
    expect(fs.existsSync(path.join(root, String(linux.icon)))).toBe(true);
  });

  it('has an icon electron-builder accepts for macOS: a PNG of at least 512 px', () => {
    const png = fs.readFileSync(path.join(root, 'build/icon.png'));
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    // IHDR: width and height, big-endian, at bytes 16 and 20.
    expect(png.readUInt32BE(16)).toBeGreaterThanOrEqual(512);
    expect(png.readUInt32BE(20)).toBe(png.readUInt32BE(16));
  });
});

describe('macOS entitlements', () => {
  /** The entitlement keys a plist grants (`<key>…</key><true/>`). */
  function granted(file: string): string[] {
    const text = read(file).replace(/<!--[\s\S]*?-->/g, '');
    return [...text.matchAll(/<key>([^<]+)<\/key>\s*<true\/>/g)].map((m) => m[1] ?? '');
  }

  it.each(['build/entitlements.mac.plist', 'build/entitlements.mac.inherit.plist'])(
    '%s grants V8 its JIT and nothing else',
    (file) => {
      expect(granted(file)).toEqual(['com.apple.security.cs.allow-jit']);
    },
  );
});

describe('.github/workflows/release.yml', () => {
  const text = read('.github/workflows/release.yml');
  const workflow = asDict(yaml.load(text));
  const jobs = asDict(workflow.jobs);
  const packageJob = asDict(jobs.package);
  const steps = asArray(packageJob.steps).map(asDict);
  const runs = steps.map((step) => String(step.run ?? '')).join('\n');

  it('runs on version tags', () => {
    const push = asDict(asDict(workflow.on).push);
    expect(push.tags).toEqual(['v*']);
  });

  it('packages on a macOS and a Linux runner', () => {
    const include = asArray(asDict(asDict(packageJob.strategy).matrix).include).map(asDict);
    expect(include.map((entry) => entry.os).sort()).toEqual(['macos-latest', 'ubuntu-latest']);
    expect(packageJob['runs-on']).toBe('${{ matrix.os }}');
    expect(runs).toMatch(/npx electron-builder --mac --publish never/);
    expect(runs).toMatch(/npx electron-builder --linux --publish never/);
  });

  it('installs with npm ci on the same pinned Node as .ci/run, then builds', () => {
    const ciNode = /^ci_node_version=(\S+)$/m.exec(read('.ci/run'))?.[1];
    expect(ciNode).toBeDefined();
    const setupNode = steps.find((step) => String(step.uses).startsWith('actions/setup-node@'));
    expect(String(asDict(setupNode?.with)['node-version'])).toBe(ciNode);
    expect(runs).toMatch(/^npm ci$/m);
    expect(runs).toMatch(/^npm run build$/m);
  });

  it('uses the current major versions of the GitHub actions', () => {
    const uses = Object.values(jobs)
      .flatMap((job) => asArray(asDict(job).steps).map(asDict))
      .map((step) => step.uses)
      .filter((value): value is string => typeof value === 'string');
    expect(uses).toEqual(
      expect.arrayContaining([
        'actions/checkout@v4',
        'actions/setup-node@v4',
        'actions/upload-artifact@v4',
        'actions/download-artifact@v4',
      ]),
    );
  });

  it('takes every signing and notarization credential from secrets, none inlined', () => {
    const credential = /^(CSC_|APPLE_)/;
    const envs = steps.flatMap((step) => Object.entries(asDict(step.env ?? {})));
    const credentials = envs.filter(([name]) => credential.test(name));
    expect(credentials.map(([name]) => name)).toEqual(
      expect.arrayContaining(['CSC_LINK', 'CSC_KEY_PASSWORD', 'APPLE_API_KEY_ID', 'APPLE_ID']),
    );
    for (const [name, value] of credentials) {
      expect(value, name).toMatch(/^\$\{\{ secrets\.[A-Z0-9_]+ \}\}$/);
    }
    expect(text).not.toMatch(/-----BEGIN|[A-Za-z0-9+/]{60,}/);
  });

  it('grants write access only to the job that drafts the release', () => {
    expect(workflow.permissions).toEqual({ contents: 'read' });
    expect(packageJob.permissions).toBeUndefined();
    expect(asDict(jobs.release).permissions).toEqual({ contents: 'write' });
  });
});

describe('npm start: the Electron build of better-sqlite3', () => {
  const wanted: ElectronAddonTarget = {
    electronVersion: '41.7.1',
    abi: '145',
    betterSqlite3Version: '12.11.1',
    platform: 'darwin',
    arch: 'arm64',
  };
  const stamp: AddonStamp = { ...wanted, sha256: 'a'.repeat(64) };

  it('reuses a build whose stamp matches Electron, better-sqlite3, the machine and the bytes', () => {
    expect(needsRebuild(stamp, wanted, stamp.sha256)).toBeUndefined();
  });

  it('builds when there is no build yet', () => {
    expect(needsRebuild(undefined, wanted, undefined)).toMatch(/no Electron build/);
    expect(needsRebuild(stamp, wanted, undefined)).toMatch(/no Electron build/);
  });

  it('rebuilds a build it cannot vouch for', () => {
    expect(needsRebuild(undefined, wanted, stamp.sha256)).toMatch(/no valid stamp/);
    expect(needsRebuild(stamp, wanted, 'b'.repeat(64))).toMatch(/changed on disk/);
  });

  it('rebuilds for a new Electron, a new better-sqlite3 or another machine, and says why', () => {
    expect(
      needsRebuild(stamp, { ...wanted, electronVersion: '42.0.0', abi: '146' }, stamp.sha256),
    ).toBe('it was built for Electron 41.7.1 (ABI 145), now Electron 42.0.0 (ABI 146)');
    expect(needsRebuild(stamp, { ...wanted, betterSqlite3Version: '13.0.0' }, stamp.sha256)).toBe(
      'better-sqlite3 went from 12.11.1 to 13.0.0',
    );
    expect(needsRebuild(stamp, { ...wanted, arch: 'x64' }, stamp.sha256)).toBe(
      'it was built for darwin-arm64, this is darwin-x64',
    );
  });

  it('reads a stamp it wrote, and treats anything else as no stamp', () => {
    expect(parseStamp(JSON.stringify(stamp))).toEqual(stamp);
    expect(parseStamp(JSON.stringify({ ...stamp, extra: 1 }))).toEqual(stamp);
    expect(parseStamp(undefined)).toBeUndefined();
    expect(parseStamp('{"electronVersion": "41.7.1"')).toBeUndefined();
    expect(parseStamp('null')).toBeUndefined();
    expect(parseStamp(JSON.stringify({ ...stamp, abi: 145 }))).toBeUndefined();
    expect(parseStamp(JSON.stringify({ ...stamp, sha256: '' }))).toBeUndefined();
  });
});

describe('npm start: the Electron binary', () => {
  const installed: ElectronInstall = {
    pathTxt: 'electron',
    binaryExists: true,
    overrideDistPath: undefined,
    skipDownload: undefined,
  };

  it('starts when the binary is installed, or an override names one', () => {
    expect(electronBinaryProblem(installed)).toBeUndefined();
    expect(
      electronBinaryProblem({
        ...installed,
        pathTxt: undefined,
        overrideDistPath: '/opt/electron',
      }),
    ).toBeUndefined();
  });

  it('says that ELECTRON_SKIP_BINARY_DOWNLOAD left the binary out, and how to fetch it', () => {
    const message = electronBinaryProblem({
      ...installed,
      pathTxt: undefined,
      binaryExists: false,
      skipDownload: '1',
    });
    expect(message).toMatch(/ELECTRON_SKIP_BINARY_DOWNLOAD is set \("1"\)/);
    expect(message).toContain(FETCH_ELECTRON_COMMAND);
    expect(message).toMatch(/clawbar serve/);
  });

  it('also catches a binary that was deleted after its download', () => {
    const message = electronBinaryProblem({ ...installed, binaryExists: false });
    expect(message).toMatch(/has no binary/);
    expect(message).toContain(FETCH_ELECTRON_COMMAND);
  });

  it('fetches with the electron package’s own install script, which exists', () => {
    expect(FETCH_ELECTRON_COMMAND).toMatch(/node node_modules\/electron\/install\.js$/);
    expect(fs.existsSync(path.join(root, 'node_modules/electron/install.js'))).toBe(true);
  });
});

describe('sandboxImagesDir', () => {
  it('is the package’s own folder from a checkout or npm install', () => {
    expect(
      sandboxImagesDir({ isPackaged: false, resourcesPath: '/ignored', appRoot: '/src/clawbar' }),
    ).toBe(path.join('/src/clawbar', 'sandbox-images'));
  });

  it('is in the resources folder, outside app.asar, in the packaged app', () => {
    expect(
      sandboxImagesDir({
        isPackaged: true,
        resourcesPath: '/opt/Clawbar/resources',
        appRoot: '/opt/Clawbar/resources/app.asar',
      }),
    ).toBe(path.join('/opt/Clawbar/resources', 'sandbox-images'));
  });

  it('refuses to guess when a packaged app has no resources path', () => {
    expect(() =>
      sandboxImagesDir({ isPackaged: true, resourcesPath: undefined, appRoot: '/x' }),
    ).toThrow(/process\.resourcesPath/);
  });

  it('places the build context and the offline script inside it', () => {
    expect(agentImageContext('/r/sandbox-images')).toBe(path.join('/r/sandbox-images', 'agent'));
    expect(offlineBaseScript('/r/sandbox-images')).toBe(
      path.join('/r/sandbox-images', 'offline-base.sh'),
    );
    // The defaults are the checkout's, which exist.
    expect(fs.existsSync(path.join(agentImageContext(), 'Dockerfile'))).toBe(true);
    expect(fs.existsSync(offlineBaseScript())).toBe(true);
  });
});

describe('the memory templates in the packaged app', () => {
  it('are unpacked from app.asar by electron-builder.yml', async () => {
    const config = await builderConfig();
    expect(config.asarUnpack).toContain('groups/**');
    expect((config.files as { filter: string[] }[]).flatMap((set) => set.filter)).toContain(
      'groups/**',
    );
  });

  it('are read from app.asar.unpacked, as plain files', () => {
    const packed = path.join('/opt/Clawbar/resources', 'app.asar', 'groups');
    expect(unpackedPath(packed)).toBe(
      path.join('/opt/Clawbar/resources', 'app.asar.unpacked', 'groups'),
    );
    // Only a whole path segment counts; a checkout's path is left as it is.
    for (const plain of ['/src/clawbar/groups', '/src/my-app.asar/groups', '/x/app.asarx/groups'])
      expect(unpackedPath(plain)).toBe(plain);
    // From this checkout: the real folder, with the templates the first run copies.
    expect(fs.existsSync(path.join(templatesDir(), 'global', 'CLAUDE.md'))).toBe(true);
  });
});

describe('devSqliteBinding', () => {
  const addon = '/src/clawbar/node_modules/.cache/clawbar-electron/better_sqlite3.node';

  it('passes on the path npm start sets', () => {
    expect(devSqliteBinding({ isPackaged: false, env: { [DEV_SQLITE_BINDING_ENV]: addon } })).toBe(
      addon,
    );
    expect(devSqliteBinding({ isPackaged: false, env: {} })).toBeUndefined();
    expect(devSqliteBinding({ isPackaged: false, env: { [DEV_SQLITE_BINDING_ENV]: '' } })).toBe(
      undefined,
    );
  });

  it('is ignored by a packaged app, which must not load native code named by its environment', () => {
    expect(
      devSqliteBinding({ isPackaged: true, env: { [DEV_SQLITE_BINDING_ENV]: addon } }),
    ).toBeUndefined();
  });

  it('refuses a relative path or a file that is not an addon, saying how to fix it', () => {
    for (const bad of ['better_sqlite3.node', '/tmp/evil.so']) {
      expect(() =>
        devSqliteBinding({ isPackaged: false, env: { [DEV_SQLITE_BINDING_ENV]: bad } }),
      ).toThrow(/absolute path of a \.node file.*npm start/);
    }
  });
});

describe('openStore with a separate better-sqlite3 addon', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-packaging-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('opens and migrates the database through the addon it is given', () => {
    const installed = require.resolve('better-sqlite3/build/Release/better_sqlite3.node');
    const copy = path.join(dir, 'copy', 'better_sqlite3.node');
    fs.mkdirSync(path.dirname(copy));
    fs.copyFileSync(installed, copy);
    const store = openStore(path.join(dir, 'clawbar.db'), { nativeBinding: copy });
    try {
      expect(store.db.pragma('user_version', { simple: true })).toBeGreaterThan(0);
    } finally {
      store.close();
    }
  });

  it('fails on an addon that is not there, rather than falling back to another', () => {
    expect(() =>
      openStore(path.join(dir, 'clawbar.db'), { nativeBinding: path.join(dir, 'missing.node') }),
    ).toThrow(/missing\.node/);
  });
});

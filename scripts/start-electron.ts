/**
 * `npm start`: runs the desktop app from this checkout.
 *
 *  1. Checks that the Electron binary is installed. `npm ci` with ELECTRON_SKIP_BINARY_DOWNLOAD
 *     (servers, CI, offline machines) installs the package without it; this says how to fetch it.
 *  2. Builds (`npm run build`), unless `--no-build`.
 *  3. Makes sure a copy of better-sqlite3 built for Electron's ABI exists. Electron embeds its
 *     own Node with a different NODE_MODULE_VERSION than the Node that `npm install` compiled
 *     better-sqlite3 for, and a native addon only loads under the ABI it was built for.
 *     Rebuilding the installed addon in place would break the CLI and the tests (they run on
 *     Node) until it is rebuilt back, so the Electron build is a separate copy under
 *     node_modules/.cache/clawbar-electron, rebuilt only when Electron, better-sqlite3 or the
 *     machine changes (a stamp file records what it was built for).
 *  4. Starts Electron on the app, passing that copy's path in CLAWBAR_DEV_SQLITE_BINDING
 *     (read by main/index.ts through devSqliteBinding, and ignored by a packaged app).
 *
 * Arguments after `--` go to Electron: `npm start -- --inspect=5858`.
 *
 * Packaging does not use any of this: electron-builder rebuilds native modules itself
 * (electron-builder.yml). The decision functions are exported for test/unit/packaging.test.ts.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { DEV_SQLITE_BINDING_ENV } from '../main/core/paths.js';

/** What a native addon build is for: it loads only where all of these match. */
export interface ElectronAddonTarget {
  electronVersion: string;
  /** Electron's NODE_MODULE_VERSION (node_modules/electron/abi_version). */
  abi: string;
  /** better-sqlite3's version: a new one needs its new sources compiled. */
  betterSqlite3Version: string;
  platform: string;
  arch: string;
}

/** The stamp written next to the Electron build: what it was built for, and its bytes' hash. */
export interface AddonStamp extends ElectronAddonTarget {
  sha256: string;
}

/**
 * Reads a stamp file's text. Anything that is not a complete stamp (a half-written file, an old
 * format, hand edits) is treated as no stamp, which only costs a rebuild.
 */
export function parseStamp(text: string | undefined): AddonStamp | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  const keys = [
    'electronVersion',
    'abi',
    'betterSqlite3Version',
    'platform',
    'arch',
    'sha256',
  ] as const;
  if (!keys.every((key) => typeof record[key] === 'string' && record[key] !== '')) return undefined;
  return Object.fromEntries(keys.map((key) => [key, record[key]])) as unknown as AddonStamp;
}

/**
 * Why the Electron copy of better-sqlite3 must be (re)built, or undefined when the one on disk
 * was built for exactly `wanted`. `binarySha256` is the hash of the addon on disk (undefined
 * when there is none): a file that differs from the stamp's was replaced or damaged since.
 */
export function needsRebuild(
  stamp: AddonStamp | undefined,
  wanted: ElectronAddonTarget,
  binarySha256: string | undefined,
): string | undefined {
  if (binarySha256 === undefined) return 'no Electron build of better-sqlite3 yet';
  if (stamp === undefined) return 'the Electron build of better-sqlite3 has no valid stamp';
  if (stamp.sha256 !== binarySha256) return 'the Electron build of better-sqlite3 changed on disk';
  if (stamp.electronVersion !== wanted.electronVersion || stamp.abi !== wanted.abi) {
    return `it was built for Electron ${stamp.electronVersion} (ABI ${stamp.abi}), now Electron ${wanted.electronVersion} (ABI ${wanted.abi})`;
  }
  if (stamp.betterSqlite3Version !== wanted.betterSqlite3Version) {
    return `better-sqlite3 went from ${stamp.betterSqlite3Version} to ${wanted.betterSqlite3Version}`;
  }
  if (stamp.platform !== wanted.platform || stamp.arch !== wanted.arch) {
    return `it was built for ${stamp.platform}-${stamp.arch}, this is ${wanted.platform}-${wanted.arch}`;
  }
  return undefined;
}

/** What the electron package has on disk, as {@link electronBinaryProblem} needs it. */
export interface ElectronInstall {
  /** node_modules/electron/path.txt, written by its install script after the download. */
  pathTxt: string | undefined;
  /** Whether the executable that path.txt names exists under node_modules/electron/dist. */
  binaryExists: boolean;
  /** ELECTRON_OVERRIDE_DIST_PATH: an Electron installed elsewhere. */
  overrideDistPath: string | undefined;
  /** ELECTRON_SKIP_BINARY_DOWNLOAD as set now. */
  skipDownload: string | undefined;
}

/** The fix for a missing binary: run the electron package's own install script, downloading. */
export const FETCH_ELECTRON_COMMAND =
  'env -u ELECTRON_SKIP_BINARY_DOWNLOAD node node_modules/electron/install.js';

/**
 * A message saying why Electron cannot start and how to fix it, or undefined when it can.
 * The electron package throws a bare "Electron failed to install correctly" otherwise.
 */
export function electronBinaryProblem(install: ElectronInstall): string | undefined {
  if (install.overrideDistPath) return undefined;
  if (install.pathTxt !== undefined && install.binaryExists) return undefined;
  const why =
    install.skipDownload !== undefined
      ? `ELECTRON_SKIP_BINARY_DOWNLOAD is set (${JSON.stringify(install.skipDownload)}), so npm installed the electron package without its binary`
      : 'the electron package has no binary: its download was skipped (ELECTRON_SKIP_BINARY_DOWNLOAD during `npm ci`) or failed';
  return [
    `Cannot start the desktop app: ${why}.`,
    `Fetch it (needs access to github.com) with:`,
    `  ${FETCH_ELECTRON_COMMAND}`,
    `then run \`npm start\` again. Without a display or Electron, \`npx clawbar serve\` runs the same core.`,
  ].join('\n');
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const electronDir = path.join(root, 'node_modules', 'electron');
const installedSqliteDir = path.join(root, 'node_modules', 'better-sqlite3');
/** A tiny project of its own, so @electron/rebuild rebuilds the copy and nothing else. */
const electronProjectDir = path.join(root, 'node_modules', '.cache', 'clawbar-electron');
const copiedSqliteDir = path.join(electronProjectDir, 'node_modules', 'better-sqlite3');
const electronAddon = path.join(copiedSqliteDir, 'build', 'Release', 'better_sqlite3.node');
const stampFile = path.join(electronProjectDir, 'stamp.json');

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function sha256Of(file: string): string | undefined {
  try {
    return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function versionOf(packageDir: string): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as {
    version?: unknown;
  };
  if (typeof manifest.version !== 'string') throw new Error(`${packageDir} has no version`);
  return manifest.version;
}

function inspectElectron(): ElectronInstall & { executable: string | undefined } {
  const pathTxt = readIfExists(path.join(electronDir, 'path.txt'))?.trim();
  const overrideDistPath = process.env.ELECTRON_OVERRIDE_DIST_PATH;
  const executable = overrideDistPath
    ? path.join(overrideDistPath, pathTxt ?? 'electron')
    : pathTxt !== undefined
      ? path.join(electronDir, 'dist', pathTxt)
      : undefined;
  return {
    pathTxt,
    binaryExists: executable !== undefined && fs.existsSync(executable),
    overrideDistPath,
    skipDownload: process.env.ELECTRON_SKIP_BINARY_DOWNLOAD,
    executable,
  };
}

/** Runs a command to completion with inherited output; rejects on a non-zero exit. */
function run(command: string, args: string[], cwd: string = root): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} exited with ${signal ?? code}`));
    });
  });
}

/** Copies the installed better-sqlite3 sources (not its Node build) into the Electron project. */
function prepareElectronProject(target: ElectronAddonTarget): void {
  fs.rmSync(electronProjectDir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(copiedSqliteDir), { recursive: true });
  fs.cpSync(installedSqliteDir, copiedSqliteDir, {
    recursive: true,
    filter: (src) => path.relative(installedSqliteDir, src).split(path.sep)[0] !== 'build',
  });
  fs.writeFileSync(
    path.join(electronProjectDir, 'package.json'),
    JSON.stringify({
      name: 'clawbar-electron-native',
      private: true,
      dependencies: { 'better-sqlite3': target.betterSqlite3Version },
    }),
  );
}

async function ensureElectronAddon(): Promise<string> {
  const target: ElectronAddonTarget = {
    electronVersion: versionOf(electronDir),
    abi: fs.readFileSync(path.join(electronDir, 'abi_version'), 'utf8').trim(),
    betterSqlite3Version: versionOf(installedSqliteDir),
    platform: process.platform,
    arch: process.arch,
  };
  const reason = needsRebuild(parseStamp(readIfExists(stampFile)), target, sha256Of(electronAddon));
  if (reason === undefined) return electronAddon;

  console.log(
    `start-electron: building better-sqlite3 for Electron ${target.electronVersion}: ${reason}`,
  );
  console.log(
    'start-electron: (once per Electron or better-sqlite3 version; needs Electron headers from the internet, Python 3, make and a C++ compiler)',
  );
  prepareElectronProject(target);
  const rebuild = path.join(root, 'node_modules', '.bin', 'electron-rebuild');
  await run(rebuild, [
    '--version',
    target.electronVersion,
    '--arch',
    target.arch,
    '--module-dir',
    electronProjectDir,
    '--which-module',
    'better-sqlite3',
    '--force',
  ]);
  const sha256 = sha256Of(electronAddon);
  if (sha256 === undefined) {
    throw new Error(`@electron/rebuild finished but ${electronAddon} is missing`);
  }
  const stamp: AddonStamp = { ...target, sha256 };
  fs.writeFileSync(stampFile, JSON.stringify(stamp, null, 2));
  return electronAddon;
}

/** Starts Electron on the app and resolves with its exit code; Ctrl-C reaches it. */
function runElectron(executable: string, addon: string, extraArgs: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(executable, [root, ...extraArgs], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, [DEV_SQLITE_BINDING_ENV]: addon },
    });
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    const cleanup = (): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    };
    child.once('error', (err) => {
      cleanup();
      reject(err);
    });
    child.once('exit', (code, signal) => {
      cleanup();
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

async function main(argv: string[]): Promise<number> {
  const build = !argv.includes('--no-build');
  const electronArgs = argv.filter((arg) => arg !== '--no-build');
  const electron = inspectElectron();
  const problem = electronBinaryProblem(electron);
  if (problem !== undefined || electron.executable === undefined) {
    console.error(problem ?? 'Cannot find the Electron executable.');
    return 1;
  }
  if (build) await run('npm', ['run', 'build']);
  const addon = await ensureElectronAddon();
  return runElectron(electron.executable, addon, electronArgs);
}

// Only when run as the script; the tests import the functions above.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`start-electron: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}

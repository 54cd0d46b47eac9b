/** Where Clawbar's shipped files are, whether run from a checkout or a package. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** The package root: the nearest folder above this module with Clawbar's package.json. */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      const { name } = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string };
      if (name === 'clawbar') return (cached = dir);
    }
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error('cannot find the Clawbar package root (package.json named "clawbar")');
    dir = parent;
  }
}

/**
 * Memory templates copied on first run: `groups/global`, `groups/main`. In the packaged app
 * they are unpacked beside `app.asar` (electron-builder.yml's `asarUnpack`), and read from
 * there as plain files rather than through Electron's asar layer.
 */
export const templatesDir = (): string => unpackedPath(path.join(packageRoot(), 'groups'));

/**
 * Where a file inside `app.asar` is when electron-builder unpacked it: the same path under
 * `app.asar.unpacked`. Any other path is returned as it is.
 */
export function unpackedPath(file: string): string {
  const parts = file.split(path.sep);
  const asar = parts.indexOf('app.asar');
  if (asar === -1) return file;
  parts[asar] = 'app.asar.unpacked';
  return parts.join(path.sep);
}

/**
 * The `sandbox-images` folder: the agent image's build context (`agent/`) and
 * `offline-base.sh`. From a checkout or an npm install it sits in the package root. In the
 * packaged desktop app it is shipped by electron-builder's `extraResources` as real files in
 * the app's resources folder, not inside `app.asar`: the Docker build context is streamed from
 * it, `container build` (Apple Container) reads it as a path, and bash runs `offline-base.sh`,
 * none of which can see into an asar archive. Pure, so the Electron shell passes in what
 * Electron knows (`app.isPackaged`, `process.resourcesPath`) and the core stays Electron-free.
 */
export function sandboxImagesDir(where: {
  /** Electron's `app.isPackaged`; false from a checkout, under `serve` and in tests. */
  isPackaged: boolean;
  /** Electron's `process.resourcesPath`; only read when packaged. */
  resourcesPath: string | undefined;
  /** The package root ({@link packageRoot}). */
  appRoot: string;
}): string {
  if (!where.isPackaged) return path.join(where.appRoot, 'sandbox-images');
  if (!where.resourcesPath) {
    throw new Error('a packaged app must know its resources folder (process.resourcesPath)');
  }
  return path.join(where.resourcesPath, 'sandbox-images');
}

/** The agent image's build context, in `sandboxDir` (default: the package's). */
export const agentImageContext = (
  sandboxDir: string = path.join(packageRoot(), 'sandbox-images'),
): string => path.join(sandboxDir, 'agent');

/**
 * The script that makes `clawbar-base:offline` with no registry (debootstrap, as root), in
 * `sandboxDir` (default: the package's).
 */
export const offlineBaseScript = (
  sandboxDir: string = path.join(packageRoot(), 'sandbox-images'),
): string => path.join(sandboxDir, 'offline-base.sh');

/**
 * The environment variable through which `npm start` (scripts/start-electron.ts) hands the
 * Electron main process the better-sqlite3 addon it built for Electron's ABI.
 */
export const DEV_SQLITE_BINDING_ENV = 'CLAWBAR_DEV_SQLITE_BINDING';

/**
 * The better-sqlite3 addon a development Electron run should load, or undefined for the
 * installed one. A packaged app ignores the variable: its own addon was rebuilt for Electron
 * while packaging, and an app must never load native code named by its environment.
 *
 * @throws {Error} when the variable is set but does not name an absolute `.node` file path.
 */
export function devSqliteBinding(where: {
  isPackaged: boolean;
  env: NodeJS.ProcessEnv;
}): string | undefined {
  if (where.isPackaged) return undefined;
  const value = where.env[DEV_SQLITE_BINDING_ENV];
  if (value === undefined || value === '') return undefined;
  if (!path.isAbsolute(value) || !value.endsWith('.node')) {
    throw new Error(
      `${DEV_SQLITE_BINDING_ENV} must be the absolute path of a .node file, not ${JSON.stringify(value)}; ` +
        'unset it, or start the app with `npm start`, which sets it',
    );
  }
  return value;
}

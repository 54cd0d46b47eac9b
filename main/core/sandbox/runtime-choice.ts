/**
 * Which container runtime Clawbar uses when neither `CLAWBAR_RUNTIME` nor the `runtime`
 * setting says. Docker wherever it is installed; on macOS with no Docker, Apple Container when
 * its `container` CLI is installed. Loaded by config.ts, so Node built-ins only.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { RuntimeKind } from '../config.js';

/** What is installed on this machine, as far as the choice needs to know. */
export interface RuntimeProbes {
  /** The `docker` CLI is on PATH, or a Docker engine socket exists. */
  dockerInstalled: boolean;
  /** Apple's `container` CLI is on PATH or in its installer's place. */
  appleInstalled: boolean;
}

/** The default runtime for a platform and what is installed: a pure function. */
export function defaultRuntime(platform: NodeJS.Platform, probes: RuntimeProbes): RuntimeKind {
  if (platform === 'darwin' && !probes.dockerInstalled && probes.appleInstalled) return 'apple';
  return 'docker';
}

/** Where Apple's installer puts the CLI (it is also usually on PATH). */
const APPLE_INSTALL_PATH = '/usr/local/bin/container';

function onPath(name: string, env: NodeJS.ProcessEnv): boolean {
  return (env.PATH ?? '')
    .split(path.delimiter)
    .filter((dir) => dir !== '')
    .some((dir) => isExecutable(path.join(dir, name)));
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Looks at the file system only (no process is run): a few `access` calls, cheap enough for
 * every start.
 */
export function probeRuntimes(env: NodeJS.ProcessEnv = process.env): RuntimeProbes {
  const dockerHost = env.DOCKER_HOST?.trim();
  const sockets = [
    '/var/run/docker.sock',
    path.join(os.homedir(), '.docker', 'run', 'docker.sock'),
    ...(dockerHost?.startsWith('unix://') ? [dockerHost.slice('unix://'.length)] : []),
  ];
  const dockerInstalled =
    onPath('docker', env) ||
    sockets.some((s) => fs.existsSync(s)) ||
    (dockerHost !== undefined && dockerHost !== '' && !dockerHost.startsWith('unix://'));
  const appleInstalled = onPath('container', env) || isExecutable(APPLE_INSTALL_PATH);
  return { dockerInstalled, appleInstalled };
}

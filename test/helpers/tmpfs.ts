/**
 * A small tmpfs for full-disk tests: a real filesystem that really fills up (ENOSPC), mounted
 * in a temp dir and gone after the test. Mounting needs root (or CAP_SYS_ADMIN) on Linux.
 *
 * Where it cannot be mounted, suites skip with the reason in their name, except under CI,
 * where that is a failure: CI is meant to run the full-disk tests (as with Docker).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'vitest';

export interface Tmpfs {
  /** The mount point. */
  readonly dir: string;
  /** Unmounts (lazily, so a process still holding a file cannot keep it) and removes the dir. */
  unmount(): void;
}

/** Mounts a tmpfs of `sizeBytes` in a new temp dir. Throws with the system's reason. */
export function mountTmpfs(sizeBytes: number, prefix = 'clawbar-tmpfs-'): Tmpfs {
  // Short: a unix socket (serve's control socket) in it must fit in 108 bytes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`cannot mount a tmpfs at ${dir}: ${stderr || (err as Error).message}`, {
      cause: err,
    });
  }
  return {
    dir,
    unmount() {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Writes one file of real data into `dir` until the filesystem is full, and returns its path.
 * Removing that file gives the space back.
 */
export function fillDisk(dir: string, name = 'filler.bin'): string {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'a');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (;;) {
      try {
        fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        break;
      }
    }
    // The last pages: a chunk too big for what is left leaves a tail; fill it byte-sized.
    const small = Buffer.alloc(512, 0x5a);
    for (;;) {
      try {
        fs.writeSync(fd, small);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        break;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

function probeTmpfs(): { ok: boolean; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: 'tmpfs mounts need Linux' };
  try {
    mountTmpfs(64 * 1024, 'clawbar-probe-').unmount();
    return { ok: true, reason: '' };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

const probe = probeTmpfs();

/**
 * `describe` for suites that need a real small filesystem to fill: runs them when a tmpfs can be
 * mounted, skips them with the reason otherwise, and fails instead of skipping when `CI` is set.
 */
export function requireTmpfs(name: string, body: () => void): void {
  if (probe.ok) {
    describe(name, body);
  } else if (process.env.CI) {
    describe(name, () => {
      it('needs to mount a tmpfs (root on Linux); CI is set, so this fails instead of skipping', () => {
        throw new Error(probe.reason);
      });
    });
  } else {
    describe.skip(`${name} [skipped: ${probe.reason}]`, body);
  }
}

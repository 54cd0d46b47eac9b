/**
 * Who owns the folders a container mounts, and which user the container runs as.
 *
 * As a normal user, the container runs as that same uid, so files the agent writes in the
 * group folder stay the user's. As root (a server, CI), the container runs as the image's
 * unprivileged user instead, and the folders it must write are handed to that user.
 */
import path from 'node:path';

import type { Logger } from '../logger.js';
import { chownTreeNoFollow, ensureDirInside } from '../safe-fs.js';
import { validateFolderName } from './mounts.js';

/** The runner's user in the agent image (see sandbox-images/agent/Dockerfile). */
export const IMAGE_UID = 10001;

export interface GroupFolderInput {
  groupsDir: string;
  globalDir: string;
  folder: string;
  /** The main group writes global memory too. */
  isMain: boolean;
  /** Told when a folder is too big to hand over in full (as root). */
  log?: Pick<Logger, 'warn'>;
}

/**
 * Creates a run's group folder (and the global memory folder); as root, hands the writable ones
 * to the image's user. There is no session folder: the conversation transcript lives in the
 * host's store (issue 6), so the container gets no writable place beyond its group folder.
 *
 * Everything here happens in folders an agent has written, so nothing follows a link
 * (safe-fs.ts): a group or global folder that is a link, or not a directory, fails with
 * `UnsafePathError`. The hand-over changes the folder itself and, below it, only what root
 * made (the memory templates the host copied in): the agent cannot make root-owned files, so
 * its own files cost nothing, and a link it planted (to `/etc`, to `..`, to another group's
 * folder) is skipped, never followed. The hand-over is async and stops after a bounded number
 * of entries (see `chownTreeNoFollow`), so a folder of millions of files neither stalls the
 * event loop nor holds the run up for long; when it stops early, `log` says so.
 *
 * @throws {InvalidFolderNameError} when `folder` is not a single safe name
 * @throws {UnsafePathError} when one of the folders is a link or not a directory
 */
export async function prepareGroupFolders(
  input: GroupFolderInput,
  uid: number | undefined = process.getuid?.(),
): Promise<{ group: string }> {
  // The folder name becomes a path segment: one safe name, never `..` or `a/b`.
  validateFolderName(input.folder);
  const group = ensureDirInside(input.groupsDir, input.folder);
  const globalDir = ensureDirInside(path.dirname(input.globalDir), path.basename(input.globalDir));
  if (uid === 0) {
    for (const dir of input.isMain ? [group, globalDir] : [group]) {
      const handed = await chownTreeNoFollow(dir, IMAGE_UID, IMAGE_UID, { onlyOwnedBy: 0 });
      if (handed.capped) {
        input.log?.warn(
          { folder: dir, examined: handed.examined },
          `the folder holds more than ${handed.examined} files and folders, so only part of it was handed to the container's user; files Clawbar made past that point (memory templates) stay root's, and the agent may be unable to change them`,
        );
      }
    }
  }
  return { group };
}

/**
 * The `uid:gid` a container runs as: this process's user, or undefined (the image's own user)
 * when running as root or on a platform without uids.
 */
export function containerUser(
  uid: number | undefined = process.getuid?.(),
  gid: number | undefined = process.getgid?.(),
): string | undefined {
  if (uid === undefined || uid === 0) return undefined;
  return `${uid}:${gid ?? uid}`;
}

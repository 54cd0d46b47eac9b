/**
 * Who owns the folders a container mounts, and which user the container runs as.
 *
 * As a normal user, the container runs as that same uid, so files the agent writes in the
 * group folder stay the user's. As root (a server, CI), the container runs as the image's
 * unprivileged user instead, and the folders it must write are handed to that user.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The runner's user in the agent image (see sandbox-images/agent/Dockerfile). */
export const IMAGE_UID = 10001;

export interface GroupFolderInput {
  groupsDir: string;
  sessionsDir: string;
  globalDir: string;
  folder: string;
  /** The main group writes global memory too. */
  isMain: boolean;
}

/** Creates a run's group and session folders; as root, hands the writable ones to the image's user. */
export function prepareGroupFolders(
  input: GroupFolderInput,
  uid: number | undefined = process.getuid?.(),
): { group: string; session: string } {
  const group = path.join(input.groupsDir, input.folder);
  const session = path.join(input.sessionsDir, input.folder);
  fs.mkdirSync(group, { recursive: true });
  fs.mkdirSync(session, { recursive: true, mode: 0o700 });
  fs.mkdirSync(input.globalDir, { recursive: true });
  if (uid === 0) {
    for (const dir of input.isMain ? [group, session, input.globalDir] : [group, session]) {
      fs.chownSync(dir, IMAGE_UID, IMAGE_UID);
    }
  }
  return { group, session };
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

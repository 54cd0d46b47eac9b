/**
 * Where the runner's folders are. In the container they are mounts under `/workspace`; tests
 * point `CLAWBAR_WORKSPACE` at a temp dir instead.
 */
import path from 'node:path';

/** The folders the runner works in, all absolute. */
export interface WorkspacePaths {
  /**
   * The root that holds the folders below. The runner keeps nothing between containers: the
   * conversation comes from the host in `start` and goes back in `done`.
   * @default '/workspace'
   */
  root: string;
  /** The group's own folder: the agent's working directory and its memory (`CLAUDE.md`). */
  group: string;
  /** Memory shared by every group; read-only unless the group is main. */
  global: string;
}

/** Resolves the workspace folders from `CLAWBAR_WORKSPACE`, falling back to `/workspace`. */
export function workspacePaths(env: NodeJS.ProcessEnv = process.env): WorkspacePaths {
  const root = path.resolve(env.CLAWBAR_WORKSPACE ?? '/workspace');
  return {
    root,
    group: path.join(root, 'group'),
    global: path.join(root, 'global'),
  };
}

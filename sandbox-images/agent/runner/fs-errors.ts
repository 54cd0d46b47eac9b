/**
 * Plain-language messages for file system errors. Tool results are read by the model, and
 * through it by the user, so each gets one sentence naming the path and, for permission
 * problems, who the runner is running as.
 */

/** The runner's uid and gid as text, e.g. `uid 10001, gid 10001`; empty where POSIX ids are absent. */
export function processIdentity(): string {
  if (typeof process.getuid !== 'function' || typeof process.getgid !== 'function') return '';
  return `uid ${process.getuid()}, gid ${process.getgid()}`;
}

/** Whether a thrown value is a Node system error carrying an errno `code`. */
export function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
}

/** Describes a file system error about `target` in one sentence. */
export function fsErrorMessage(err: unknown, target: string): string {
  if (!isErrnoException(err)) return err instanceof Error ? err.message : String(err);
  switch (err.code) {
    case 'ENOENT':
      return `no such file or directory: ${target}`;
    case 'EACCES':
    case 'EPERM': {
      const who = processIdentity();
      return `permission denied: ${target}${who ? ` (the runner runs as ${who})` : ''}`;
    }
    case 'EROFS':
      return `read-only file system: ${target} is on a read-only mount`;
    case 'EISDIR':
      return `${target} is a directory`;
    case 'ENOTDIR':
      return `a part of ${target} is not a directory`;
    case 'ENOSPC':
      return `no space left on the device holding ${target}`;
    case 'EEXIST':
      return `${target} already exists`;
    default:
      return `${err.code ?? 'error'} on ${target}: ${err.message}`;
  }
}

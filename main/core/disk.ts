/**
 * Disk limits the host enforces (issue 6): a size budget per group, and a floor of free space
 * under the data directory below which no run starts.
 *
 * An agent runs bash in a folder of the host's disk. Measured before this existed: a group
 * folder took 24 GB in under 5 s, and on the full disk the turn commit failed and serve hung.
 * Nothing here can stop a single turn from filling the disk (that would take a filesystem
 * quota); what it does is keep one group from doing it again and again, and keep every run
 * from starting into a disk that is already full, so the database and the log keep room.
 *
 * - **Budget.** A group's writable folders (its folder; for main, global memory too) are
 *   measured at start, after each turn and after each run. Past the budget the group is
 *   paused, as `groups pause` does, and its chat is told once, with the folder and the command
 *   that resumes it. Status and `groups list` show why it is paused. Before a run, a
 *   group last found over its budget (resumed since), or not measured yet since start, is
 *   measured and its work held meanwhile; see {@link DiskGuard.admit} for the others.
 * - **Free space.** Before each run, the free space of the data directory (what this user may
 *   use) is read. Below the floor the work is held here, not failed: no retry is spent, the
 *   space is checked again with backoff (1 s, 2 s, 4 s… up to 30 s), and the work goes on once
 *   there is room. Status says how much is free and what is needed.
 *
 * The walk that measures a folder ({@link measureFolders}) never follows a link, counts what
 * is allocated (not what a file claims to be), and is bounded in entries and time.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { ClawbarConfig } from './config.js';
import type { CoreEventBus } from './events.js';
import type { Logger } from './logger.js';
import type { WorkItem } from './queue/group-queue.js';
import { childPath, errorCode, listingPath, type OpenDir } from './safe-fs.js';
import type { Group } from './store/index.js';

// ── measuring a folder ──────────────────────────────────────────────────

/** Why a walk could not see everything. */
export type IncompleteReason = 'too-many-entries' | 'too-slow' | 'unreadable';

export interface FolderUsage {
  /** Bytes allocated on disk (`st_blocks` × 512), each file counted once however many links it has. */
  bytes: number;
  /** Bytes per root given, in the order given. */
  byRoot: Array<{ root: string; bytes: number }>;
  /** Files, directories and links looked at. */
  entries: number;
  /**
   * Directories found but not read, because when the walk came to open them they were gone, or
   * something else was in their place (a link, a file, or another directory): an agent racing
   * the walk, or a tool that deletes a folder and makes it again. What they held is not in
   * `bytes`; the next measurement counts it.
   */
  dirsSkipped: number;
  /**
   * Set when the walk stopped before it saw everything: `bytes` is then only a lower bound, and
   * the budget treats the folder as over (a folder nobody can measure must not escape it).
   */
  incomplete?: { reason: IncompleteReason; detail: string };
}

export interface MeasureOptions {
  /**
   * Entries the walk looks at before it stops. A folder with more is over budget whatever its
   * size: millions of tiny files cost inodes and make every walk slow.
   * @default 200000
   */
  maxEntries?: number;
  /** How long the walk may take before it stops. @default 30000 */
  timeoutMs?: number;
  /** `lstat` calls in flight at once. @default 32 */
  concurrency?: number;
  /**
   * For tests only: called with each directory's path after the walk found it (its `lstat`)
   * and before it opens it to read it, so a test can swap the directory the way a racing
   * agent would.
   */
  beforeOpenDir?: (dir: string) => void | Promise<void>;
}

export const DEFAULT_MAX_ENTRIES = 200_000;
export const DEFAULT_WALK_TIMEOUT_MS = 30_000;
const DEFAULT_STAT_CONCURRENCY = 32;
const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
/** Directory entries read from the kernel per call: memory stays bounded in a huge directory. */
const DIR_BUFFER_SIZE = 256;

/** The disk a file takes. Blocks, not size: a sparse file of 24 GB takes almost nothing, a file
 * with preallocated space takes more than its size. Without `blocks` (Windows), the size. */
function allocatedBytes(st: fs.Stats): number {
  return Number.isFinite(st.blocks) ? st.blocks * 512 : st.size;
}

/** A directory the walk found and will read: where, and which one (by its `lstat`). */
interface FoundDir {
  path: string;
  dev: number;
  ino: number;
}

/**
 * Opens a directory the walk found, if it is still the one it found; null when it is gone or
 * something else is there now. `O_NOFOLLOW` refuses a link at its name; comparing device and
 * inode with the `lstat` that found it catches the rest, such as a parent swapped for a link to
 * `/` (then the path leads to a real directory, but not this one).
 */
async function openFoundDir(dir: FoundDir): Promise<fsp.FileHandle | null> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(dir.path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = errorCode(err);
    // Gone; or a link (Linux says ENOTDIR for O_DIRECTORY|O_NOFOLLOW on one, macOS ELOOP); or a file.
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return null;
    throw err;
  }
  try {
    const st = await handle.stat();
    if (st.dev === dir.dev && st.ino === dir.ino) return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
  await handle.close();
  return null;
}

/**
 * Measures the disk the given folders take, together.
 *
 * - Nothing is followed: every entry is `lstat`ed, and a link counts as the link itself. A link
 *   to a big host file, or to another group's folder, adds nothing. A root that is itself a
 *   link is not entered either.
 * - A file with several hard links is counted once, and so is a directory (by device and
 *   inode), so no arrangement of links can make the walk loop or count twice.
 * - A directory on another filesystem (a mount inside the folder) counts as itself only.
 * - The walk is async and reads directories a batch at a time, so a huge folder never stalls
 *   the event loop, and it stops at `maxEntries` or `timeoutMs` with `incomplete` set.
 * - Entries that vanish during the walk are skipped; one that cannot be read makes the result
 *   incomplete.
 *
 * A container can change the folder while it is measured, for instance swap a directory for a
 * link to `/` between the `lstat` that found it and the read. The walk never reads anything but
 * the directories it found (safe-fs.ts does the same for host code that writes): it opens each
 * with `O_NOFOLLOW` and reads it only if it is the same directory (device and inode) as the one
 * found, reads the entries through the descriptor it holds, and `lstat`s each entry through that
 * descriptor too (`/proc/self/fd/<fd>/<name>`, Linux), so a parent swapped meanwhile cannot lead
 * it elsewhere. Where there is no `/proc/self/fd` (macOS), entries are read by path: a swap in
 * the middle of reading one directory can still make the walk count elsewhere, within the same
 * entry and time bounds, and metadata only.
 *
 * A directory that changed is skipped (`dirsSkipped`), not counted as over budget: build tools
 * delete folders and make them again all the time, and a group must not be paused for that. What
 * an agent gains by racing the walk is a low count in the measurement it raced (as it already
 * could by removing a directory just before it is read), never a walk outside its folder.
 */
export async function measureFolders(
  roots: readonly string[],
  opts: MeasureOptions = {},
): Promise<FolderUsage> {
  const maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WALK_TIMEOUT_MS;
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_STAT_CONCURRENCY);
  const deadline = Date.now() + timeoutMs;
  const seen = new Set<string>();
  const usage: FolderUsage = { bytes: 0, byRoot: [], entries: 0, dirsSkipped: 0 };

  const stop = (reason: IncompleteReason, detail: string): FolderUsage => {
    usage.incomplete = { reason, detail };
    return usage;
  };
  const tooSlow = (): FolderUsage =>
    stop('too-slow', `not measured within ${Math.round(timeoutMs / 1000)} s`);

  for (const root of roots) {
    const share = { root, bytes: 0 };
    usage.byRoot.push(share);
    const dirs: FoundDir[] = [];

    /** Counts one entry; returns false when it was counted before. */
    const count = (st: fs.Stats): boolean => {
      usage.entries += 1;
      if (st.isDirectory() || st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        if (seen.has(key)) return false;
        seen.add(key);
      }
      const bytes = allocatedBytes(st);
      usage.bytes += bytes;
      share.bytes += bytes;
      return true;
    };

    // The root's own parents are the host's (the groups directory); the root is not.
    let rootStat: fs.Stats;
    try {
      rootStat = await fsp.lstat(root);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') continue; // Not made yet: it takes nothing.
      return stop('unreadable', `${root}: ${(err as Error).message}`);
    }
    if (count(rootStat) && rootStat.isDirectory())
      dirs.push({ path: root, dev: rootStat.dev, ino: rootStat.ino });

    /**
     * Counts the entries of the directory `dir` holds open, and queues its subdirectories.
     * Returns the result when the walk must stop, null when it goes on.
     */
    const readFoundDir = async (dir: OpenDir, dev: number): Promise<FolderUsage | null> => {
      let batch: string[] = [];
      const flush = async (): Promise<FolderUsage | null> => {
        const names = batch;
        batch = [];
        const stats = await Promise.all(
          names.map((name) =>
            // Through the descriptor: a parent swapped meanwhile cannot redirect it.
            fsp.lstat(childPath(dir, name)).then(
              (st) => ({ name, st, err: null }),
              (err: unknown) => ({ name, st: null, err }),
            ),
          ),
        );
        for (const { name, st, err } of stats) {
          const entry = path.join(dir.path, name);
          if (!st) {
            if (errorCode(err) === 'ENOENT') continue;
            return stop('unreadable', `${entry}: ${(err as Error).message}`);
          }
          // Only a real directory on the same filesystem is entered; links never are.
          if (count(st) && st.isDirectory() && st.dev === dev)
            dirs.push({ path: entry, dev: st.dev, ino: st.ino });
        }
        return null;
      };
      // `for await` closes the listing however the loop is left (end, return or throw).
      try {
        const listing = await fsp.opendir(listingPath(dir), { bufferSize: DIR_BUFFER_SIZE });
        for await (const dirent of listing) {
          batch.push(dirent.name);
          if (usage.entries + batch.length > maxEntries) {
            return stop('too-many-entries', `more than ${maxEntries} files and folders`);
          }
          if (batch.length >= concurrency) {
            const stopped = await flush();
            if (stopped) return stopped;
            if (Date.now() > deadline) return tooSlow();
          }
        }
        return await flush();
      } catch (err) {
        // Reading the directory failed half-way (it was removed, or an I/O error).
        if (errorCode(err) === 'ENOENT') return null;
        return stop('unreadable', `${dir.path}: ${(err as Error).message}`);
      }
    };

    while (dirs.length > 0) {
      if (Date.now() > deadline) return tooSlow();
      const found = dirs.pop() as FoundDir;
      await opts.beforeOpenDir?.(found.path);
      let handle: fsp.FileHandle | null;
      try {
        handle = await openFoundDir(found);
      } catch (err) {
        return stop('unreadable', `${found.path}: ${(err as Error).message}`);
      }
      if (!handle) {
        usage.dirsSkipped += 1;
        continue;
      }
      try {
        const stopped = await readFoundDir({ fd: handle.fd, path: found.path }, found.dev);
        if (stopped) return stopped;
      } finally {
        await handle.close();
      }
    }
  }
  return usage;
}

// ── free space ──────────────────────────────────────────────────────────

/** The fields of `fs.statfsSync` this module reads. */
export interface StatFsResult {
  /** Blocks available to an unprivileged user (root's reserve excluded). */
  bavail: number;
  bsize: number;
}

export type StatFs = (path: string) => StatFsResult;

/** Bytes this user may still write on the filesystem that holds `dir`. */
export function availableBytes(dir: string, statfs: StatFs = fs.statfsSync): number {
  const st = statfs(dir);
  return Number(st.bavail) * Number(st.bsize);
}

/** Bytes for people, in the 1024-based units the settings are given in: "2.3 GB", "512 MB". */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${bytes} bytes`;
  const shown = value >= 100 || Number.isInteger(value) ? Math.round(value) : value.toFixed(1);
  return `${String(shown).replace(/\.0$/, '')} ${units[unit]}`;
}

// ── the guard ───────────────────────────────────────────────────────────

export interface DiskGuardOptions {
  /** @default fs.statfsSync */
  statfs?: StatFs;
  /** @default {@link measureFolders} */
  measure?: (roots: readonly string[], opts: MeasureOptions) => Promise<FolderUsage>;
  /** @default {@link DEFAULT_MAX_ENTRIES} */
  maxEntries?: number;
  /** @default {@link DEFAULT_WALK_TIMEOUT_MS} */
  walkTimeoutMs?: number;
  /** First re-check of free space after it was found low; each next one doubles. @default 1000 */
  recheckBaseMs?: number;
  /** @default 30000 */
  recheckMaxMs?: number;
}

export interface DiskGuardDeps extends DiskGuardOptions {
  config: Pick<
    ClawbarConfig,
    'home' | 'groupsDir' | 'globalDir' | 'groupMaxBytes' | 'minFreeBytes'
  >;
  events: CoreEventBus;
  log: Logger;
  getGroup(groupJid: string): Group | undefined;
  listGroups(): Group[];
  /**
   * The group (not paused) is over its budget: pause it and post `notice` to its chat. Called
   * once per time it goes over; must not throw.
   */
  onOverBudget(group: Group, notice: string): void;
  /** Work held here may start now: hand it back to the queue. */
  onRelease(groupJid: string, work: readonly WorkItem[]): void;
  /** Held work that will not run: its group was paused over its budget (tasks are skipped). */
  onDiscard(groupJid: string, work: readonly WorkItem[]): void;
}

/** What status shows about the disk. */
export interface DiskStatus {
  /** The data directory whose filesystem is checked. */
  dataDir: string;
  /** Bytes this user may still write there; null when it could not be read. */
  freeBytes: number | null;
  minFreeBytes: number;
  /** Runs are refused: less than `minFreeBytes` is free. */
  low: boolean;
  /** One line for people, e.g. "120 MB free in /path, below the 512 MB needed to start runs". */
  summary: string;
  /** Groups whose next run waits here: for space, or for their folder to be measured. */
  waiting: string[];
  groupMaxBytes: number;
  /** Groups paused because their folders are over budget, and why. */
  overBudget: Array<{ groupJid: string; name: string; bytes: number; reason: string }>;
}

interface GroupDisk {
  usage: FolderUsage | null;
  over: boolean;
  /**
   * The measurement was taken with no run of the group alive, and none has started since:
   * a run may start without a new one.
   */
  fresh: boolean;
  running: boolean;
  /** Bumped when a run starts: a measurement that began before it is not fresh. */
  generation: number;
  measuring: Promise<void> | null;
  /** Another measurement was asked for while one was under way. */
  again: boolean;
  held: WorkItem[];
}

export class DiskGuard {
  private readonly groups = new Map<string, GroupDisk>();
  private readonly log: Logger;
  private readonly statfs: StatFs;
  private readonly unsubscribe: Array<() => void>;
  /** Free space was found low, and the re-check timer watches for it to come back. */
  private low = false;
  private recheckTimer: ReturnType<typeof setTimeout> | null = null;
  private recheckAttempt = 0;
  private statfsFailed = false;
  private stopped = false;
  /** Groups registered at start and not measured since: their runs wait for that. */
  private readonly unmeasuredAtStart = new Set<string>();

  constructor(private readonly deps: DiskGuardDeps) {
    this.log = deps.log.child({ mod: 'disk' });
    this.statfs = deps.statfs ?? fs.statfsSync;
    const { events } = deps;
    this.unsubscribe = [
      events.on('run:started', (e) => this.runStarted(e.groupJid)),
      events.on('run:finished', (e) => this.runFinished(e.groupJid)),
      events.on('turn:finished', (e) => this.measureSoon(e.groupJid)),
      events.on('group:changed', (e) => {
        if (e.change === 'removed') this.groups.delete(e.groupJid);
      }),
    ];
  }

  /**
   * Measures every registered group once, in the background, one after another. Until a
   * group's first measurement is in, its runs are held ({@link admit}), so a group that went
   * over its budget while Clawbar was stopped is paused before its first run, and paused ones
   * show why.
   */
  start(): void {
    const groups = this.deps.listGroups();
    for (const group of groups) this.unmeasuredAtStart.add(group.jid);
    (async () => {
      for (const group of groups) {
        if (this.stopped) return;
        if (this.groups.get(group.jid)?.usage) continue; // A run's hold measured it first.
        await this.measure(group.jid);
      }
    })()
      .catch((err: unknown) => this.log.error({ err }, 'measuring group folders at start failed'))
      .finally(() => {
        // Work held for a measurement that never came (it failed): it goes on now.
        const missed = [...this.unmeasuredAtStart];
        this.unmeasuredAtStart.clear();
        for (const groupJid of missed) {
          const state = this.groups.get(groupJid);
          if (state) this.release(groupJid, state);
        }
      });
  }

  /** Stops the re-check timer and the event subscriptions; measurements under way are ignored. */
  stop(): void {
    this.stopped = true;
    if (this.recheckTimer) clearTimeout(this.recheckTimer);
    this.recheckTimer = null;
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /**
   * Asked before each run: may this work start now? False means it is held here, and handed
   * back through `onRelease` later, or dropped through `onDiscard` if its group gets paused.
   *
   * - Less free space than the floor: held until there is room again.
   * - The group's last measurement was over its budget (it was resumed since, or paused and
   *   resumed by hand): held while the folder is measured again. Within budget, the work goes
   *   on; still over, the group is paused again and told again.
   * - Clawbar just started and the group has not been measured yet: held for that.
   * - Otherwise it starts at once. When no measurement is known from after the group's last
   *   run (just after start, or a run ended a moment ago), one starts now, alongside the run:
   *   waiting for it would delay every first answer, and a folder found over its budget
   *   pauses the group after the turn under way, as the check after each turn does.
   */
  admit(group: Group, work: WorkItem): boolean {
    if (this.stopped) return true;
    const state = this.stateOf(group.jid);
    const free = this.freeBytes();
    if (free !== null && free < this.deps.config.minFreeBytes) {
      this.hold(state, work);
      this.noteLow(free);
      return false;
    }
    if (state.over || this.unmeasuredAtStart.has(group.jid)) {
      this.hold(state, work);
      if (!state.measuring) this.measureSoon(group.jid);
      return false;
    }
    if (!state.fresh && !state.measuring) this.measureSoon(group.jid);
    return true;
  }

  /**
   * Why the group is paused, when its folders are over their budget ("folder uses 2.3 GB,
   * over the 2 GB limit"); null otherwise. For status and `groups list`.
   */
  pausedReason(groupJid: string): string | null {
    const state = this.groups.get(groupJid);
    if (!state?.over || !state.usage) return null;
    return this.reasonText(state.usage);
  }

  status(): DiskStatus {
    const { config } = this.deps;
    const free = this.freeBytes();
    const low = free !== null && free < config.minFreeBytes;
    const waiting = [...this.groups].filter(([, s]) => s.held.length > 0).map(([jid]) => jid);
    const overBudget: DiskStatus['overBudget'] = [];
    for (const [groupJid, state] of this.groups) {
      const group = this.deps.getGroup(groupJid);
      if (!group?.paused || !state.over || !state.usage) continue;
      overBudget.push({
        groupJid,
        name: group.name,
        bytes: state.usage.bytes,
        reason: this.reasonText(state.usage),
      });
    }
    const summary =
      free === null
        ? `free space in ${config.home} could not be read`
        : low
          ? `${formatBytes(free)} free in ${config.home}, below the ${formatBytes(config.minFreeBytes)} needed to start runs`
          : `${formatBytes(free)} free in ${config.home}`;
    return {
      dataDir: config.home,
      freeBytes: free,
      minFreeBytes: config.minFreeBytes,
      low,
      summary,
      waiting,
      groupMaxBytes: config.groupMaxBytes,
      overBudget,
    };
  }

  // ── internals ──────────────────────────────────────────────────────────

  private stateOf(groupJid: string): GroupDisk {
    let state = this.groups.get(groupJid);
    if (!state) {
      state = {
        usage: null,
        over: false,
        fresh: false,
        running: false,
        generation: 0,
        measuring: null,
        again: false,
        held: [],
      };
      this.groups.set(groupJid, state);
    }
    return state;
  }

  private hold(state: GroupDisk, work: WorkItem): void {
    const already = state.held.some((held) =>
      held.kind === 'task'
        ? work.kind === 'task' && work.taskId === held.taskId
        : work.kind === held.kind,
    );
    if (!already) state.held.push(work);
  }

  private runStarted(groupJid: string): void {
    const state = this.stateOf(groupJid);
    state.running = true;
    state.fresh = false;
    state.generation += 1;
  }

  private runFinished(groupJid: string): void {
    const state = this.groups.get(groupJid);
    if (!state) return;
    state.running = false;
    this.measureSoon(groupJid);
  }

  /** Starts a measurement without waiting for it; its failure is logged. */
  private measureSoon(groupJid: string): void {
    this.measure(groupJid).catch((err: unknown) =>
      this.log.error({ group: groupJid, err }, 'measuring a group folder failed'),
    );
  }

  /** Measures the group's folders, then acts on the answer. One walk per group at a time. */
  private measure(groupJid: string): Promise<void> {
    const state = this.stateOf(groupJid);
    if (state.measuring) {
      state.again = true;
      return state.measuring;
    }
    const run = async (): Promise<void> => {
      do {
        state.again = false;
        const group = this.deps.getGroup(groupJid);
        if (!group || this.stopped) return;
        const generation = state.generation;
        const measure = this.deps.measure ?? measureFolders;
        const usage = await measure(this.rootsOf(group), {
          ...(this.deps.maxEntries !== undefined ? { maxEntries: this.deps.maxEntries } : {}),
          ...(this.deps.walkTimeoutMs !== undefined ? { timeoutMs: this.deps.walkTimeoutMs } : {}),
        });
        if (this.stopped) return;
        this.unmeasuredAtStart.delete(groupJid);
        state.usage = usage;
        state.fresh = !state.running && state.generation === generation;
        this.judge(groupJid, state, usage);
      } while (state.again);
    };
    state.measuring = run().finally(() => (state.measuring = null));
    return state.measuring;
  }

  /** Acts on a measurement: over budget pauses the group; within it lets held work go. */
  private judge(groupJid: string, state: GroupDisk, usage: FolderUsage): void {
    const group = this.deps.getGroup(groupJid);
    if (!group) return;
    const over = usage.incomplete !== undefined || usage.bytes > this.deps.config.groupMaxBytes;
    const wasOver = state.over;
    state.over = over;
    if (!over) {
      if (wasOver)
        this.log.info(
          { group: group.folder, bytes: usage.bytes },
          'group folder is within its budget again',
        );
      this.release(groupJid, state);
      return;
    }
    const dropped = state.held.splice(0);
    if (dropped.length > 0) this.safely(() => this.deps.onDiscard(groupJid, dropped));
    if (group.paused) return; // Already paused: status shows why; nothing new to tell.
    this.log.warn(
      {
        group: group.folder,
        bytes: usage.bytes,
        limit: this.deps.config.groupMaxBytes,
        incomplete: usage.incomplete,
      },
      'group folder over its budget; pausing the group',
    );
    this.safely(() => this.deps.onOverBudget(group, this.notice(group, usage)));
  }

  /** Hands held work back if there is room and the folder is known to be within budget. */
  private release(groupJid: string, state: GroupDisk): void {
    if (state.held.length === 0) return;
    const free = this.freeBytes();
    if (free !== null && free < this.deps.config.minFreeBytes) {
      this.noteLow(free);
      return;
    }
    if (state.over) {
      this.measureSoon(groupJid);
      return;
    }
    const work = state.held.splice(0);
    this.safely(() => this.deps.onRelease(groupJid, work));
  }

  /** Free space was found low: say so once, and watch for it to come back. */
  private noteLow(free: number): void {
    if (this.low || this.stopped) return;
    this.low = true;
    this.recheckAttempt = 0;
    this.log.warn(
      { dataDir: this.deps.config.home, free, needed: this.deps.config.minFreeBytes },
      `disk space low: ${formatBytes(free)} free, below the ${formatBytes(this.deps.config.minFreeBytes)} needed to start runs; work waits for space`,
    );
    this.scheduleRecheck();
  }

  private scheduleRecheck(): void {
    const base = this.deps.recheckBaseMs ?? 1_000;
    const max = this.deps.recheckMaxMs ?? 30_000;
    const delay = Math.min(base * 2 ** this.recheckAttempt, max);
    this.recheckAttempt += 1;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = null;
      if (this.stopped) return;
      const free = this.freeBytes();
      if (free !== null && free < this.deps.config.minFreeBytes) {
        this.scheduleRecheck();
        return;
      }
      this.low = false;
      this.log.info({ free }, 'disk space is back; held work goes on');
      for (const [groupJid, state] of this.groups) this.release(groupJid, state);
    }, delay);
    // The watch must not keep a process alive that is otherwise done.
    this.recheckTimer.unref();
  }

  /** Free bytes in the data directory, or null (logged once) when the system cannot say. */
  private freeBytes(): number | null {
    try {
      const free = availableBytes(this.deps.config.home, this.statfs);
      this.statfsFailed = false;
      return free;
    } catch (err) {
      // Fail open: a platform without statfs must not stop every run.
      if (!this.statfsFailed) this.log.warn({ err }, 'could not read the free disk space');
      this.statfsFailed = true;
      return null;
    }
  }

  /** The folders a group's container can write: what its budget covers. */
  private rootsOf(group: Group): string[] {
    const { config } = this.deps;
    const roots = [path.join(config.groupsDir, group.folder)];
    if (group.isMain) roots.push(config.globalDir);
    return roots;
  }

  /** "folder uses 2.3 GB, over the 2 GB limit", or why it could not be measured. */
  private reasonText(usage: FolderUsage): string {
    const limit = formatBytes(this.deps.config.groupMaxBytes);
    const { incomplete } = usage;
    if (!incomplete) return `folder uses ${formatBytes(usage.bytes)}, over the ${limit} limit`;
    switch (incomplete.reason) {
      case 'too-many-entries':
        return `folder holds ${incomplete.detail}, over the limit`;
      case 'too-slow':
        return `folder could not be measured in time (${incomplete.detail}), so it counts as over the ${limit} limit`;
      case 'unreadable':
        return `folder could not be read in full (${incomplete.detail}), so it counts as over the ${limit} limit`;
      default: {
        const unreachable: never = incomplete.reason;
        return String(unreachable);
      }
    }
  }

  private notice(group: Group, usage: FolderUsage): string {
    // Name the folder that holds the most: that is where freeing space helps.
    const biggest = [...usage.byRoot].sort((a, b) => b.bytes - a.bytes)[0];
    const where = biggest?.root ?? path.join(this.deps.config.groupsDir, group.folder);
    const name = /^[\p{L}\p{N}_-]+$/u.test(group.name) ? group.name : JSON.stringify(group.name);
    return (
      `I've paused: my ${this.reasonText(usage)}. Free some space in ${where}, ` +
      `then resume me with \`clawbar groups resume ${name}\`.`
    );
  }

  /** Runs a core callback; its failure is logged and never tears the guard's state. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err }, 'a disk guard callback threw');
    }
  }
}

/**
 * One run of a group's agent: a container started for the group, spoken to over the
 * JSON-lines protocol, kept warm for follow-ups until it idles out.
 *
 * A run works through the turns its {@link TurnSource} plans: chat messages, or one scheduled
 * task. For each turn the host sends the prompt, brokers the runner's model calls, runs its
 * host calls, and on `done` hands the replies to the turn's commit, which makes them durable
 * with the source's bookkeeping in one transaction. The outbox worker delivers them later; a
 * run never waits on a channel.
 *
 * States, changed only by {@link AgentRun.to}, which also owns each state's timer:
 *
 *   starting ─▶ booting ─▶ busy ⇄ idle
 *       │          │        │      │
 *       └──────────┴────────┴──────┴─▶ stopping ─▶ ended
 *
 * - starting: the runtime is creating the container; the ready deadline runs from here.
 * - booting: the container is up; waiting for the runner's `ready`.
 * - busy: a turn is under way; the silence (hard) timeout runs, reset only by progress (see
 *   {@link AgentRun.touch}). The turn's own wall-clock deadline runs beside it, never reset.
 * - idle: warm, waiting for a follow-up; the idle timeout runs.
 * - stopping: shutting down or killed; a deadline settles the run even if the engine never
 *   reports the exit, so a wedged engine cannot pin a slot.
 *
 * Every failure carries a {@link FailureKind} for the queue: container faults are retried,
 * an unreachable engine is waited out, and what would only fail again is reported once.
 *
 * Every amount is bound to the run, never taken from the container ({@link RunLimits}):
 * replies and their bytes per turn, one model call in flight and a number per turn (answered,
 * and attempted), request size, `max_tokens`, host calls and error reports per turn, malformed
 * frames per run, and wall-clock caps per turn and per run. A run that goes past one, or goes
 * silent, is stopped once: its turn is closed with a notice saying why, the container is
 * killed, and the run fails as `final` and `notified`, so it is not retried and the chat is not
 * told twice. What the container says is logged in bounded amounts: error messages clipped,
 * its stderr up to a budget per run.
 */
import { randomUUID } from 'node:crypto';
import type { CoreEventBus, RunActivity } from '../events.js';
import type { Logger } from '../logger.js';
import type { FailureKind, GroupRun, RunOutcome } from '../queue/group-queue.js';
import { formatOutbound } from '../router.js';
import { UnsafePathError } from '../safe-fs.js';
import { containerUser, prepareGroupFolders } from '../sandbox/folders.js';
import { groupMounts, InvalidFolderNameError, MountPolicyError } from '../sandbox/mounts.js';
import {
  loadMountAllowlist,
  mountAllowlistPath,
  resolveExtraMounts,
  type ExtraMountResult,
} from '../sandbox/mount-allowlist.js';
import {
  DEFAULT_LIMITS,
  ImageMissingError,
  RuntimeUnavailableError,
  type ContainerRuntime,
  type Mount,
  type RunningContainer,
} from '../sandbox/runtime.js';
import type { Group, TokenUsage } from '../store/index.js';
import { fitConversation } from './conversation.js';
import type { HostTools, RunBinding } from './host-tools.js';
import type { ModelRequest, ModelResult } from './model-broker.js';
import { ModelError } from './model-errors.js';
import {
  addUsage,
  encodeFrame,
  FrameDecoder,
  HostToRunnerSchema,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  RunnerToHostSchema,
  type ContentBlock,
  type HostToRunner,
  type MessageParam,
  type RunnerToHost,
  type StartFrame,
} from './protocol.js';
import {
  describeBytes,
  describeDuration,
  resolveRunLimits,
  RunLimitError,
  type RunLimits,
} from './run-limits.js';
import { runLogsRoot, writeRunLog } from './run-log.js';
import { turnProblem, type BrokeredAnswer } from './turn-check.js';
import type { PlannedTurn, TurnSource } from './turns.js';

/** What the run needs from the model broker; an interface so tests can count calls. */
export interface ModelCaller {
  complete(
    req: ModelRequest,
    opts?: { signal?: AbortSignal; group?: string },
  ): Promise<ModelResult>;
}

export interface AgentRunConfig {
  home: string;
  groupsDir: string;
  globalDir: string;
  image: string;
  assistantName: string;
  /** IANA zone the agent sees as TZ. */
  timezone: string;
  /** @default 300000 */
  idleTimeoutMs: number;
  /** @default 900000 */
  hardTimeoutMs: number;
  /** How long the container may take from the start call to the runner's `ready`. @default 60000 */
  readyTimeoutMs?: number;
  /** How long a stopping container may take to exit before the run settles anyway. @default 10000 */
  stopTimeoutMs?: number;
  /** Amounts the run and each of its turns may use. @default DEFAULT_RUN_LIMITS */
  limits?: Partial<RunLimits>;
  /** The extra mounts' allowlist (mount-allowlist.ts). @default `<home>/mount-allowlist.json` */
  mountAllowlistFile?: string;
  /** Where each run's log file goes, a folder per group (run-log.ts). @default `<home>/logs/runs` */
  runLogsDir?: string;
  /** Run log files kept per group. @default 50 */
  runLogsKept?: number;
}

export interface AgentRunDeps {
  runtime: ContainerRuntime;
  broker: ModelCaller;
  hostTools: HostTools;
  /** Told when a turn has queued something for delivery. */
  outbox: { notify(): void };
  events: CoreEventBus;
  config: AgentRunConfig;
  isPaused(groupJid: string): boolean;
  /** Shows or clears "typing…" in the group's chat. Must not throw. */
  setTyping(chatJid: string, typing: boolean): void;
  /** Called each time the run goes idle, warm, between turns. */
  onIdle(): void;
  now(): number;
  log: Logger;
}

/**
 * The container never became ready in time. Deadlines within a turn (no progress, the turn's
 * wall clock) stop the run with a {@link RunLimitError} instead, as they are not retried.
 */
export class RunTimeoutError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RunTimeoutError';
  }
}

/** The container or runner misbehaved: exited mid-turn, broke the protocol, failed a turn. */
export class RunFailedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RunFailedError';
  }
}

type RunState = 'starting' | 'booting' | 'busy' | 'idle' | 'stopping' | 'ended';

/** Which states may follow each state. Anything else is a bug, refused loudly. */
const NEXT_STATES: Record<RunState, readonly RunState[]> = {
  starting: ['booting', 'stopping', 'ended'],
  booting: ['busy', 'stopping', 'ended'],
  busy: ['busy', 'idle', 'stopping', 'ended'],
  idle: ['busy', 'stopping', 'ended'],
  stopping: ['ended'],
  ended: [],
};

/** The timer each state runs; `starting` and `booting` share one ready deadline. */
type TimerKind = 'ready' | 'silence' | 'idle' | 'stop' | null;
const STATE_TIMER: Record<RunState, TimerKind> = {
  starting: 'ready',
  booting: 'ready',
  busy: 'silence',
  idle: 'idle',
  stopping: 'stop',
  ended: null,
};

interface Turn {
  id: string;
  plan: PlannedTurn;
  replies: string[];
  /** The runner's last `error` message in this turn, clipped; a `done` with status ok clears it. */
  failure: string | null;
  /**
   * The runner had a conversation before this turn's prompt: the stored history in `start`,
   * or this run's earlier turns. A request the API refuses may then be refused for that
   * history, and every later one with it.
   */
  carriedHistory: boolean;
  /** Tokens the host's own broker recorded for this turn's model calls. */
  usage: TokenUsage;
  /** The last model call of the turn failed, per the host's own broker: why. */
  modelError: Error | null;
  /** `output` frames received in this turn, counted whether or not they held visible text. */
  outputs: number;
  /** UTF-8 bytes of this turn's `output` texts, as the container sent them. */
  outputBytes: number;
  /** Model calls of this turn the broker answered: counted against `maxModelCallsPerTurn`. */
  modelCalls: number;
  /** `model.request` frames the host took in this turn, whatever became of them. */
  modelAttempts: number;
  /** `error` frames (without a code) in this turn. */
  errorFrames: number;
  /** `host.call` frames the host accepted in this turn. */
  hostCalls: number;
  /**
   * Every answer the broker passed to the container in this turn, in order: what the turn the
   * runner reports in `done` is checked against before it joins the transcript.
   */
  answers: BrokeredAnswer[];
}

interface Failure {
  error: Error;
  kind: FailureKind;
  /** The chat was already told why (the turn was closed with a notice). */
  notified?: boolean;
}

/** Malformed frames tolerated in one run; one more stops the run (`protocol`, not retried). */
const MAX_BAD_FRAMES = 20;
/** Runner stderr kept for the failure report. */
const STDERR_TAIL_CHARS = 4_000;
/**
 * Runner stderr logged (at debug) per run. A runner logs a few kilobytes a turn; past this, one
 * line says the rest goes unlogged, so a container cannot fill the host's log through it.
 */
const STDERR_LOG_CHARS = 64 * 1024;
/** The most of a container-chosen message (an `error` frame's) that goes into one log line. */
const LOGGED_MESSAGE_CHARS = 1_000;
/** How long a started turn's frame may take to reach the container. */
const DEFAULT_READY_TIMEOUT_MS = 60_000;
const DEFAULT_STOP_TIMEOUT_MS = 10_000;

function emptyUsage(): TokenUsage {
  return { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };
}

export class AgentRun implements GroupRun {
  readonly runId = randomUUID();
  readonly finished: Promise<RunOutcome>;
  private state: RunState = 'starting';
  private timer: ReturnType<typeof setTimeout> | null = null;
  private container: RunningContainer | null = null;
  private turn: Turn | null = null;
  private turnCount = 0;
  private stopRequested = false;
  private badFrames = 0;
  private stderrTail = '';
  /** Characters of stderr logged so far; see {@link STDERR_LOG_CHARS}. */
  private stderrLogged = 0;
  private failure: Failure | null = null;
  private readonly limits: RunLimits;
  /** The turn's own wall-clock deadline; owned by the turn, cleared by {@link releaseTurn}. */
  private turnTimer: ReturnType<typeof setTimeout> | null = null;
  /** The run's wall-clock cap; armed at construction, cleared when the run ends. */
  private runTimer: ReturnType<typeof setTimeout> | null = null;
  /** Past `runWallClockMs`: no new turn starts. */
  private runExpired = false;
  /** A model call is with the broker; the protocol allows one at a time. */
  private modelCallInFlight = false;
  /**
   * Messages were accepted for a later turn (offered while a turn was under way or the
   * container was starting). If the run ends without starting another turn, the queue is told
   * so, and they get a run of their own.
   */
  private messagesWaiting = false;
  /**
   * The run has asked its source for a turn. A run that ends before it does (asked to stop
   * before `ready`) has not looked at the messages it was started for: the queue is told they
   * are left, so they are still dispatched.
   */
  private sourceAsked = false;
  /** Cancels the container start and every model call of the run. */
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private settle!: (outcome: RunOutcome) => void;
  /** Why the run was killed from outside (a stop, the budget, a shutdown), for its log. */
  private killedFor: string | null = null;
  /** For the run log (run-log.ts): when the run began, what it mounted, how it exited. */
  private readonly startedAt: number;
  private mounts: Mount[] = [];
  private refusedMounts: ExtraMountResult['refused'] = [];
  private exitCode: number | null = null;

  constructor(
    private readonly deps: AgentRunDeps,
    private readonly group: Group,
    private readonly source: TurnSource,
  ) {
    this.limits = resolveRunLimits(deps.config.limits);
    this.startedAt = deps.now();
    this.log = deps.log.child({
      mod: 'agent-run',
      group: group.folder,
      run: this.runId.slice(0, 8),
      work: source.kind,
    });
    this.finished = new Promise((resolve) => (this.settle = resolve));
    this.runTimer = setTimeout(() => this.onRunExpired(), this.limits.runWallClockMs);
    this.to('starting');
    this.start().catch((err: unknown) =>
      this.fail(new RunFailedError('the run could not start', { cause: err }), 'retry'),
    );
  }

  get idle(): boolean {
    return this.state === 'idle';
  }

  /** The container's name once it exists, so orphan cleanup can tell it is still in use. */
  get containerName(): string | null {
    return this.container?.name ?? null;
  }

  offerMessages(): boolean {
    if (!this.source.takesMessages) return false;
    if (this.stopRequested || this.runExpired || this.isStopping()) return false;
    if (this.state === 'idle') {
      this.startNextTurn();
      return true;
    }
    // Starting or busy: the next turn picks the messages up.
    this.messagesWaiting = true;
    return true;
  }

  requestStop(): void {
    this.stopRequested = true;
    if (this.state === 'idle') this.beginShutdown();
  }

  async kill(reason = 'killed'): Promise<void> {
    if (this.state === 'ended') return;
    this.killedFor ??= reason;
    this.abort.abort(new Error('run killed'));
    if (this.state !== 'stopping') this.to('stopping');
    await this.killContainer();
  }

  // ── states ─────────────────────────────────────────────────────────────

  /**
   * The one place the state changes. Refuses a transition the diagram does not allow, and
   * swaps the timer when the new state runs a different one (a new busy turn re-arms it).
   */
  private to(next: RunState): void {
    const from = this.state;
    if ((from !== next || next === 'busy') && !NEXT_STATES[from].includes(next)) {
      // A bug, not a container's doing. Throwing here could take the process down from a
      // timer, so the run ends as failed instead, and the log says where.
      this.log.error({ from, to: next }, 'agent run: refused an impossible state change');
      if (from !== 'ended') {
        this.end({
          error: new RunFailedError(`internal error: no state change from ${from} to ${next}`),
          kind: 'retry',
        });
      }
      return;
    }
    this.state = next;
    const kind = STATE_TIMER[next];
    if (kind === STATE_TIMER[from] && from !== next && kind === 'ready') return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const { config } = this.deps;
    switch (kind) {
      case 'ready': {
        const ms = config.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
        this.timer = setTimeout(
          () =>
            this.fail(
              new RunTimeoutError(
                `the agent container did not become ready within ${describeDuration(ms)}`,
              ),
              'retry',
            ),
          ms,
        );
        return;
      }
      case 'silence':
        this.armSilence();
        return;
      case 'idle':
        this.timer = setTimeout(() => {
          this.log.debug('idle timeout');
          this.beginShutdown();
        }, config.idleTimeoutMs);
        return;
      case 'stop':
        this.timer = setTimeout(() => {
          this.log.warn('the container did not exit in time; the run ends without it');
          this.killSoon();
          this.end(this.failure);
        }, config.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS);
        return;
      case null:
        return;
      default: {
        const unreachable: never = kind;
        throw new Error(`unknown timer ${String(unreachable)}`);
      }
    }
  }

  /**
   * (Re)starts the silence timeout. Only progress calls it (see {@link touch}): a runner that
   * is stopped while something else in the container writes blank lines or garbage to its
   * stdout still times out (issue 6).
   */
  private armSilence(): void {
    if (this.timer) clearTimeout(this.timer);
    const ms = this.deps.config.hardTimeoutMs;
    this.timer = setTimeout(
      () =>
        this.stopForLimit(
          new RunLimitError('silence', `the agent made no progress for ${describeDuration(ms)}`),
        ),
      ms,
    );
  }

  /** Past the run's wall-clock cap: no new turn; the turn under way may finish. */
  private onRunExpired(): void {
    this.runTimer = null;
    if (this.isStopping()) return;
    this.runExpired = true;
    this.log.info(
      { limitMs: this.limits.runWallClockMs },
      'the run reached its wall-clock cap; it takes no new turn',
    );
    // Busy: afterTurn shuts down when the turn ends. Starting or booting: `ready` starts no turn.
    if (this.state === 'idle') this.beginShutdown();
  }

  // ── lifecycle ──────────────────────────────────────────────────────────

  private async start(): Promise<void> {
    const { config, runtime } = this.deps;
    this.activity('starting');
    let container: RunningContainer;
    try {
      await this.prepareSource();
      const dirs = await prepareGroupFolders({
        groupsDir: config.groupsDir,
        globalDir: config.globalDir,
        folder: this.group.folder,
        isMain: this.group.isMain,
        log: this.log,
      });
      const mounts = groupMounts({
        home: config.home,
        groupDir: dirs.group,
        globalDir: config.globalDir,
        isMain: this.group.isMain,
        extra: this.extraMounts(),
      });
      this.mounts = mounts;
      const user = containerUser();
      container = await runtime.start(
        {
          name: `clawbar-${this.group.folder}-${this.runId.slice(0, 8)}`,
          image: config.image,
          mounts,
          // Plain settings only: the model key never enters a container.
          env: { TZ: config.timezone, CLAWBAR_ASSISTANT_NAME: config.assistantName },
          labels: { 'dev.clawbar.group': this.group.folder },
          limits: DEFAULT_LIMITS,
          network: this.group.networkAllowed,
          ...(user ? { user } : {}),
        },
        { signal: this.abort.signal },
      );
    } catch (err) {
      if (this.failure) {
        this.end(this.failure); // Killed or timed out while starting: that is the story.
        return;
      }
      if (this.state === 'ended') return;
      // An unreachable engine or a missing image is the machine's set-up, not this run's fault:
      // the work is held, spending no retry, until the orchestrator finds it fixed.
      const kind: FailureKind =
        err instanceof RuntimeUnavailableError || err instanceof ImageMissingError
          ? 'not-ready'
          : isSetupError(err)
            ? 'final'
            : 'retry';
      this.end({
        error: new RunFailedError(
          `could not start the agent container: ${(err as Error).message}`,
          { cause: err },
        ),
        kind,
      });
      return;
    }
    if (this.state !== 'starting') {
      // Stopped (killed, timed out) while the start was under way: the container goes too.
      this.container = container;
      this.killSoon();
      return;
    }
    this.container = container;
    this.to('booting');
    this.log.info({ container: container.name }, 'container started');
    this.deps.events.emit('run:started', {
      groupJid: this.group.jid,
      runId: this.runId,
      container: container.name,
    });
    this.attach(container);
  }

  /**
   * The source's own step before the container (turns.ts `prepare`: compaction, which may call
   * the model). It has a deadline of its own, so the container's ready deadline is held until
   * it is done, then started afresh. Stopped meanwhile, the run's aborted signal ends it early
   * and the container start that follows fails as a stop during start does.
   */
  private async prepareSource(): Promise<void> {
    if (!this.source.prepare) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.source.prepare(this.abort.signal);
    if (this.state === 'starting') this.to('starting'); // Re-arms the ready deadline.
  }

  private attach(container: RunningContainer): void {
    const decoder = new FrameDecoder(RunnerToHostSchema);
    container.stdout.setEncoding('utf8');
    container.stdout.on('data', (chunk: string) => {
      // Nothing a stopping container says matters any more; not decoding it also keeps a
      // flood from costing anything after a limit stopped the run. Bytes alone are no sign of
      // progress: only accepted frames reset the silence timeout.
      if (this.isStopping()) return;
      for (const result of decoder.push(chunk)) {
        if (result.ok) this.onFrame(result.frame);
        else this.onBadFrame(result.error);
        if (this.isStopping()) return;
      }
    });
    container.stderr.setEncoding('utf8');
    container.stderr.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
      this.logStderr(chunk);
    });
    container.stdin.on('error', (err) => this.log.debug({ err }, 'stdin closed'));
    container.wait().then(
      ({ exitCode }) => this.onExit(exitCode),
      (err: unknown) => this.onWaitLost(err),
    );
  }

  /** Logs the runner's stderr at debug, up to {@link STDERR_LOG_CHARS} per run. */
  private logStderr(chunk: string): void {
    if (this.stderrLogged > STDERR_LOG_CHARS) return;
    const room = STDERR_LOG_CHARS - this.stderrLogged;
    this.stderrLogged += chunk.length;
    if (chunk.length <= room) {
      this.log.debug({ stderr: chunk.trimEnd() }, 'runner');
      return;
    }
    if (room > 0) this.log.debug({ stderr: chunk.slice(0, room) }, 'runner');
    this.log.debug(
      { limitChars: STDERR_LOG_CHARS },
      'runner stderr suppressed: it wrote more than the per-run budget; the rest of this run is not logged',
    );
  }

  /**
   * The group's extra mounts that pass the allowlist, checked now. A refused one is skipped,
   * never fatal: the run goes on without it, the log says why, and so do the run log and
   * `clawbar groups mounts G`.
   */
  private extraMounts(): Mount[] {
    if (this.group.extraMounts.length === 0) return [];
    const { config } = this.deps;
    const allowlist = loadMountAllowlist(
      config.mountAllowlistFile ?? mountAllowlistPath(config.home),
    );
    const result = resolveExtraMounts(this.group.extraMounts, {
      home: config.home,
      isMain: this.group.isMain,
      allowlist,
    });
    this.refusedMounts = result.refused;
    for (const { request, reason } of result.refused) {
      this.log.warn(
        { hostPath: request.hostPath, reason },
        'extra mount refused; the run goes on without it',
      );
    }
    for (const mount of result.mounts) {
      if (mount.notes.length > 0) {
        this.log.info({ hostPath: mount.hostPath, notes: mount.notes }, 'extra mount narrowed');
      }
    }
    return result.mounts;
  }

  private onExit(exitCode: number): void {
    this.exitCode = exitCode;
    if (this.state === 'ended') return;
    if (this.failure) {
      this.end(this.failure);
    } else if (this.turn || this.state === 'booting' || this.state === 'busy') {
      const tail = this.stderrTail.trim().split('\n').slice(-5).join('\n');
      this.end({
        error: new RunFailedError(
          `the agent container exited (code ${exitCode}) in the middle of a turn${tail ? `: ${tail}` : ''}`,
        ),
        kind: 'retry',
      });
    } else {
      this.end(null);
    }
  }

  /**
   * The runtime lost track of the container (engine restarted, connection cut). That is a
   * failed run, never a clean exit. Whether it counts as a fault or as the engine being away
   * is the runtime's own health check's answer.
   */
  private onWaitLost(err: unknown): void {
    if (this.state === 'ended') return;
    this.log.warn({ err }, 'lost track of the agent container');
    this.deps.runtime
      .check()
      .catch(() => ({ ok: false as const, reason: 'check failed', fix: '' }))
      .then((health) => {
        const error = new RunFailedError(
          `lost track of the agent container: ${(err as Error).message ?? String(err)}`,
          { cause: err },
        );
        const kind: FailureKind = health.ok ? 'retry' : 'not-ready';
        // Removed if the engine still answers; otherwise orphan cleanup takes it on its return.
        this.killSoon();
        this.end(this.failure ?? { error, kind });
      })
      .catch((fault: unknown) => this.log.error({ err: fault }, 'could not settle a lost run'));
  }

  /** Settles the run once. The outcome is decided before anyone is told, and telling cannot throw. */
  private end(failure: Failure | null): void {
    if (this.state === 'ended') return;
    this.to('ended');
    this.abort.abort(new Error('run ended'));
    this.releaseTurn();
    if (this.runTimer) clearTimeout(this.runTimer);
    this.runTimer = null;
    if (failure) this.log.warn({ err: failure.error, kind: failure.kind }, 'run failed');
    else this.log.info({ turns: this.turnCount }, 'run finished');
    this.keepRunLog(failure);
    // A container that is still up after a failure must not linger.
    if (failure) this.killSoon();
    // Messages offered for a turn that never came go back to the queue, however the run ended;
    // a run that never asked its source for a turn leaves the ones it was started for too. A
    // failure does not count those: a run that fails before its first turn would only be
    // started again, and fail again.
    const messagesLeft =
      this.messagesWaiting || (!failure && !this.sourceAsked && this.source.takesMessages);
    this.settle(
      failure
        ? {
            ok: false,
            error: failure.error,
            failure: failure.kind,
            ...(failure.notified ? { notified: true } : {}),
            ...(messagesLeft ? { messagesLeft: true } : {}),
          }
        : { ok: true, ...(messagesLeft ? { messagesLeft: true } : {}) },
    );
    this.deps.events.emit('run:finished', {
      groupJid: this.group.jid,
      runId: this.runId,
      ok: failure === null,
      ...(failure ? { error: failure.error.message } : {}),
    });
  }

  /**
   * Writes the run's log file (run-log.ts). A failure to write is logged, never thrown: the run
   * has ended either way. The exit code is the one seen by now; a container still exiting
   * (killed at the stop deadline) has none.
   */
  private keepRunLog(failure: Failure | null): void {
    const { config } = this.deps;
    try {
      writeRunLog(
        config.runLogsDir ?? runLogsRoot(config.home),
        {
          runId: this.runId,
          group: { name: this.group.name, folder: this.group.folder, jid: this.group.jid },
          work: this.source.kind,
          image: config.image,
          container: this.container?.name ?? null,
          startedAt: this.startedAt,
          endedAt: this.now(),
          exitCode: this.exitCode,
          turns: this.turnCount,
          outcome:
            this.killedFor !== null
              ? { ok: false, kind: 'stopped', error: this.killedFor }
              : failure
                ? { ok: false, kind: failure.kind, error: failure.error.message }
                : { ok: true },
          mounts: this.mounts,
          refusedMounts: this.refusedMounts.map((r) => ({
            hostPath: r.request.hostPath,
            reason: r.reason,
          })),
          stderr: this.stderrTail,
        },
        config.runLogsKept !== undefined ? { keep: config.runLogsKept } : {},
      );
    } catch (err) {
      this.log.warn({ err }, 'could not write the run log');
    }
  }

  /**
   * Fails the run: the container is killed and the run settles on its exit, or at the stop
   * deadline if the engine never reports one. The first failure is the one reported.
   */
  private fail(error: Error, kind: FailureKind, notified = false): void {
    if (this.state === 'ended') return;
    this.failure ??= { error, kind, notified };
    this.abort.abort(error);
    if (this.state !== 'stopping') this.to('stopping');
    if (this.container) this.killSoon();
    // Still starting: the start's own rejection (its signal just aborted) ends the run.
  }

  /** Asks the runner to finish: `shutdown`, then EOF. It is killed if it ignores both. */
  private beginShutdown(): void {
    if (this.isStopping()) return;
    this.to('stopping');
    if (!this.container) {
      this.abort.abort(new Error('stopped before the container started'));
      return;
    }
    this.send({ type: 'shutdown' });
    this.container.stdin.end();
  }

  /** Kills the container without waiting for the engine's answer. */
  private killSoon(): void {
    this.killContainer().catch((err: unknown) => this.log.error({ err }, 'kill failed'));
  }

  /** Kills the container; a failure (engine gone) is logged, never thrown. */
  private async killContainer(): Promise<void> {
    const container = this.container;
    if (!container) return;
    try {
      await container.kill();
    } catch (err) {
      this.log.warn(
        { err, container: container.name },
        'could not kill the agent container; it is removed as an orphan when the engine answers',
      );
    }
  }

  /** Stopping or ended: nothing the container sends is acted on any more. */
  private isStopping(): boolean {
    return this.state === 'stopping' || this.state === 'ended';
  }

  /**
   * Stops the run for going past a limit or a deadline, or for a frame only a hostile or broken
   * runner sends. The turn under way is closed with a notice that says why, so its messages
   * are not tried again and nothing loops; the container is killed; and the run fails as
   * `final` with `notified` set, so the queue neither retries it nor tells the chat twice.
   *
   * With no turn under way, the chat is told only if something of its was pending: a run
   * stopped while idle, between turns, owes it nothing (`notified` keeps the queue's give-up
   * notice away); one stopped before its first turn leaves its messages unanswered, and the
   * queue's give-up notice says so.
   */
  private stopForLimit(error: RunLimitError): void {
    if (this.isStopping()) return;
    this.log.warn(
      { limit: error.limit, reason: error.message },
      'the agent went past a limit; the run is stopped and not retried',
    );
    const turn = this.releaseTurn();
    let notified = this.state === 'idle';
    if (turn !== null) {
      // In one transaction with the cursor move. If it cannot be written, the messages stay
      // pending and the queue's give-up notice tells the chat instead.
      const problem = this.recordTurn(turn.id, turn.plan, () =>
        turn.plan.skip(turn.id, error.message, this.now()),
      );
      if (problem !== null) {
        this.log.error({ err: problem }, 'could not close the stopped turn with a notice');
      }
      notified = problem === null;
    }
    this.fail(error, 'final', notified);
  }

  // ── turns ──────────────────────────────────────────────────────────────

  /**
   * Ends the host's part of the turn under way (done, closed, stopped, or the run ended): its
   * deadline and "typing…" go with it. Returns the turn, or null when none was under way.
   */
  private releaseTurn(): Turn | null {
    const turn = this.turn;
    if (!turn) return null;
    this.turn = null;
    if (this.turnTimer) clearTimeout(this.turnTimer);
    this.turnTimer = null;
    this.deps.setTyping(this.group.jid, false);
    return turn;
  }

  /** The turn's wall-clock cap: armed once at its start, never reset by progress. */
  private armTurnDeadline(): void {
    if (this.turnTimer) clearTimeout(this.turnTimer);
    const ms = this.limits.turnWallClockMs;
    this.turnTimer = setTimeout(() => {
      this.turnTimer = null;
      this.stopForLimit(
        new RunLimitError(
          'turnWallClockMs',
          `the agent worked on one turn for more than ${describeDuration(ms)}`,
        ),
      );
    }, ms);
  }

  /** Starts the source's next turn; returns false when it has none. */
  private startNextTurn(first = false): boolean {
    if (this.stopRequested || this.runExpired || this.deps.isPaused(this.group.jid)) return false;
    // The source's next turn takes every message stored so far, offered ones included.
    this.messagesWaiting = false;
    this.sourceAsked = true;
    const plan = this.source.next();
    if (!plan) return false;
    this.turnCount += 1;
    const turn: Turn = {
      id: `${this.runId}:${this.turnCount}`,
      plan,
      replies: [],
      failure: null,
      usage: emptyUsage(),
      modelError: null,
      answers: [],
      outputs: 0,
      outputBytes: 0,
      modelCalls: 0,
      modelAttempts: 0,
      errorFrames: 0,
      hostCalls: 0,
      carriedHistory: !first,
    };
    this.turn = turn;
    this.to('busy');
    this.armTurnDeadline();
    this.deps.setTyping(this.group.jid, true);
    this.log.info({ turn: this.turnCount }, 'turn started');
    const frame: HostToRunner = first
      ? withHistory(
          {
            type: 'start',
            runId: this.runId,
            group: { jid: this.group.jid, name: this.group.name, folder: this.group.folder },
            prompt: plan.prompt,
            isMain: this.group.isMain,
            assistantName: this.deps.config.assistantName,
            history: [],
          },
          this.source.history(),
        )
      : { type: 'message', text: plan.prompt };
    if (frame.type === 'start') turn.carriedHistory = frame.history.length > 0;
    const problem = this.send(frame);
    if (problem === null) plan.began?.(this.now()); // Counts as an attempt from here (turns.ts).
    if (problem === null) return true;

    // The prompt cannot cross to the container as built; sending it again would fail the
    // same way, so the turn is closed with a notice and the group goes on.
    this.log.error({ problem }, 'the turn could not be sent to the agent');
    this.releaseTurn();
    this.closeTurn(turn.id, plan, () =>
      plan.skip(turn.id, `the request could not be passed to the agent (${problem})`, this.now()),
    );
    if (first)
      this.beginShutdown(); // The runner never got a start: nothing more it can do.
    else this.afterTurn();
    return true;
  }

  private finishTurn(frame: Extract<RunnerToHost, { type: 'done' }>): void {
    const turn = this.turn;
    if (!turn) {
      this.onBadFrame('done without a turn in progress');
      return;
    }
    this.releaseTurn();
    const failed =
      frame.status === 'failed' || (frame.status === undefined && turn.failure !== null);
    if (failed) {
      const reason = turn.failure ?? 'no reason given';
      if (turn.modelError) {
        // The model API refused or failed, after the runner's own retries. Running the turn
        // again now would fail the same way: report once; the messages stay pending.
        const error = turn.modelError;
        const forgotten = turn.carriedHistory && refusedRequest(error) && this.forgetHistory(error);
        const message = forgotten
          ? `${error.message.replace(/[\s.]+$/, '')}; the conversation so far is forgotten, so the next attempt starts fresh`
          : error.message;
        this.fail(new RunFailedError(message, { cause: error }), 'final');
        return;
      }
      // The agent gave up on this turn (a runaway loop, a request too large): deterministic.
      this.log.warn({ reason }, 'the agent failed the turn; it is closed with a notice');
      this.closeTurn(turn.id, turn.plan, () =>
        turn.plan.skip(turn.id, `the agent could not finish (${reason})`, this.now()),
      );
      this.afterTurn();
      return;
    }
    // The turn in `done` is a container's claim. One that does not match the host's own
    // records is not saved, and the stored transcript stays as it was: its earlier turns all
    // passed this check, so keeping them beats wiping the group's memory, which would hand a
    // hostile agent a way to erase it. The replies were checked on their own way in and are
    // real, so they are still committed.
    const transcriptProblem = turnProblem(frame.turn, {
      prompt: turn.plan.prompt,
      answers: turn.answers,
    });
    if (transcriptProblem !== null) {
      this.log.warn(
        { reason: transcriptProblem },
        "refused the turn's messages for the transcript; its replies are kept, the transcript stays as it was",
      );
    }
    const closed = this.closeTurn(turn.id, turn.plan, () =>
      turn.plan.commit({
        turnId: turn.id,
        replies: turn.replies,
        messages: transcriptProblem === null ? frame.turn : null,
        usage: turn.usage,
        now: this.now(),
      }),
    );
    if (!closed) return;
    this.log.info({ turn: this.turnCount, usage: turn.usage }, 'turn finished');
    this.afterTurn();
  }

  /**
   * Closes a turn with its commit or skip; false if it could not be written, and the run then
   * fails, to be retried, its messages still pending.
   */
  private closeTurn(turnId: string, plan: PlannedTurn, write: () => unknown): boolean {
    const problem = this.recordTurn(turnId, plan, write);
    if (problem === null) return true;
    this.fail(new RunFailedError('could not record the turn', { cause: problem }), 'retry');
    return false;
  }

  /**
   * Runs a turn's commit or skip, then tells the outbox and listeners. Returns why it could
   * not be written (nobody is told then), or null.
   */
  private recordTurn(turnId: string, plan: PlannedTurn, write: () => unknown): Error | null {
    try {
      write();
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
    this.deps.outbox.notify();
    this.deps.events.emit('turn:finished', {
      groupJid: this.group.jid,
      turnId,
      throughSeq: plan.throughSeq,
    });
    return null;
  }

  /**
   * The API refused a request of a turn that carried a conversation (see {@link refusedRequest}).
   * It may have been refused for something in that conversation, and then every request that
   * carries it is refused too, and each run of the group fails for good; so the stored
   * transcript is cleared and the next attempt starts fresh. Losing the group's memory beats a
   * group that can never answer again. Returns whether it was cleared.
   */
  private forgetHistory(cause: ModelError): boolean {
    if (!this.source.resetHistory) return false;
    try {
      this.source.resetHistory(this.now());
    } catch (err) {
      this.log.error({ err }, 'could not clear the stored transcript after a refused request');
      return false;
    }
    this.log.warn(
      { kind: cause.kind, status: cause.status, reason: clip(cause.message, LOGGED_MESSAGE_CHARS) },
      'the model API refused a request that carried the conversation; the stored transcript is cleared, so the next attempt starts fresh',
    );
    return true;
  }

  /** Between turns: take what arrived meanwhile, stop if asked, else wait warm. */
  private afterTurn(): void {
    if (this.state !== 'busy') return;
    // A group paused mid-turn keeps no warm container: its next messages wait for resume. A
    // run past its wall-clock cap makes way for a fresh one.
    if (this.stopRequested || this.runExpired || this.deps.isPaused(this.group.jid)) {
      this.beginShutdown();
      return;
    }
    if (this.startNextTurn()) return;
    if (!this.source.takesMessages) {
      // A task run ends with its turn: messages that waited for it get a run of their own.
      this.beginShutdown();
      return;
    }
    this.to('idle');
    this.deps.onIdle();
  }

  // ── frames ─────────────────────────────────────────────────────────────

  private onFrame(frame: RunnerToHost): void {
    switch (frame.type) {
      case 'ready':
        this.onReady(frame.protocol);
        return;
      case 'model.request':
        this.brokerModelCall(frame).catch((err: unknown) =>
          this.log.error({ err }, 'model call handling failed'),
        );
        return;
      case 'host.call':
        this.runHostCall(frame).catch((err: unknown) =>
          this.log.error({ err }, 'host call handling failed'),
        );
        return;
      case 'output':
        this.onOutput(frame.text);
        return;
      case 'error':
        if (frame.code === 'bad_frame') {
          // The runner refused what the host sent, so the turn it asked for will never come.
          this.fail(
            new RunFailedError(
              `the agent refused a frame from the host (${frame.message}); the agent image may be out of date: rebuild it with \`clawbar image build\``,
            ),
            'final',
          );
          return;
        }
        this.onErrorFrame(frame.message);
        return;
      case 'done':
        if (this.turn && this.modelCallInFlight) {
          // Its usage would be missing from the turn's record, and its answer would land in
          // the next turn.
          this.stopForLimit(
            new RunLimitError(
              'protocol',
              'the agent ended a turn while its model call was still under way',
            ),
          );
          return;
        }
        if (frame.status !== 'failed' && this.turn) this.turn.failure = null;
        this.finishTurn(frame);
        return;
      default: {
        const unreachable: never = frame;
        this.onBadFrame(`unhandled frame ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onReady(protocol: number): void {
    if (this.state !== 'booting') {
      this.onBadFrame('ready when not starting');
      return;
    }
    if (protocol !== PROTOCOL_VERSION) {
      this.fail(
        new RunFailedError(
          `runner speaks protocol ${protocol}, host speaks ${PROTOCOL_VERSION}; rebuild the image with \`clawbar image build\``,
        ),
        'final',
      );
      return;
    }
    // Asked to stop meanwhile, or nothing left to answer: no turn is started.
    if (!this.startNextTurn(true)) this.beginShutdown();
  }

  /**
   * Counts a frame that failed to decode or came when it makes no sense. A few are tolerated
   * (each is logged); past {@link MAX_BAD_FRAMES} the run is stopped, not retried: a runner
   * that breaks the protocol that often would only do it again.
   */
  private onBadFrame(error: string): void {
    this.badFrames += 1;
    if (this.badFrames > MAX_BAD_FRAMES) {
      this.log.warn({ error, count: this.badFrames }, 'too many bad frames from the container');
      this.stopForLimit(
        new RunLimitError(
          'protocol',
          `the agent sent more than ${MAX_BAD_FRAMES} malformed or misplaced frames`,
        ),
      );
      return;
    }
    this.log.warn({ error, count: this.badFrames }, 'bad frame from the container');
  }

  /**
   * An `error` frame without a code: the runner failed the turn (a `done` follows) or warns.
   * Counted per turn, as each is logged; outside a turn it is a misplaced frame. The message is
   * the container's own words, so it is clipped before it reaches the log or a notice.
   */
  private onErrorFrame(message: string): void {
    const turn = this.turn;
    if (!turn) {
      this.onBadFrame(`error outside a turn: ${clip(message, 200)}`);
      return;
    }
    turn.errorFrames += 1;
    const { maxErrorFramesPerTurn } = this.limits;
    if (turn.errorFrames > maxErrorFramesPerTurn) {
      this.stopForLimit(
        new RunLimitError(
          'maxErrorFramesPerTurn',
          `the agent reported more than ${maxErrorFramesPerTurn} errors in one turn`,
        ),
      );
      return;
    }
    const clipped = clip(message, LOGGED_MESSAGE_CHARS);
    this.log.warn({ message: clipped }, 'runner reported an error');
    turn.failure = clipped;
  }

  private async brokerModelCall(
    frame: Extract<RunnerToHost, { type: 'model.request' }>,
  ): Promise<void> {
    const request = this.admitModelRequest(frame);
    const turn = this.turn;
    if (!request || !turn) return;
    this.modelCallInFlight = true;
    this.activity('thinking');
    try {
      const result = await this.deps.broker.complete(request, {
        signal: this.abort.signal,
        group: this.group.folder,
      });
      const tools = toolNames(result.content);
      if (tools.length > 0) this.activity('tool', tools);
      addUsage(turn.usage, result.usage);
      turn.modelCalls += 1;
      turn.modelError = null;
      const problem = this.send({
        type: 'model.result',
        requestId: frame.requestId,
        content: result.content,
        stopReason: result.stopReason,
        usage: result.usage,
      });
      if (problem === null) {
        turn.answers.push({ content: result.content, stopReason: result.stopReason });
      } else {
        turn.modelError = new RunFailedError(
          `the model's answer could not be passed to the agent (${problem})`,
        );
        this.send({
          type: 'model.error',
          requestId: frame.requestId,
          message: turn.modelError.message,
          retryable: false,
        });
      }
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      turn.modelError = error;
      const retryable = (err as { retryable?: unknown }).retryable === true;
      const retryAfterMs = (err as { retryAfterMs?: unknown }).retryAfterMs;
      this.send({
        type: 'model.error',
        requestId: frame.requestId,
        message: error.message.slice(0, 10_000),
        retryable,
        ...(typeof retryAfterMs === 'number' ? { retryAfterMs } : {}),
      });
    } finally {
      this.modelCallInFlight = false;
    }
    this.touch();
  }

  /**
   * Checks a model request against the run's limits, synchronously, before anything is
   * awaited: two frames in one chunk must not both pass as "none in flight". Returns the
   * request to send to the broker, or null when it was refused (answered with a `model.error`)
   * or the run was stopped for it.
   */
  private admitModelRequest(
    frame: Extract<RunnerToHost, { type: 'model.request' }>,
  ): ModelRequest | null {
    const turn = this.turn;
    const { maxModelCallsPerTurn, maxModelAttemptsPerTurn, maxRequestBytes, maxTokens } =
      this.limits;
    if (!turn) {
      // The runner only calls the model inside a turn; nothing is pending that could justify
      // the cost, so this is a hostile or broken container, not a frame to skip.
      this.stopForLimit(
        new RunLimitError('protocol', 'the agent asked for a model call while no turn was running'),
      );
      return null;
    }
    if (this.modelCallInFlight) {
      // The runner waits for each answer before it asks again (retries included).
      this.stopForLimit(
        new RunLimitError(
          'protocol',
          'the agent asked for a second model call while one was still under way',
        ),
      );
      return null;
    }
    // The one in flight is settled, so the count of answered calls is exact here.
    if (turn.modelCalls >= maxModelCallsPerTurn) {
      this.stopForLimit(
        new RunLimitError(
          'maxModelCallsPerTurn',
          `the agent made more than ${maxModelCallsPerTurn} model calls in one turn`,
        ),
      );
      return null;
    }
    if (turn.modelAttempts >= maxModelAttemptsPerTurn) {
      this.stopForLimit(
        new RunLimitError(
          'maxModelAttemptsPerTurn',
          `the agent asked for more than ${maxModelAttemptsPerTurn} model calls in one turn, failed ones included`,
        ),
      );
      return null;
    }
    turn.modelAttempts += 1;
    this.touch();
    const request: ModelRequest = {
      system: frame.system,
      messages: frame.messages,
      tools: frame.tools,
      maxTokens: Math.min(frame.maxTokens, maxTokens),
    };
    const bytes = Buffer.byteLength(
      JSON.stringify({ system: request.system, messages: request.messages, tools: request.tools }),
    );
    if (bytes > maxRequestBytes) {
      // A well-behaved runner can get here with a long turn, so the turn fails (the runner
      // reports it, and it is closed with a notice) but the run goes on.
      this.log.warn({ bytes, limit: maxRequestBytes }, 'model request refused: too large');
      turn.modelError = null; // Not the API's doing: the turn is closed, not kept pending.
      this.send({
        type: 'model.error',
        requestId: frame.requestId,
        message: `the model request is ${bytes} bytes, over the host's limit of ${describeBytes(maxRequestBytes)}; ask for smaller steps or start a new conversation`,
        retryable: false,
      });
      return null;
    }
    return request;
  }

  /** Counts an `output` frame against the turn's limits and keeps its visible text. */
  private onOutput(text: string): void {
    const turn = this.turn;
    if (!turn) {
      this.onBadFrame('output outside a turn');
      return;
    }
    const { maxOutputChars, maxRepliesPerTurn, maxReplyBytesPerTurn } = this.limits;
    if (text.length > maxOutputChars) {
      this.stopForLimit(
        new RunLimitError(
          'maxOutputChars',
          `the agent sent a reply of ${text.length} characters; a chat message holds at most ${maxOutputChars}`,
        ),
      );
      return;
    }
    turn.outputs += 1;
    if (turn.outputs > maxRepliesPerTurn) {
      this.stopForLimit(
        new RunLimitError(
          'maxRepliesPerTurn',
          `the agent sent more than ${maxRepliesPerTurn} replies in one turn`,
        ),
      );
      return;
    }
    turn.outputBytes += Buffer.byteLength(text);
    if (turn.outputBytes > maxReplyBytesPerTurn) {
      this.stopForLimit(
        new RunLimitError(
          'maxReplyBytesPerTurn',
          `the agent's replies in one turn came to more than ${describeBytes(maxReplyBytesPerTurn)}`,
        ),
      );
      return;
    }
    const visible = formatOutbound(text);
    if (visible !== null) turn.replies.push(visible);
    this.touch();
  }

  private async runHostCall(frame: Extract<RunnerToHost, { type: 'host.call' }>): Promise<void> {
    const turn = this.turn;
    if (!turn) {
      this.onBadFrame('host.call outside a turn');
      return;
    }
    turn.hostCalls += 1;
    if (turn.hostCalls > this.limits.maxHostCallsPerTurn) {
      this.stopForLimit(
        new RunLimitError(
          'maxHostCallsPerTurn',
          `the agent made more than ${this.limits.maxHostCallsPerTurn} host calls in one turn`,
        ),
      );
      return;
    }
    this.touch();
    const binding: RunBinding = {
      groupJid: this.group.jid,
      chatJid: this.group.jid,
      folder: this.group.folder,
      isMain: this.group.isMain,
      turnId: turn.id,
    };
    const result = await this.deps.hostTools.call(binding, frame.name, frame.args);
    const problem = this.send({
      type: 'tool.result',
      callId: frame.callId,
      ok: result.ok,
      result: result.result,
    });
    if (problem !== null) {
      this.send({
        type: 'tool.result',
        callId: frame.callId,
        ok: false,
        result: `the host's answer could not be passed on (${problem})`,
      });
    }
    this.touch();
  }

  /**
   * Writes a frame to the container, after checking it against the same schema and size limit
   * the runner applies. Returns why it was not sent, or null when it was (or the container is
   * already gone, which its exit reports).
   */
  private send(frame: HostToRunner): string | null {
    const checked = HostToRunnerSchema.safeParse(frame);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      return `invalid ${frame.type} frame: ${issue?.path.join('.') || 'frame'}: ${issue?.message ?? 'bad shape'}`;
    }
    const line = encodeFrame(checked.data);
    const bytes = Buffer.byteLength(line);
    if (bytes > MAX_FRAME_BYTES) {
      return `${frame.type} frame of ${bytes} bytes is over the ${MAX_FRAME_BYTES}-byte limit`;
    }
    const stdin = this.container?.stdin;
    if (!stdin || stdin.writableEnded || this.state === 'ended') return null;
    stdin.write(line);
    return null;
  }

  /**
   * Progress in a turn resets the silence (hard) timeout: a frame the host accepted (`ready`,
   * `model.request`, `host.call`, `output`, `done`), or an answer the host delivered. Bytes
   * alone, bad frames and stderr never do; the turn's wall-clock cap is never reset.
   */
  private touch(): void {
    if (this.state === 'busy') this.armSilence();
  }

  private now(): number {
    return this.deps.now();
  }

  /** Tells listeners (a waiting `send --wait`, the tray) what the run is doing now. */
  private activity(activity: RunActivity, tools?: string[]): void {
    this.deps.events.emit('run:activity', {
      groupJid: this.group.jid,
      runId: this.runId,
      activity,
      ...(tools ? { tools } : {}),
    });
  }
}

/**
 * The tools a model answer asks the agent to run, by name: at most 5, each a plain identifier
 * of at most 64 characters (the name comes from the model, and goes on to a terminal).
 */
function toolNames(content: readonly ContentBlock[]): string[] {
  const names: string[] = [];
  for (const block of content) {
    if (block.type !== 'tool_use') continue;
    const name = (block as { name?: unknown }).name;
    if (typeof name === 'string' && /^[\w.-]{1,64}$/.test(name) && !names.includes(name))
      names.push(name);
    if (names.length === 5) break;
  }
  return names;
}

/**
 * Start failures of one group that a retry cannot fix: a link planted in place of the group
 * folder, or a folder name that breaks the rules, stays as it is until someone removes it, so
 * retrying only repeats the refusal (and would re-queue the chat's message five times for
 * nothing). A missing image is not among them: it holds every group's work (`not-ready`).
 */
function isSetupError(err: unknown): boolean {
  return (
    err instanceof UnsafePathError ||
    err instanceof MountPolicyError ||
    err instanceof InvalidFolderNameError
  );
}

/**
 * Whether a model call failed because the API refused the request itself (`bad_request`: a 4xx
 * such as a malformed block or a prompt too long), so that any request carrying the same
 * conversation may be refused again.
 *
 * Not `refused`, the broker's own refusal: the stored conversation passed the same content
 * policy when its turns were committed and again when it was read (`turnProblem`,
 * `transcriptOf`), so that refusal is never the stored conversation's doing, and clearing it
 * then would let any process in the container wipe the group's memory with one forged request,
 * without even a call to the API.
 */
function refusedRequest(error: Error): error is ModelError {
  return error instanceof ModelError && error.kind === 'bad_request';
}

/**
 * The start frame with as much of the stored conversation as fits in one frame. The store keeps
 * the transcript trimmed but keeps its latest turn whole, whatever its size, and the prompt
 * takes room too: the oldest turns give way first, and with no room at all the agent starts
 * fresh rather than never starting.
 */
function withHistory(start: StartFrame, history: MessageParam[]): StartFrame {
  // The frame as it stands carries `[]`, which the history replaces.
  const room = MAX_FRAME_BYTES - Buffer.byteLength(encodeFrame(start)) + 2;
  return { ...start, history: fitConversation(history, room) };
}

/** A container-chosen text cut to `max` characters, for a log line or a notice. */
function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}

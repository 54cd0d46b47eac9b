/**
 * One run of a group's agent: a container started for the group, spoken to over the
 * JSON-lines protocol, kept warm for follow-ups until it idles out.
 *
 * A run handles turns. Each turn answers every message since the group's cursor: the host
 * sends the catch-up prompt, brokers the runner's model calls, runs its host calls, and on
 * `done` commits the replies and the cursor move in one transaction, then delivers them.
 *
 * State machine: starting → busy ⇄ idle → stopping → ended.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CoreEventBus } from '../events.js';
import type { Logger } from '../logger.js';
import type { Outbox } from '../outbox.js';
import type { GroupRun, RunOutcome } from '../queue/group-queue.js';
import { buildPrompt, formatOutbound, isTriggerMessage, promptMessages } from '../router.js';
import { groupMounts } from '../sandbox/mounts.js';
import {
  DEFAULT_LIMITS,
  type ContainerRuntime,
  type RunningContainer,
} from '../sandbox/runtime.js';
import type { Group, Store, StoredMessage } from '../store/index.js';
import type { HostTools, RunBinding } from './host-tools.js';
import type { ModelRequest, ModelResult } from './model-broker.js';
import {
  encodeFrame,
  FrameDecoder,
  PROTOCOL_VERSION,
  RunnerToHostSchema,
  type HostToRunner,
  type RunnerToHost,
} from './protocol.js';

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
  sessionsDir: string;
  image: string;
  assistantName: string;
  /** IANA zone the agent sees as TZ. */
  timezone: string;
  /** @default 300000 */
  idleTimeoutMs: number;
  /** @default 900000 */
  hardTimeoutMs: number;
  /** How long the runner may take to say `ready`. @default 60000 */
  readyTimeoutMs?: number;
}

export interface AgentRunDeps {
  store: Store;
  runtime: ContainerRuntime;
  broker: ModelCaller;
  hostTools: HostTools;
  outbox: Outbox;
  events: CoreEventBus;
  config: AgentRunConfig;
  isPaused(groupJid: string): boolean;
  /** Called each time the run goes idle, warm, between turns. */
  onIdle(): void;
  now(): number;
  log: Logger;
}

/** The run hit its hard timeout: the container went silent mid-turn. */
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

type RunState = 'starting' | 'busy' | 'idle' | 'stopping' | 'ended';

interface Turn {
  id: string;
  throughSeq: number;
  replies: string[];
  failure: string | null;
}

/** Malformed frames tolerated in one run before the container is judged broken. */
const MAX_BAD_FRAMES = 20;
/** Runner stderr kept for the failure report. */
const STDERR_TAIL_CHARS = 4_000;
/** The runner's image user; mounts are handed to it when the host runs as root. */
const IMAGE_UID = 10001;

/** The most messages one prompt carries; older pending ones are summarised as a count. */
export const MAX_PROMPT_MESSAGES = 200;
const PAGE = 500;

export interface PendingTurn {
  /** The newest pending messages, at most {@link MAX_PROMPT_MESSAGES}, oldest first. */
  messages: StoredMessage[];
  /** Pending messages left out of the prompt for length. */
  omitted: number;
  /** The cursor moves here once the turn commits. */
  throughSeq: number;
}

/**
 * What a new turn for `group` would answer: every message since the cursor, or null when
 * none of them is a trigger (they stay stored and ride along with the next triggered turn).
 * Pages through the whole backlog, so a trigger behind a long quiet stretch is still seen.
 */
export function pendingTurn(store: Store, group: Group): PendingTurn | null {
  let after = store.cursorOf(group.jid);
  let triggered = false;
  let messages: StoredMessage[] = [];
  let omitted = 0;
  for (;;) {
    const page = store.messagesSince(group.jid, after, PAGE);
    if (page.length === 0) break;
    triggered ||= page.some((m) => isTriggerMessage(group, m));
    messages = messages.concat(promptMessages(page));
    if (messages.length > MAX_PROMPT_MESSAGES) {
      omitted += messages.length - MAX_PROMPT_MESSAGES;
      messages = messages.slice(-MAX_PROMPT_MESSAGES);
    }
    after = (page.at(-1) as StoredMessage).seq;
    if (page.length < PAGE) break;
  }
  return triggered ? { messages, omitted, throughSeq: after } : null;
}

export class AgentRun implements GroupRun {
  readonly runId = randomUUID();
  readonly finished: Promise<RunOutcome>;
  private state: RunState = 'starting';
  private container: RunningContainer | null = null;
  private turn: Turn | null = null;
  private turnCount = 0;
  private stopRequested = false;
  private badFrames = 0;
  private stderrTail = '';
  private failure: Error | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private silenceTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private settle!: (outcome: RunOutcome) => void;

  constructor(
    private readonly deps: AgentRunDeps,
    private readonly group: Group,
  ) {
    this.log = deps.log.child({
      mod: 'agent-run',
      group: group.folder,
      run: this.runId.slice(0, 8),
    });
    this.finished = new Promise((resolve) => (this.settle = resolve));
    void this.start();
  }

  get idle(): boolean {
    return this.state === 'idle';
  }

  offerMessages(): boolean {
    if (this.stopRequested || this.state === 'stopping' || this.state === 'ended') return false;
    if (this.state === 'idle') this.startNextTurnIfPending();
    // Busy or starting: the next turn picks the messages up when this one is done.
    return true;
  }

  requestStop(): void {
    this.stopRequested = true;
    if (this.state === 'idle') this.beginShutdown();
  }

  async kill(): Promise<void> {
    this.abort.abort(new Error('run killed'));
    await this.container?.kill();
  }

  // ── lifecycle ──────────────────────────────────────────────────────────

  private async start(): Promise<void> {
    const { config, runtime } = this.deps;
    try {
      const dirs = this.prepareDirectories();
      const mounts = groupMounts({
        home: config.home,
        groupDir: dirs.group,
        globalDir: config.globalDir,
        sessionDir: dirs.session,
        isMain: this.group.isMain,
      });
      const uid = process.getuid?.();
      this.container = await runtime.start({
        name: `clawbar-${this.group.folder}-${this.runId.slice(0, 8)}`,
        image: config.image,
        mounts,
        // Plain settings only: the model key never enters a container.
        env: { TZ: config.timezone, CLAWBAR_ASSISTANT_NAME: config.assistantName },
        labels: { 'dev.clawbar.group': this.group.folder },
        limits: DEFAULT_LIMITS,
        network: this.group.networkAllowed,
        // As a normal user, run as that user so files in the group folder stay theirs.
        // As root, use the image's unprivileged user (the folders were handed to it).
        ...(uid !== undefined && uid !== 0 ? { user: `${uid}:${process.getgid?.() ?? uid}` } : {}),
      });
    } catch (err) {
      this.end(
        new RunFailedError(`could not start the agent container: ${(err as Error).message}`, {
          cause: err,
        }),
      );
      return;
    }
    const container = this.container;
    this.log.info({ container: container.name }, 'container started');
    this.deps.events.emit('run:started', {
      groupJid: this.group.jid,
      runId: this.runId,
      container: container.name,
    });

    const decoder = new FrameDecoder(RunnerToHostSchema);
    container.stdout.setEncoding('utf8');
    container.stdout.on('data', (chunk: string) => {
      this.touch();
      for (const result of decoder.push(chunk)) {
        if (result.ok) this.onFrame(result.frame);
        else this.onBadFrame(result.error);
      }
    });
    container.stderr.setEncoding('utf8');
    container.stderr.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
      this.log.debug({ stderr: chunk.trimEnd() }, 'runner');
    });
    container.stdin.on('error', (err) => this.log.debug({ err }, 'stdin closed'));

    this.armSilenceTimer(config.readyTimeoutMs ?? 60_000, 'the runner did not become ready');
    container.wait().then(
      ({ exitCode }) => this.onExit(exitCode),
      (err: unknown) => this.onExit(-1, err),
    );
  }

  /** Creates the group and session folders; as root, hands them to the image's user. */
  private prepareDirectories(): { group: string; session: string } {
    const { config } = this.deps;
    const group = path.join(config.groupsDir, this.group.folder);
    const session = path.join(config.sessionsDir, this.group.folder);
    fs.mkdirSync(group, { recursive: true });
    fs.mkdirSync(session, { recursive: true, mode: 0o700 });
    fs.mkdirSync(config.globalDir, { recursive: true });
    if (process.getuid?.() === 0) {
      for (const dir of this.group.isMain ? [group, session, config.globalDir] : [group, session]) {
        fs.chownSync(dir, IMAGE_UID, IMAGE_UID);
      }
    }
    return { group, session };
  }

  private onExit(exitCode: number, err?: unknown): void {
    this.clearTimers();
    if (this.state === 'ended') return;
    if (this.failure) {
      this.end(this.failure);
    } else if (this.turn || this.state === 'starting') {
      const tail = this.stderrTail.trim().split('\n').slice(-5).join('\n');
      this.end(
        new RunFailedError(
          `the agent container exited (code ${exitCode}) in the middle of a turn${tail ? `: ${tail}` : ''}`,
          {
            cause: err,
          },
        ),
      );
    } else {
      this.end(null);
    }
  }

  private end(error: Error | null): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.clearTimers();
    this.abort.abort(new Error('run ended'));
    if (error) this.log.warn({ err: error }, 'run failed');
    else this.log.info({ turns: this.turnCount }, 'run finished');
    this.deps.events.emit('run:finished', {
      groupJid: this.group.jid,
      runId: this.runId,
      ok: error === null,
      ...(error ? { error: error.message } : {}),
    });
    // A container that is still up after a failure must not linger.
    if (error) void this.container?.kill();
    this.settle(error ? { ok: false, error } : { ok: true });
  }

  /** Fails the run: the container is killed and the queue retries later. */
  private fail(error: Error): void {
    if (this.failure || this.state === 'ended') return;
    this.failure = error;
    this.state = 'stopping';
    void this.container?.kill();
  }

  private beginShutdown(): void {
    if (this.state === 'stopping' || this.state === 'ended') return;
    this.state = 'stopping';
    this.clearTimers();
    this.send({ type: 'shutdown' });
    this.container?.stdin.end();
    // A runner that ignores shutdown is killed, so the slot is not held forever.
    this.silenceTimer = setTimeout(() => void this.container?.kill(), 10_000);
  }

  // ── turns ──────────────────────────────────────────────────────────────

  /** Starts a turn for whatever is pending; returns false when there is nothing to answer. */
  private startNextTurnIfPending(first = false): boolean {
    if (this.deps.isPaused(this.group.jid)) return false;
    const group = this.deps.store.getGroup(this.group.jid);
    if (!group) return false;
    const pending = pendingTurn(this.deps.store, group);
    if (!pending) return false;
    this.clearIdleTimer();
    this.turnCount += 1;
    this.turn = {
      id: `${this.runId}:${this.turnCount}`,
      throughSeq: pending.throughSeq,
      replies: [],
      failure: null,
    };
    this.state = 'busy';
    const prompt = buildPrompt(pending.messages, pending.omitted);
    this.log.info({ turn: this.turnCount, messages: pending.messages.length }, 'turn started');
    if (first) {
      this.send({
        type: 'start',
        runId: this.runId,
        group: { jid: group.jid, name: group.name, folder: group.folder },
        prompt,
        isMain: group.isMain,
        assistantName: this.deps.config.assistantName,
        sessionRef: this.deps.store.sessionOf(group.jid),
      });
    } else {
      this.send({ type: 'message', text: prompt });
    }
    this.armSilenceTimer(this.deps.config.hardTimeoutMs, 'no output from the agent');
    return true;
  }

  private async finishTurn(frame: Extract<RunnerToHost, { type: 'done' }>): Promise<void> {
    const turn = this.turn;
    if (!turn) {
      this.onBadFrame('done without a turn in progress');
      return;
    }
    this.turn = null;
    if (frame.status === 'failed' || turn.failure) {
      this.fail(
        new RunFailedError(`the agent's turn failed: ${turn.failure ?? 'no reason given'}`),
      );
      return;
    }
    const items = this.deps.store.commitTurn({
      groupJid: this.group.jid,
      throughSeq: turn.throughSeq,
      turnId: turn.id,
      replies: turn.replies.map((text) => ({ chatJid: this.group.jid, text })),
      sessionRef: frame.sessionRef,
      usage: frame.usage,
      now: this.deps.now(),
    });
    await this.deps.outbox.deliver(items);
    this.log.info(
      { turn: this.turnCount, replies: items.length, usage: frame.usage },
      'turn finished',
    );
    this.deps.events.emit('turn:finished', {
      groupJid: this.group.jid,
      turnId: turn.id,
      throughSeq: turn.throughSeq,
    });
    this.afterTurn();
  }

  /** Between turns: take what arrived meanwhile, stop if asked, else wait warm. */
  private afterTurn(): void {
    if (this.state !== 'busy') return;
    this.clearSilenceTimer();
    // A group paused mid-turn keeps no warm container: its next messages wait for resume.
    if (this.stopRequested || this.deps.isPaused(this.group.jid)) {
      this.beginShutdown();
      return;
    }
    if (this.startNextTurnIfPending()) return;
    this.state = 'idle';
    this.idleTimer = setTimeout(() => {
      this.log.debug('idle timeout');
      this.beginShutdown();
    }, this.deps.config.idleTimeoutMs);
    this.deps.onIdle();
  }

  // ── frames ─────────────────────────────────────────────────────────────

  private onFrame(frame: RunnerToHost): void {
    switch (frame.type) {
      case 'ready':
        if (frame.protocol !== PROTOCOL_VERSION) {
          this.fail(
            new RunFailedError(
              `runner speaks protocol ${frame.protocol}, host speaks ${PROTOCOL_VERSION}; rebuild the image with \`clawbar image build\``,
            ),
          );
          return;
        }
        if (this.state === 'starting' && !this.startNextTurnIfPending(true)) {
          // The messages were answered meanwhile (or the group was paused): nothing to do.
          this.state = 'busy';
          this.afterTurn();
        }
        return;
      case 'model.request':
        void this.brokerModelCall(frame);
        return;
      case 'host.call':
        void this.runHostCall(frame);
        return;
      case 'output':
        if (this.turn) {
          const text = formatOutbound(frame.text);
          if (text !== null) this.turn.replies.push(text);
        }
        return;
      case 'error':
        this.log.warn({ message: frame.message }, 'runner reported an error');
        if (this.turn) this.turn.failure = frame.message;
        return;
      case 'done':
        if (frame.status !== 'failed' && this.turn) this.turn.failure = null;
        void this.finishTurn(frame).catch((err: unknown) =>
          this.fail(new RunFailedError('could not record the turn', { cause: err })),
        );
        return;
      default: {
        const unreachable: never = frame;
        this.onBadFrame(`unhandled frame ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onBadFrame(error: string): void {
    this.badFrames += 1;
    this.log.warn({ error, count: this.badFrames }, 'bad frame from the container');
    if (this.badFrames > MAX_BAD_FRAMES) {
      this.fail(
        new RunFailedError(
          `the agent container sent ${this.badFrames} malformed frames; last: ${error}`,
        ),
      );
    }
  }

  private async brokerModelCall(
    frame: Extract<RunnerToHost, { type: 'model.request' }>,
  ): Promise<void> {
    const request: ModelRequest = {
      system: frame.system,
      messages: frame.messages,
      tools: frame.tools,
      maxTokens: frame.maxTokens,
    };
    try {
      const result = await this.deps.broker.complete(request, {
        signal: this.abort.signal,
        group: this.group.folder,
      });
      this.send({
        type: 'model.result',
        requestId: frame.requestId,
        content: result.content,
        stopReason: result.stopReason,
        usage: result.usage,
      });
    } catch (err) {
      const retryable = (err as { retryable?: unknown }).retryable === true;
      this.send({
        type: 'model.error',
        requestId: frame.requestId,
        message: (err as Error).message,
        retryable,
      });
    }
    this.touch();
  }

  private async runHostCall(frame: Extract<RunnerToHost, { type: 'host.call' }>): Promise<void> {
    const binding: RunBinding = {
      groupJid: this.group.jid,
      chatJid: this.group.jid,
      folder: this.group.folder,
      isMain: this.group.isMain,
      turnId: this.turn?.id ?? `${this.runId}:${this.turnCount}`,
    };
    const result = await this.deps.hostTools.call(binding, frame.name, frame.args);
    this.send({ type: 'tool.result', callId: frame.callId, ok: result.ok, result: result.result });
  }

  private send(frame: HostToRunner): void {
    const stdin = this.container?.stdin;
    if (!stdin || stdin.writableEnded || this.state === 'ended') return;
    stdin.write(encodeFrame(frame));
  }

  // ── timers ─────────────────────────────────────────────────────────────

  /** Any sign of life from the container, or an answer we gave it, resets the hard timeout. */
  private touch(): void {
    if (this.silenceTimer && (this.state === 'busy' || this.state === 'starting')) {
      this.armSilenceTimer(this.deps.config.hardTimeoutMs, 'no output from the agent');
    }
  }

  private armSilenceTimer(ms: number, what: string): void {
    this.clearSilenceTimer();
    this.silenceTimer = setTimeout(() => {
      this.fail(
        new RunTimeoutError(`${what} for ${Math.round(ms / 1000)} s; the container was stopped`),
      );
    }, ms);
  }

  private clearSilenceTimer(): void {
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.silenceTimer = null;
  }

  private clearIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private clearTimers(): void {
    this.clearSilenceTimer();
    this.clearIdleTimer();
  }
}

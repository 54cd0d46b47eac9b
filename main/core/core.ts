/**
 * The orchestrator. It owns the store, the channels it is given, the group queue, the
 * outbox worker and the container runtime, and wires them: a stored message is routed, a
 * triggered group is queued, the queue starts an {@link AgentRun} for the group's next work
 * item, the run commits its replies to the outbox, and the outbox worker delivers them.
 *
 * It never imports Electron: the tray app and `clawbar serve` both host it.
 */
import path from 'node:path';
import { AgentRun, type ModelCaller } from './agent/agent-run.js';
import { TranscriptCompactor, type CompactionPolicy } from './agent/compaction.js';
import type { GroupModelSettings } from './agent/agent-settings.js';
import type { MeteredModelCaller } from './agent/model-broker.js';
import { RecentActivity } from './control/recent-activity.js';
import { HostTools } from './agent/host-tools.js';
import type { RunLimits } from './agent/run-limits.js';
import { messageTurns, type TurnSource } from './agent/turns.js';
import type { Channel, ChannelHooks, ChannelState, InboundMessage } from './channels/channel.js';
import { LocalChannel } from './channels/local.js';
import type { WhatsAppControl } from './channels/whatsapp-control.js';
import type { ClawbarConfig } from './config.js';
import { CoreInputError } from './errors.js';
import { DiskGuard, type DiskGuardOptions, type DiskStatus } from './disk.js';
import { BudgetGuard, type UsageToday } from './budget.js';
import { ModelError } from './agent/model-errors.js';
import { CoreEventBus, type RunActivity } from './events.js';
import { GroupAdmin, type AddGroupInput, type GroupSettingsInput } from './group-admin.js';
import { Scheduler, type TaskWork } from './scheduler/scheduler.js';
import { TaskAdmin } from './scheduler/task-admin.js';
import type { Logger } from './logger.js';
import { OutboxWorker, type OutboxPolicy } from './outbox.js';
import {
  GroupQueue,
  type GroupRun,
  type QueueSnapshot,
  type RetryPolicy,
  type RunKill,
  type RunOutcome,
  type WorkItem,
} from './queue/group-queue.js';
import { formatOutbound, hasPendingTrigger, isTriggerMessage } from './router.js';
import { dayInZone } from './time.js';
import { registerSecret } from './redact.js';
import {
  describeProblems,
  needsTheUser,
  SetupMonitor,
  type ImageBuilder,
  type SetupProblem,
} from './setup.js';
import { type ContainerRuntime, type ImageState, type RuntimeState } from './sandbox/runtime.js';
import type { Chat, Group, OutboxItem, Store, StoredMessage, Task } from './store/index.js';

export { CoreInputError };

export interface CoreDeps {
  config: ClawbarConfig;
  store: Store;
  runtime: ContainerRuntime;
  /**
   * Makes the agents' model calls. The core hands each run a view of it that records every
   * call's usage for the run's group and day, from the API's own answers.
   */
  broker: MeteredModelCaller;
  log: Logger;
  /**
   * The channels Clawbar talks through. The local chat (the CLI's and the tray's) is one of
   * them; `postLocal` needs it.
   */
  channels: readonly Channel[];
  /** @default Date.now */
  now?: () => number;
  /** @default 5 s base, 5 retries */
  retry?: RetryPolicy;
  /** @default DEFAULT_OUTBOX_POLICY */
  outboxPolicy?: Partial<OutboxPolicy>;
  /** How long a run may take from the start call to the runner's `ready`. @default 60000 */
  readyTimeoutMs?: number;
  /** Amounts each run, turn and group may use (agent-run, host tools). @default DEFAULT_RUN_LIMITS */
  runLimits?: Partial<RunLimits>;
  /**
   * Rechecks while the engine is down (doubling up to 30 s) or the image is missing (up to
   * 10 s): the first delay. @default 1000
   */
  runtimeRecheckMs?: number;
  /**
   * The WhatsApp channel's controls (pairing, unlink, its last disconnect), when one of
   * `channels` is the WhatsApp channel. @default null
   */
  whatsapp?: WhatsAppControl;
  /**
   * Builds the agent image when it is missing or was built from another runner (`serve`
   * passes one). Without it a missing image waits for `clawbar image build`.
   */
  imageBuilder?: ImageBuilder;
  /**
   * How the user sets the API key, named in the "no key" problem's fix. The desktop app says
   * Settings. @default set ANTHROPIC_API_KEY for `clawbar serve` and restart it
   */
  keyFix?: string;
  /** The disk guard's probes and pacing (tests); its limits come from `config`. */
  disk?: DiskGuardOptions;
  /**
   * False when the CLI uses the core without `serve`: messages are stored and routed, but no
   * agent runs; the next `serve` picks them up. @default true
   */
  dispatch?: boolean;
  /** The scheduler's clocks (tests): a monotonic clock, and how often it is compared. */
  schedulerClock?: { monotonic?: () => number; checkMs?: number };
  /** When a group's conversation is compacted, and its parts' sizes. @default DEFAULT_COMPACTION_POLICY */
  compaction?: Partial<CompactionPolicy>;
}

export interface ChannelStatus {
  name: string;
  state: ChannelState;
}

export interface CoreStatus {
  /**
   * Whether agents can run; when not, what is wrong and the fix (no key, no engine, no image,
   * or the image being built). Work is held meanwhile.
   */
  setup: { ready: boolean; problems: SetupProblem[] };
  runtime: RuntimeState & { kind: string };
  image: ImageState;
  queue: QueueSnapshot;
  groups: number;
  keyConfigured: boolean;
  /** Free space in the data directory, and groups held or paused for disk. */
  disk: DiskStatus;
  /** Every group's usage today (local day), with the estimated cost. */
  usageToday: UsageToday;
  /** Groups whose messages wait for their daily budget to reset, by name. */
  budgetHeld: string[];
  channels: ChannelStatus[];
  outbox: {
    queued: number;
    failed: number;
    /** The latest items that failed for good, newest first. */
    recentFailures: Array<{ id: number; chatJid: string; error: string | null; at: number }>;
  };
}

/** A message was accepted into a local chat. */
export interface PostedMessage {
  message: StoredMessage;
  group: Group;
  triggered: boolean;
}

/** What the assistant sent in the turn that answered a message. */
export interface TurnReply {
  turnId: string;
  /** Delivered replies, as recorded in the chat. */
  replies: StoredMessage[];
  /** Replies of the turn not delivered (yet, or for good). */
  undelivered: OutboxItem[];
}

/** What {@link Core.stopGroup} did. */
export interface GroupStop {
  group: Group;
  /** A run was under way and was killed. */
  stopped: boolean;
  /** A failed run was waiting to be retried; it will not be. */
  cancelledRetry: boolean;
}

/** A wait for a reply ended without one: shutdown, a gone client, give-up or timeout. */
export class ReplyWaitError extends CoreInputError {
  constructor(message: string) {
    super(message);
    this.name = 'ReplyWaitError';
  }
}

export class Core {
  readonly events: CoreEventBus;
  /** The recent runs and errors, for a window opened later (`activity:recent`). */
  readonly activity: RecentActivity;
  readonly local: LocalChannel | null;
  /** Pairing, unlink and the last disconnect of the WhatsApp channel; null without one. */
  readonly whatsapp: WhatsAppControl | null;
  readonly groups: GroupAdmin;
  /** Scheduled tasks: add, list, pause, resume, remove, run logs (`clawbar tasks`). */
  readonly tasks: TaskAdmin;
  /** Fires the tasks at their due times through the group queues (started with the core). */
  readonly scheduler: Scheduler;
  readonly queue: GroupQueue;
  readonly outbox: OutboxWorker;
  /** Group folder budgets and the free-space floor, checked before runs (issue 6). */
  readonly disk: DiskGuard;
  /** Per-group daily budgets: runs and model calls past them wait for local midnight (issue 10). */
  readonly budget: BudgetGuard;
  private readonly hostTools: HostTools;
  /** Key, engine and image: while any is not ready, all work is held (setup.ts). */
  private readonly setup: SetupMonitor;
  /**
   * The groups told, in this not-ready spell, that their messages wait, with what they were
   * told (the problems' kinds): a group hears again only when something new is wrong.
   */
  private readonly toldNotReady = new Map<string, string>();
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly dispatch: boolean;
  private readonly liveRuns = new Set<AgentRun>();
  /**
   * Each live run's turn source, told how the run ended when the queue books its end
   * (`onRunEnded`). Whether the queue killed the run (a stop, a shutdown) is the queue's record,
   * passed along then; the core keeps none of its own.
   */
  private readonly runSources = new WeakMap<GroupRun, TurnSource>();
  /** Task runs in the queue, by task id: kept until the run ends for good (retries reuse them). */
  private readonly taskWork = new Map<string, { groupJid: string; work: TaskWork }>();
  /** Each live task run's task id, to settle its queue entry when the run ends. */
  private readonly runTasks = new WeakMap<GroupRun, string>();
  /** What each group's live run is doing now (the latest `run:activity`), for progress. */
  private readonly activities = new Map<string, RunActivity>();
  /** Aborted at shutdown: every `send --wait` still waiting is answered then. */
  private readonly stopping = new AbortController();
  private started = false;

  /** The run limits: the config's `maxTokens`, with the deps' overrides on top. */
  private readonly runLimits: Partial<RunLimits>;

  constructor(private readonly deps: CoreDeps) {
    this.runLimits = { maxTokens: deps.config.maxTokens, ...deps.runLimits };
    // Before anything logs: an error that echoes the key must find it already registered.
    registerSecret(deps.config.apiKey);
    this.log = deps.log.child({ mod: 'core' });
    this.events = new CoreEventBus((event, err) =>
      this.log.error({ event, err }, 'an event listener threw; the event went on'),
    );
    this.now = deps.now ?? Date.now;
    this.activity = new RecentActivity(this.events, this.now);
    this.dispatch = deps.dispatch ?? true;
    this.events.on('run:activity', (e) => this.activities.set(e.groupJid, e.activity));
    this.events.on('run:finished', (e) => this.activities.delete(e.groupJid));
    this.local = deps.channels.find((c): c is LocalChannel => c instanceof LocalChannel) ?? null;
    this.whatsapp = deps.whatsapp ?? null;
    this.groups = new GroupAdmin({
      store: deps.store,
      config: deps.config,
      now: this.now,
      log: this.log,
    });
    this.tasks = new TaskAdmin({
      store: deps.store,
      timezone: deps.config.timezone,
      now: this.now,
      onChange: (change) => {
        this.scheduler.taskChanged(change);
        this.events.emit('task:changed', change);
      },
    });
    this.outbox = new OutboxWorker({
      store: deps.store,
      channels: deps.channels,
      assistantName: deps.config.assistantName,
      log: deps.log,
      now: this.now,
      ...(deps.outboxPolicy ? { policy: deps.outboxPolicy } : {}),
      onSettled: (item, outcome) => this.events.emit('outbox:settled', { item, outcome }),
    });
    this.hostTools = new HostTools({
      store: deps.store,
      outbox: this.outbox,
      formatOutbound,
      now: this.now,
      log: deps.log,
      limits: this.runLimits,
      tasks: this.tasks,
      // send_file reads from the group's folder and stages copies in a host-only folder.
      files: {
        groupsDir: deps.config.groupsDir,
        filesDir: path.join(deps.config.home, 'outbox-files'),
      },
      // The same as `clawbar groups add/remove`: events, queue and scheduler included.
      groups: {
        add: (input) => this.addGroup(input),
        remove: (ref) => this.removeGroup(ref),
      },
    });
    this.setup = new SetupMonitor({
      runtime: deps.runtime,
      image: deps.config.image,
      // The broker's own word: it is what makes the calls, whatever the config says.
      keyConfigured: deps.broker.hasKey !== false,
      log: deps.log,
      ...(deps.imageBuilder ? { builder: deps.imageBuilder } : {}),
      ...(deps.keyFix ? { keyFix: deps.keyFix } : {}),
      ...(deps.runtimeRecheckMs ? { recheckMs: deps.runtimeRecheckMs } : {}),
      onChange: (problems) => this.onSetupChanged(problems),
      onEngineBack: () => this.removeOrphans(),
    });
    this.queue = new GroupQueue({
      maxConcurrency: deps.config.maxConcurrency,
      startRun: (jid, work) => this.startRun(jid, work),
      isPaused: (jid) => deps.store.getGroup(jid)?.paused ?? true,
      onGiveUp: (jid, error, attempts, work, details) =>
        this.onGiveUp(jid, error, attempts, work, details?.notified === true),
      onNotReady: (error) => this.setup.reportNotReady(error),
      onRunEnded: (_jid, run, outcome, killedBy) => this.onRunEnded(run, outcome, killedBy),
      log: deps.log,
      ...(deps.retry ? { retry: deps.retry } : {}),
    });
    this.scheduler = new Scheduler({
      store: deps.store,
      events: this.events,
      enqueue: (groupJid, taskId, work) => this.enqueueTask(groupJid, taskId, work),
      notify: (groupJid, text) => {
        deps.store.enqueueOutbound(groupJid, text, null, this.now(), 'notice');
        this.outbox.notify();
      },
      timezone: deps.config.timezone,
      graceMs: deps.config.taskGraceMs,
      log: deps.log,
      now: this.now,
      ...(deps.schedulerClock?.monotonic ? { monotonic: deps.schedulerClock.monotonic } : {}),
      ...(deps.schedulerClock?.checkMs ? { clockCheckMs: deps.schedulerClock.checkMs } : {}),
      upkeepFor: (group) => this.compactorFor(group),
    });
    this.disk = new DiskGuard({
      ...deps.disk,
      config: deps.config,
      events: this.events,
      log: deps.log,
      getGroup: (jid) => deps.store.getGroup(jid),
      listGroups: () => deps.store.listGroups(),
      onOverBudget: (group, notice) => this.pauseForDisk(group, notice),
      onRelease: (jid, work) => this.requeueHeld(jid, work),
      onDiscard: (jid, work) => this.dropHeld(jid, work),
    });
    this.budget = new BudgetGuard({
      store: deps.store,
      events: this.events,
      log: deps.log,
      timezone: deps.config.timezone,
      now: this.now,
      notify: (jid, text) => {
        deps.store.enqueueOutbound(jid, text, null, this.now(), 'notice');
        this.outbox.notify();
      },
      onRelease: (jid, work) => this.requeueHeld(jid, work),
      onSkipTask: (jid, taskId, reason) => this.skipTaskRun(jid, taskId, reason),
    });
  }

  /** The assistant's name: the sender of its replies. */
  get assistantName(): string {
    return this.deps.config.assistantName;
  }

  /** The model of every group that has none of its own (`CLAWBAR_MODEL`). */
  get defaultModel(): string {
    return this.deps.config.model;
  }

  /**
   * Boots in order: folders and memory templates, the container engine (orphans removed, or
   * its absence noted so work waits for it), channels, then recovery: unanswered triggers are
   * queued again. Undelivered replies go out when their channel reports that it is open.
   * Each step is idempotent.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.groups.ensureLayout();
    // Before recovery queues anything: what is not ready holds the work (no key, no engine, no
    // image), and a missing or outdated image starts building in the background.
    const runtime = await this.setup.start();
    if (runtime.ok) await this.removeOrphans();
    for (const channel of this.deps.channels) {
      try {
        await channel.connect(this.hooksFor(channel));
      } catch (err) {
        // One channel failing to start must not keep the others (or the local chat) down.
        this.log.error({ channel: channel.name, err }, 'channel failed to connect');
      }
    }
    // Folders are measured in the background; a run waits only for its own group's answer.
    if (this.dispatch) this.disk.start();
    if (this.dispatch) this.budget.start();
    this.recoverPending();
    // Runs cut off by a crash are settled, and due times missed while closed caught up on.
    if (this.dispatch) this.scheduler.start();
  }

  /**
   * Stops taking work, answers every waiting `send --wait`, lets runs finish (or kills them
   * after `graceMs`), stops delivering, and closes the channels.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.stopping.abort();
    this.activity.close();
    this.scheduler.stop();
    this.setup.stop();
    this.disk.stop();
    this.budget.stop();
    await this.queue.shutdown(graceMs);
    await this.outbox.stop(Math.min(graceMs, 5_000));
    for (const channel of this.deps.channels) {
      await channel
        .disconnect()
        .catch((err: unknown) =>
          this.log.warn({ channel: channel.name, err }, 'channel did not disconnect cleanly'),
        );
    }
  }

  /**
   * The one way a message enters Clawbar: it is stored first, then routed. A message
   * from an unregistered chat is stored and goes no further.
   */
  receive(inbound: InboundMessage): {
    message: StoredMessage;
    inserted: boolean;
    triggered: boolean;
  } {
    const { store } = this.deps;
    store.upsertChat({
      jid: inbound.chatJid,
      name: inbound.chatName,
      channel: inbound.channel,
      isGroup: inbound.isGroup,
      lastActivity: inbound.timestamp,
    });
    const { message, inserted } = store.insertMessage(inbound);
    const group = store.getGroup(inbound.chatJid) ?? null;
    const triggered = inserted && group !== null && isTriggerMessage(group, message);
    if (inserted)
      this.events.emit('message:stored', { message, groupJid: group?.jid ?? null, triggered });
    if (triggered && group && this.dispatch) {
      this.queue.enqueueMessage(group.jid);
      if (!this.setup.ready) this.tellNotReady(group.jid);
    }
    return { message, inserted, triggered };
  }

  /** Puts a message a person typed into a local-chat group. */
  postLocal(groupRef: string, from: string, text: string): PostedMessage {
    const group = this.groups.resolve(groupRef);
    const local = this.local;
    if (!local) throw new CoreInputError('the local chat is not enabled in this Clawbar');
    if (!local.owns(group.jid)) {
      throw new CoreInputError(
        `group "${group.name}" is a WhatsApp group; local messages go only to local-chat groups`,
      );
    }
    const trimmed = text.trim();
    if (trimmed === '') throw new CoreInputError('the message is empty');
    const { message, triggered } = this.receive(local.compose(group, validSender(from), trimmed));
    return { message, group, triggered };
  }

  addGroup(input: AddGroupInput): Group {
    const group = this.groups.add(input);
    this.events.emit('group:changed', { groupJid: group.jid, change: 'added' });
    return group;
  }

  removeGroup(ref: string): Group {
    const group = this.groups.remove(ref);
    this.queue.remove(group.jid);
    for (const [taskId, task] of this.taskWork) {
      if (task.groupJid !== group.jid) continue;
      this.taskWork.delete(taskId);
      task.work.dropped('the group was removed');
    }
    this.scheduler.groupRemoved();
    this.events.emit('group:changed', { groupJid: group.jid, change: 'removed' });
    return group;
  }

  /**
   * Changes a group's agent settings (model, web tools, network, daily budget), checked by
   * {@link GroupAdmin.updateSettings}. Model and web tools apply from the group's next model
   * call; the network from its next container.
   */
  updateGroupSettings(ref: string, changes: GroupSettingsInput): Group {
    const group = this.groups.updateSettings(ref, changes);
    this.events.emit('group:changed', { groupJid: group.jid, change: 'settings' });
    return group;
  }

  pauseGroup(ref: string): Group {
    const group = this.groups.setPaused(ref, true);
    if (this.dispatch) this.queue.pause(group.jid);
    this.events.emit('group:changed', { groupJid: group.jid, change: 'paused' });
    return group;
  }

  /**
   * Ends the group's run now, without retry (DESIGN.md §5 "Stop"); a retry waiting for its
   * timer is cancelled too. Its messages stay stored, and the next one that arrives triggers a
   * run that answers them all. (Pause, by contrast, lets a busy run finish.)
   */
  stopGroup(ref: string): GroupStop {
    const group = this.groups.resolve(ref);
    const { run, cancelledRetry } = this.queue.stop(group.jid);
    return { group, stopped: run !== null, cancelledRetry };
  }

  resumeGroup(ref: string): Group {
    const group = this.groups.setPaused(ref, false);
    // What waited while paused goes to the agent as one batch: one turn answers it all.
    if (this.dispatch && hasPendingTrigger(this.deps.store, group))
      this.queue.enqueueMessage(group.jid);
    this.events.emit('group:changed', { groupJid: group.jid, change: 'resumed' });
    return group;
  }

  /**
   * Queues one run of a scheduled task for the group (the scheduler calls this). `work.source`
   * builds the run's turn source when the run starts (the group's slot is free), and again if
   * the queue retries a run that could not start; returning null skips it.
   */
  enqueueTask(groupJid: string, taskId: string, work: TaskWork): void {
    if (!this.deps.store.getGroup(groupJid)) throw new CoreInputError(`no group ${groupJid}`);
    this.taskWork.set(taskId, { groupJid, work });
    if (this.dispatch) this.queue.enqueueTask(groupJid, taskId);
  }

  /**
   * Runs a task now, outside its schedule (`clawbar tasks run`); its next due time stays.
   * @throws UnknownTaskError; CoreInputError when the task or its group is paused, or a run of
   *   it is already queued or running.
   */
  runTask(taskId: string): { task: Task; dueAt: number } {
    const task = this.tasks.get(taskId);
    const dueAt = this.scheduler.runNow(task);
    return { task, dueAt };
  }

  /** The chat history of a group, both directions, oldest first. */
  messages(groupJid: string, limit: number): StoredMessage[] {
    return this.deps.store.recentMessages(groupJid, limit);
  }

  /** A chat's replies that are not delivered: still queued, or failed for good. */
  undelivered(chatJid: string): OutboxItem[] {
    return this.deps.store.undeliveredOutbox(chatJid);
  }

  /** Every chat the channels know (registered or not), the most recently active first. */
  chats(): Chat[] {
    return this.deps.store.listChats();
  }

  /** What the group's live run is doing, or null when none runs. */
  runActivity(groupJid: string): RunActivity | null {
    return this.activities.get(groupJid) ?? null;
  }

  /**
   * Uses a new API key from now on, or none (the app's Settings): messages held for want of a
   * key go out once one is set. Runs under way finish with the key they started with.
   * @throws Error when the broker's key cannot change (a broker made for one key)
   */
  setApiKey(key: string | undefined): void {
    const { broker } = this.deps;
    if (!broker.setApiKey) throw new Error('this model broker cannot change its API key');
    broker.setApiKey(key);
    this.setup.keyChanged(this.keyConfigured());
  }

  /** Whether the broker has an API key now. */
  keyConfigured(): boolean {
    return this.deps.broker.hasKey !== false;
  }

  /** What keeps agents from running now (empty when ready); work is held while any is open. */
  setupProblems(): SetupProblem[] {
    return this.setup.problems();
  }

  async status(): Promise<CoreStatus> {
    const { store } = this.deps;
    // Asked afresh: the runtime's own answer says best why it is down and how to fix it.
    const [runtime, image] = await Promise.all([
      this.deps.runtime.check(),
      this.deps.runtime
        .inspectImage(this.deps.config.image)
        .catch((): ImageState => ({ image: this.deps.config.image, present: null })),
    ]);
    const counts = store.outboxCounts();
    const problems = this.setup.problems();
    return {
      setup: { ready: problems.length === 0, problems },
      runtime: { ...runtime, kind: this.deps.runtime.kind },
      image,
      queue: this.queue.snapshot(),
      groups: store.listGroups().length,
      keyConfigured: this.keyConfigured(),
      disk: this.disk.status(),
      usageToday: this.budget.usageTodayAll(),
      budgetHeld: this.budget.heldGroups().map((jid) => store.getGroup(jid)?.name ?? jid),
      channels: this.deps.channels.map((c) => ({ name: c.name, state: c.state })),
      outbox: {
        ...counts,
        recentFailures: store.failedOutbox(5).map((item) => ({
          id: item.id,
          chatJid: item.chatJid,
          error: item.lastError,
          at: item.failedAt ?? item.createdAt,
        })),
      },
    };
  }

  /**
   * Resolves when the turn that answers message `seq` of the group has finished and its
   * replies are delivered (or have failed), with what the assistant sent in it.
   *
   * Rejects with a {@link ReplyWaitError} when the group's work is given up, when a set-up
   * mistake holds it (no key, no engine, no image: at once, with the fix), when `signal`
   * aborts (the client went away), when the core shuts down, or after `timeoutMs`. Its timer
   * never keeps the process alive, and every listener is removed when it settles.
   */
  waitForReply(
    groupJid: string,
    seq: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<TurnReply> {
    return new Promise((resolve, reject) => {
      const deadline = this.now() + timeoutMs;
      const cleanups: Array<() => void> = [];
      let settled = false;
      const finish = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        for (const cleanup of cleanups) cleanup();
        outcome();
      };
      const fail = (message: string) => finish(() => reject(new ReplyWaitError(message)));
      const onStop = () =>
        fail('clawbar is shutting down; the message is stored and will be answered after restart');
      const onGone = () => fail('the client went away; the message is stored and still queued');

      /** A set-up mistake holds the work until the user fixes it: say so now, not at timeout. */
      const onNotReady = (problems: readonly SetupProblem[]): boolean => {
        const blocking = needsTheUser(problems);
        if (blocking.length === 0) return false;
        fail(
          `not answered yet: ${describeProblems(blocking)}. ` +
            'The message is stored and will be answered once that is fixed',
        );
        return true;
      };

      if (this.stopping.signal.aborted) return onStop();
      if (signal?.aborted) return onGone();
      if (onNotReady(this.setup.problems())) return;
      const timer = setTimeout(
        () =>
          fail(
            `no reply within ${Math.round(timeoutMs / 1000)} s; the message is stored and still queued`,
          ),
        timeoutMs,
      );
      timer.unref();
      cleanups.push(() => clearTimeout(timer));
      this.stopping.signal.addEventListener('abort', onStop, { once: true });
      cleanups.push(() => this.stopping.signal.removeEventListener('abort', onStop));
      if (signal) {
        signal.addEventListener('abort', onGone, { once: true });
        cleanups.push(() => signal.removeEventListener('abort', onGone));
      }
      cleanups.push(
        this.events.on('turn:finished', (e) => {
          if (e.groupJid !== groupJid || e.throughSeq === null || e.throughSeq < seq) return;
          this.turnDelivered(e.turnId, deadline).then(
            (reply) => finish(() => resolve(reply)),
            (err: unknown) => fail(err instanceof Error ? err.message : String(err)),
          );
        }),
        this.events.on('setup:changed', (e) => {
          onNotReady(e.problems);
        }),
        this.events.on('run:gave-up', (e) => {
          if (e.groupJid !== groupJid) return;
          fail(
            e.attempts > 1
              ? `the agent gave up after ${e.attempts} attempts: ${e.error}`
              : `the agent gave up: ${e.error}`,
          );
        }),
      );
    });
  }

  // ── internals ──────────────────────────────────────────────────────────

  private hooksFor(channel: Channel): ChannelHooks {
    return {
      onMessage: (message) => {
        try {
          this.receive(message);
        } catch (err) {
          this.log.error({ channel: channel.name, err }, 'could not store an inbound message');
        }
      },
      onState: (state) => {
        this.log.info({ channel: channel.name, state: state.state }, 'channel state');
        this.outbox.channelState(channel, state);
        this.events.emit('channel:state', { channel: channel.name, state });
      },
      onChatMetadata: (chat) => {
        try {
          const before = this.deps.store.getChat(chat.jid);
          this.deps.store.upsertChat({
            jid: chat.jid,
            name: chat.name,
            channel: channel.name,
            isGroup: chat.isGroup,
            lastActivity: chat.lastActivity ?? null,
          });
          if (before?.name !== chat.name)
            this.events.emit('chat:seen', { jid: chat.jid, channel: channel.name });
        } catch (err) {
          this.log.error({ channel: channel.name, err }, 'could not record chat metadata');
        }
      },
    };
  }

  /** Waits (until `deadline`) for a finished turn's replies to be delivered or fail. */
  private async turnDelivered(turnId: string, deadline: number): Promise<TurnReply> {
    const { store } = this.deps;
    for (const item of store.outboxOfTurn(turnId)) {
      if (item.state !== 'queued') continue;
      const left = deadline - this.now();
      if (left <= 0 || this.stopping.signal.aborted) break;
      await this.outbox.whenSettled(item.id, left);
    }
    return {
      turnId,
      replies: store.messagesOfTurn(turnId),
      undelivered: store.outboxOfTurn(turnId).filter((item) => item.state !== 'sent'),
    };
  }

  private startRun(groupJid: string, work: WorkItem): AgentRun | null {
    const { store, config } = this.deps;
    const group = store.getGroup(groupJid);
    if (!group) return null;
    if (work.kind === 'messages' && group.paused) return null;
    // Too little free space, or a folder over its budget (or not measured since its last
    // run): the guard holds the work, spending no retry, and hands it back to requeueHeld.
    if (!this.disk.admit(group, work)) return null;
    // Past its daily budget: messages wait for local midnight, a task's run is skipped.
    if (!this.budget.admit(group, work)) return null;
    let source: TurnSource | null;
    switch (work.kind) {
      case 'messages':
        if (group.paused || !hasPendingTrigger(this.deps.store, group)) return null;
        source = messageTurns({
          store,
          groupJid,
          timezone: config.timezone,
          now: this.now,
          log: this.deps.log,
          upkeep: this.compactorFor(group),
          // Messages given up at planning: told like a turn a run closed (see AgentRun.closeTurn).
          onGaveUp: (turnId, throughSeq) => {
            this.outbox.notify();
            this.events.emit('turn:finished', { groupJid, turnId, throughSeq });
          },
        });
        break;
      case 'task': {
        source = this.taskWork.get(work.taskId)?.work.source(group) ?? null;
        if (!source) this.taskWork.delete(work.taskId);
        break;
      }
      default: {
        const unreachable: never = work;
        throw new Error(`unknown work ${JSON.stringify(unreachable)}`);
      }
    }
    if (!source) return null;
    const run = new AgentRun(
      {
        runtime: this.deps.runtime,
        broker: this.meteredBroker(groupJid),
        hostTools: this.hostTools,
        outbox: this.outbox,
        events: this.events,
        config: {
          home: config.home,
          groupsDir: config.groupsDir,
          globalDir: config.globalDir,
          image: config.image,
          assistantName: config.assistantName,
          timezone: config.timezone,
          idleTimeoutMs: config.idleTimeoutMs,
          hardTimeoutMs: config.hardTimeoutMs,
          ...(this.deps.readyTimeoutMs ? { readyTimeoutMs: this.deps.readyTimeoutMs } : {}),
          limits: this.runLimits,
        },
        isPaused: (jid) => store.getGroup(jid)?.paused ?? true,
        setTyping: (chatJid, typing) => this.setTyping(chatJid, typing),
        onIdle: () => this.queue.runIdle(groupJid),
        now: this.now,
        log: this.deps.log,
      },
      group,
      source,
    );
    this.liveRuns.add(run);
    this.runSources.set(run, source);
    if (work.kind === 'task') this.runTasks.set(run, work.taskId);
    run.finished
      .finally(() => this.liveRuns.delete(run))
      .catch((err: unknown) => this.log.error({ err }, 'run bookkeeping failed'));
    return run;
  }

  /** The keeper of the group's conversation: compaction before a run, archiving trims at commit. */
  private compactorFor(group: Group): TranscriptCompactor {
    const { store, config } = this.deps;
    return new TranscriptCompactor({
      store,
      // The summary call goes through the group's metered broker, like the agent's.
      broker: this.meteredBroker(group.jid, false),
      group: { jid: group.jid, folder: group.folder },
      groupsDir: config.groupsDir,
      timezone: config.timezone,
      now: this.now,
      log: this.deps.log,
      ...(this.deps.compaction ? { policy: this.deps.compaction } : {}),
      onNotice: () => this.outbox.notify(),
    });
  }

  /**
   * The queue booked a run's end: its source keeps the error of a turn the run left open, or
   * takes back the attempt when that was not the messages' fault (turns.ts). The queue calls
   * this before its shutdown returns, so a run killed at shutdown is forgiven before the
   * store closes.
   */
  private onRunEnded(run: GroupRun, outcome: RunOutcome, killedBy: RunKill | null): void {
    const source = this.runSources.get(run);
    this.runSources.delete(run);
    source?.runEnded?.({ outcome, killedBy, now: this.now() });
    const taskId = this.runTasks.get(run);
    // A run that could not start is retried by the queue with the same work; any other end is final.
    if (taskId !== undefined && (outcome.ok || killedBy !== null || outcome.failure === 'final')) {
      this.taskWork.delete(taskId);
    }
  }

  /**
   * The broker as one group's run sees it: every call's usage is recorded for the group and
   * the day, as the API reported it, whether or not the turn then succeeds. The container's own
   * figures (its `done` frame) are never recorded. `webTools` false: the host's own calls
   * (compaction's summary), which have no use for the group's web tools.
   */
  private meteredBroker(groupJid: string, webTools = true): ModelCaller {
    return {
      complete: (req, opts) => {
        // Past the daily budget no call is made, so a long tool loop stops at its next call.
        // `billing`: final for the runner, and not the messages' fault (they wait, see budget.ts).
        const overBudget = this.budget.refuseCall(groupJid);
        if (overBudget !== null) {
          this.stopForBudget(groupJid);
          return Promise.reject(new ModelError(overBudget, { kind: 'billing', retryable: false }));
        }
        // Read at each call: a `groups set` reaches a warm container's next model call.
        const settings = webTools ? this.modelSettings(groupJid) : this.modelOnlySettings(groupJid);
        const model = settings.settings?.model ?? this.deps.config.model;
        return this.deps.broker.complete(req, {
          ...opts,
          ...settings,
          recordUsage: (usage) =>
            this.deps.store.addUsage(
              groupJid,
              dayInZone(this.now(), this.deps.config.timezone),
              usage,
              model,
            ),
        });
      },
    };
  }

  /**
   * Ends the group's run once its budget refused a call, as `groups stop` does: no retry, its
   * messages stay stored. Otherwise its warm container would take the next message over stdin,
   * around the check before a run ({@link BudgetGuard.admit}) that holds it until midnight.
   * After the refusal is handed back, not inside the run's own call.
   */
  private stopForBudget(groupJid: string): void {
    queueMicrotask(() => {
      const { run } = this.queue.stop(groupJid, 'the daily budget is reached');
      if (run) this.log.info({ group: groupJid }, 'run stopped: the daily budget is reached');
    });
  }

  /** A task's run that may not start (the group's daily budget is reached): skipped, and said why. */
  private skipTaskRun(groupJid: string, taskId: string, reason: string): void {
    const task = this.taskWork.get(taskId);
    this.taskWork.delete(taskId);
    task?.work.dropped(reason);
    this.log.info({ group: groupJid, task: taskId, reason }, 'scheduled task skipped');
  }

  /** The group's model, with its web tools off. */
  private modelOnlySettings(groupJid: string): { settings?: GroupModelSettings } {
    const { settings } = this.modelSettings(groupJid);
    return settings ? { settings: { ...settings, webSearch: false, webFetch: false } } : {};
  }

  /** The group's model and web tool settings for the broker; none for a group now gone. */
  private modelSettings(groupJid: string): { settings?: GroupModelSettings } {
    const group = this.deps.store.getGroup(groupJid);
    if (!group) return {};
    return {
      settings: { model: group.model, webSearch: group.webSearch, webFetch: group.webFetch },
    };
  }

  private setTyping(chatJid: string, typing: boolean): void {
    this.events.emit('chat:typing', { chatJid, typing });
    const channel = this.deps.channels.find((c) => c.owns(chatJid));
    channel
      ?.setTyping(chatJid, typing)
      .catch((err: unknown) => this.log.debug({ err, chatJid }, 'typing indicator failed'));
  }

  /**
   * The queue stopped trying: tell the chat (and, through the event, the tray). A run that
   * already closed its turn with a notice (stopped at a limit) has told the chat; it is not
   * told twice.
   */
  private onGiveUp(
    groupJid: string,
    error: Error,
    attempts: number,
    work: WorkItem,
    chatNotified: boolean,
  ): void {
    this.events.emit('run:gave-up', { groupJid, error: error.message, attempts });
    if (work.kind === 'task') {
      const task = this.taskWork.get(work.taskId);
      this.taskWork.delete(work.taskId);
      task?.work.gaveUp(error);
    }
    if (chatNotified) return;
    const group = this.deps.store.getGroup(groupJid);
    if (!group) return;
    const tries = attempts > 1 ? ` (${attempts} attempts)` : '';
    const reason = error.message.replace(/[\s.]+$/, '');
    const text =
      work.kind === 'task'
        ? `A scheduled task could not run${tries}: ${reason}.`
        : `Sorry, I could not answer${tries}: ${reason}. ` +
          'Your messages are kept; I will try again when the next one arrives.';
    this.deps.store.enqueueOutbound(group.jid, text, null, this.now(), 'notice');
    this.outbox.notify();
  }

  /** The group's folders are over their budget: pause it, as `groups pause` does, and say why. */
  private pauseForDisk(group: Group, notice: string): void {
    this.pauseGroup(group.jid);
    this.deps.store.enqueueOutbound(group.jid, notice, null, this.now(), 'notice');
    this.outbox.notify();
  }

  /** Work the disk guard held may go: back to the queue, as if it had just arrived. */
  private requeueHeld(groupJid: string, work: readonly WorkItem[]): void {
    const group = this.deps.store.getGroup(groupJid);
    if (!group || !this.dispatch || this.stopping.signal.aborted) return;
    for (const item of work) {
      if (item.kind === 'task') this.queue.enqueueTask(groupJid, item.taskId);
      else if (!group.paused && hasPendingTrigger(this.deps.store, group))
        this.queue.enqueueMessage(groupJid);
    }
  }

  /** Held work of a group paused over its budget: messages wait for resume, tasks are skipped. */
  private dropHeld(groupJid: string, work: readonly WorkItem[]): void {
    for (const item of work) {
      if (item.kind !== 'task') continue;
      const task = this.taskWork.get(item.taskId);
      this.taskWork.delete(item.taskId);
      task?.work.dropped('the group is paused over its disk budget');
      this.log.info(
        { group: groupJid, task: item.taskId },
        'scheduled task skipped: the group is paused over its disk budget',
      );
    }
  }

  /**
   * The set-up changed. Ready: the held work goes, in the order it was held. Not ready: work is
   * held, and each group whose messages wait is told what is wrong and how to fix it.
   */
  private onSetupChanged(problems: readonly SetupProblem[]): void {
    this.events.emit('setup:changed', { ready: problems.length === 0, problems: [...problems] });
    if (problems.length === 0) {
      this.toldNotReady.clear();
      if (this.dispatch && !this.stopping.signal.aborted) this.queue.releaseWork();
      return;
    }
    if (!this.dispatch) return;
    this.queue.holdWork();
    for (const groupJid of this.queue.snapshot().waitingForSetup) this.tellNotReady(groupJid);
  }

  /**
   * Tells a group's chat why its messages wait, once per not-ready spell, and again only when
   * something new is wrong. A build in progress gets a short "one moment" instead.
   */
  private tellNotReady(groupJid: string): void {
    const problems = this.setup.problems();
    if (problems.length === 0) return;
    const signature = problems.map((p) => p.kind).join(',');
    if (this.toldNotReady.get(groupJid) === signature) return;
    const group = this.deps.store.getGroup(groupJid);
    if (!group) return;
    this.toldNotReady.set(groupJid, signature);
    const blocking = needsTheUser(problems);
    const text =
      blocking.length === 0
        ? 'One moment: Clawbar is building its agent image, which takes a few minutes the first ' +
          'time. Your message is kept and will be answered as soon as that is done.'
        : `I cannot answer yet: ${describeProblems(blocking)}. ` +
          'Your message is kept and will be answered once that is fixed.';
    this.deps.store.enqueueOutbound(group.jid, text, null, this.now(), 'notice');
    this.outbox.notify();
  }

  /** Removes containers of ours that no live run owns (left by a crash, or lost in an outage). */
  private async removeOrphans(): Promise<void> {
    const keep = new Set<string>();
    for (const run of this.liveRuns) if (run.containerName) keep.add(run.containerName);
    try {
      const removed = await this.deps.runtime.removeOrphans(keep);
      if (removed > 0) this.log.info({ removed }, 'removed containers no run owns');
    } catch (err) {
      this.log.warn({ err }, 'could not remove orphaned containers');
    }
  }

  private recoverPending(): void {
    if (!this.dispatch) return;
    for (const group of this.deps.store.listGroups()) {
      if (!group.paused && hasPendingTrigger(this.deps.store, group)) {
        this.log.info({ group: group.folder }, 're-queueing unanswered messages');
        this.queue.enqueueMessage(group.jid);
        // Still waiting after a restart: the chat hears why (once for this start).
        if (!this.setup.ready) this.tellNotReady(group.jid);
      }
    }
  }
}

function validSender(from: string): string {
  const name = from.trim();
  if (name === '' || name.length > 64 || /[\p{Cc}<>]/u.test(name)) {
    throw new CoreInputError(
      'the sender name must be 1-64 characters, without control characters or < >',
    );
  }
  return name;
}

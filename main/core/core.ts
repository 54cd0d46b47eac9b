/**
 * The orchestrator. It owns the store, the channels, the group queue and the container
 * runtime, and wires them: a stored message is routed, a triggered group is queued, the
 * queue starts an {@link AgentRun}, and the run's replies go out through the outbox.
 *
 * It never imports Electron: the tray app and `clawbar serve` both host it.
 */
import { AgentRun, pendingTurn, type ModelCaller } from './agent/agent-run.js';
import { HostTools } from './agent/host-tools.js';
import type { Channel, InboundMessage } from './channels/channel.js';
import { LocalChannel } from './channels/local.js';
import type { ClawbarConfig } from './config.js';
import { CoreInputError } from './errors.js';
import { CoreEventBus } from './events.js';
import { GroupAdmin, type AddGroupInput } from './group-admin.js';
import type { Logger } from './logger.js';
import { Outbox } from './outbox.js';
import { GroupQueue, type QueueSnapshot, type RetryPolicy } from './queue/group-queue.js';
import { formatOutbound, isTriggerMessage } from './router.js';
import type { ContainerRuntime, ImageState, RuntimeState } from './sandbox/runtime.js';
import type { Group, Store, StoredMessage } from './store/index.js';

export { CoreInputError };

export interface CoreDeps {
  config: ClawbarConfig;
  store: Store;
  runtime: ContainerRuntime;
  broker: ModelCaller;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
  /** @default 5 s base, 5 retries */
  retry?: RetryPolicy;
  /**
   * False when the CLI uses the core without `serve`: messages are stored and routed, but no
   * agent runs; the next `serve` picks them up. @default true
   */
  dispatch?: boolean;
}

export interface CoreStatus {
  runtime: RuntimeState & { kind: string };
  image: ImageState;
  queue: QueueSnapshot;
  groups: number;
  keyConfigured: boolean;
}

/** A message was accepted into a local chat. */
export interface PostedMessage {
  message: StoredMessage;
  group: Group;
  triggered: boolean;
}

export class Core {
  readonly events = new CoreEventBus();
  readonly local: LocalChannel;
  readonly groups: GroupAdmin;
  readonly queue: GroupQueue;
  private readonly outbox: Outbox;
  private readonly hostTools: HostTools;
  private readonly channels: Channel[];
  private readonly log: Logger;
  private readonly now: () => number;
  private started = false;
  private readonly dispatch: boolean;

  constructor(private readonly deps: CoreDeps) {
    this.log = deps.log.child({ mod: 'core' });
    this.now = deps.now ?? Date.now;
    this.dispatch = deps.dispatch ?? true;
    this.local = new LocalChannel(this.now);
    this.channels = [this.local];
    this.groups = new GroupAdmin({ store: deps.store, config: deps.config, now: this.now });
    this.outbox = new Outbox({
      store: deps.store,
      channels: this.channels,
      assistantName: deps.config.assistantName,
      log: deps.log,
    });
    this.hostTools = new HostTools({
      store: deps.store,
      outbox: this.outbox,
      formatOutbound,
      now: this.now,
      log: deps.log,
    });
    this.queue = new GroupQueue({
      maxConcurrency: deps.config.maxConcurrency,
      startRun: (jid) => this.startRun(jid),
      isPaused: (jid) => deps.store.getGroup(jid)?.paused ?? true,
      onGiveUp: (jid, error, attempts) => this.onGiveUp(jid, error, attempts),
      log: deps.log,
      ...(deps.retry ? { retry: deps.retry } : {}),
    });
  }

  /**
   * Boots in order: folders and memory templates, orphaned containers, channels, then
   * recovery (undelivered replies go out, unanswered triggers are queued again).
   * Each step is idempotent.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.groups.ensureLayout();
    const runtime = await this.deps.runtime.check();
    if (runtime.ok) {
      const removed = await this.deps.runtime.removeOrphans().catch((err: unknown) => {
        this.log.warn({ err }, 'could not remove orphaned containers');
        return 0;
      });
      if (removed > 0) this.log.info({ removed }, 'removed containers left by a previous run');
    } else {
      this.log.warn(
        { reason: runtime.reason, fix: runtime.fix },
        'container runtime unavailable; runs will retry',
      );
    }
    for (const channel of this.channels) await channel.connect();
    await this.outbox.flush();
    this.recoverPending();
  }

  /** Stops taking work, lets runs finish (or kills them after `graceMs`), closes channels. */
  async shutdown(graceMs = 10_000): Promise<void> {
    await this.queue.shutdown(graceMs);
    for (const channel of this.channels) await channel.disconnect().catch(() => undefined);
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
    if (triggered && group && this.dispatch) this.queue.enqueueMessage(group.jid);
    return { message, inserted, triggered };
  }

  /** Puts a message a person typed into a local-chat group. */
  postLocal(groupRef: string, from: string, text: string): PostedMessage {
    const group = this.groups.resolve(groupRef);
    if (!this.local.owns(group.jid)) {
      throw new CoreInputError(
        `group "${group.name}" is a WhatsApp group; local messages go only to local-chat groups`,
      );
    }
    const trimmed = text.trim();
    if (trimmed === '') throw new CoreInputError('the message is empty');
    const { message, triggered } = this.receive(
      this.local.compose(group, validSender(from), trimmed),
    );
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
    this.events.emit('group:changed', { groupJid: group.jid, change: 'removed' });
    return group;
  }

  pauseGroup(ref: string): Group {
    const group = this.groups.setPaused(ref, true);
    if (this.dispatch) this.queue.pause(group.jid);
    this.events.emit('group:changed', { groupJid: group.jid, change: 'paused' });
    return group;
  }

  resumeGroup(ref: string): Group {
    const group = this.groups.setPaused(ref, false);
    // What waited while paused goes to the agent as one batch: one turn answers it all.
    if (this.dispatch && pendingTurn(this.deps.store, group)) this.queue.enqueueMessage(group.jid);
    this.events.emit('group:changed', { groupJid: group.jid, change: 'resumed' });
    return group;
  }

  /** The chat history of a group, both directions, oldest first. */
  messages(groupJid: string, limit: number): StoredMessage[] {
    return this.deps.store.recentMessages(groupJid, limit);
  }

  async status(): Promise<CoreStatus> {
    const [runtime, image] = await Promise.all([
      this.deps.runtime.check(),
      this.deps.runtime
        .inspectImage(this.deps.config.image)
        .catch((): ImageState => ({ image: this.deps.config.image, present: false })),
    ]);
    return {
      runtime: { ...runtime, kind: this.deps.runtime.kind },
      image,
      queue: this.queue.snapshot(),
      groups: this.deps.store.listGroups().length,
      keyConfigured: Boolean(this.deps.config.apiKey),
    };
  }

  /**
   * Resolves when the turn that answers message `seq` of the group has finished, with
   * what the assistant sent in it; rejects if the group's runs are given up, or on timeout.
   */
  waitForReply(
    groupJid: string,
    seq: number,
    timeoutMs: number,
  ): Promise<{ turnId: string; replies: StoredMessage[] }> {
    return new Promise((resolve, reject) => {
      const unsubscribe: Array<() => void> = [];
      const done = () => {
        clearTimeout(timer);
        for (const off of unsubscribe) off();
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new CoreInputError(
            `no reply within ${Math.round(timeoutMs / 1000)} s; the message is stored and still queued`,
          ),
        );
      }, timeoutMs);
      unsubscribe.push(
        this.events.on('turn:finished', (e) => {
          if (e.groupJid !== groupJid || e.throughSeq < seq) return;
          done();
          resolve({ turnId: e.turnId, replies: this.deps.store.messagesOfTurn(e.turnId) });
        }),
        this.events.on('run:gave-up', (e) => {
          if (e.groupJid !== groupJid) return;
          done();
          reject(new Error(`the agent failed ${e.attempts} times and gave up: ${e.error}`));
        }),
      );
    });
  }

  // ── internals ──────────────────────────────────────────────────────────

  private startRun(groupJid: string): AgentRun | null {
    const group = this.deps.store.getGroup(groupJid);
    if (!group || group.paused || !pendingTurn(this.deps.store, group)) return null;
    const { config } = this.deps;
    return new AgentRun(
      {
        store: this.deps.store,
        runtime: this.deps.runtime,
        broker: this.deps.broker,
        hostTools: this.hostTools,
        outbox: this.outbox,
        events: this.events,
        config: {
          home: config.home,
          groupsDir: config.groupsDir,
          globalDir: config.globalDir,
          sessionsDir: config.sessionsDir,
          image: config.image,
          assistantName: config.assistantName,
          timezone: config.timezone,
          idleTimeoutMs: config.idleTimeoutMs,
          hardTimeoutMs: config.hardTimeoutMs,
        },
        isPaused: (jid) => this.deps.store.getGroup(jid)?.paused ?? true,
        onIdle: () => this.queue.runIdle(groupJid),
        now: this.now,
        log: this.deps.log,
      },
      group,
    );
  }

  /** Every retry failed: tell the chat (and, through the event, the tray). */
  private onGiveUp(groupJid: string, error: Error, attempts: number): void {
    const group = this.deps.store.getGroup(groupJid);
    this.events.emit('run:gave-up', { groupJid, error: error.message, attempts });
    if (!group) return;
    const item = this.deps.store.enqueueOutbound(
      group.jid,
      `Sorry, I could not answer: the agent failed ${attempts} times (${error.message}). ` +
        'Your messages are kept; I will try again when the next one arrives.',
      null,
      this.now(),
    );
    void this.outbox.deliver([item]);
  }

  private recoverPending(): void {
    for (const group of this.deps.store.listGroups()) {
      if (!group.paused && pendingTurn(this.deps.store, group)) {
        this.log.info({ group: group.folder }, 're-queueing unanswered messages');
        this.queue.enqueueMessage(group.jid);
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

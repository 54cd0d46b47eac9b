/**
 * Host tools: what an agent may ask the host to do (`host.call` frames).
 *
 * Authorization comes only from the run's binding (the group the container was started
 * for), never from fields in the payload. A non-main group may message only its own chat.
 */
import { HostCallArgsSchemas, type HostCallName } from './protocol.js';
import type { Logger } from '../logger.js';
import type { OutboxWorker } from '../outbox.js';
import type { Store } from '../store/index.js';

/**
 * How long send_message waits to say "sent" before it answers "queued". A slow or closed
 * channel must never hold a turn open.
 * @default 2000
 */
export const SEND_CONFIRM_MS = 2_000;

/** The identity a container's session is bound to, fixed when the host starts it. */
export interface RunBinding {
  groupJid: string;
  chatJid: string;
  folder: string;
  isMain: boolean;
  turnId: string;
}

export interface HostCallResult {
  ok: boolean;
  result: string;
}

export interface HostToolsDeps {
  store: Store;
  outbox: Pick<OutboxWorker, 'notify' | 'whenSettled'>;
  formatOutbound(text: string): string | null;
  now(): number;
  log: Logger;
  /** @default SEND_CONFIRM_MS */
  sendConfirmMs?: number;
}

export class HostTools {
  private readonly log: Logger;

  constructor(private readonly deps: HostToolsDeps) {
    this.log = deps.log.child({ mod: 'host-tools' });
  }

  /** Runs one host call for the bound run. Never throws: failures become `ok: false`. */
  async call(binding: RunBinding, name: string, rawArgs: unknown): Promise<HostCallResult> {
    if (!isHostCall(name)) return { ok: false, result: `unknown host call "${name}"` };
    const parsed = HostCallArgsSchemas[name].safeParse(rawArgs);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return {
        ok: false,
        result: `bad arguments for ${name}: ${issue?.path.join('.') || 'args'}: ${issue?.message}`,
      };
    }
    try {
      switch (name) {
        case 'send_message':
          return await this.sendMessage(binding, parsed.data);
        default: {
          const unreachable: never = name;
          return { ok: false, result: `unhandled host call ${String(unreachable)}` };
        }
      }
    } catch (err) {
      this.log.error({ group: binding.groupJid, call: name, err }, 'host call failed');
      return { ok: false, result: `${name} failed on the host` };
    }
  }

  private async sendMessage(
    binding: RunBinding,
    args: { text: string; chatJid?: string },
  ): Promise<HostCallResult> {
    const target = args.chatJid ?? binding.chatJid;
    if (target !== binding.chatJid) {
      if (!binding.isMain) {
        this.log.warn(
          { group: binding.groupJid, target },
          'denied: non-main group tried to message another chat',
        );
        return {
          ok: false,
          result: 'not allowed: this group may only send messages to its own chat',
        };
      }
      if (!this.deps.store.getChat(target)) return { ok: false, result: `unknown chat ${target}` };
    }
    const text = this.deps.formatOutbound(args.text);
    if (text === null)
      return { ok: false, result: 'nothing to send after removing <internal> text' };
    const item = this.deps.store.enqueueOutbound(target, text, binding.turnId, this.deps.now());
    this.deps.outbox.notify();
    // Truthful either way: "sent" only once the channel took it.
    const outcome = await this.deps.outbox.whenSettled(
      item.id,
      this.deps.sendConfirmMs ?? SEND_CONFIRM_MS,
    );
    switch (outcome) {
      case 'sent':
        return { ok: true, result: 'sent' };
      case 'queued':
        return {
          ok: true,
          result: 'queued: the chat is not reachable right now; it will be delivered when it is',
        };
      case 'failed':
        return { ok: false, result: 'not delivered: the chat refused the message' };
      default: {
        const unreachable: never = outcome;
        return { ok: false, result: `unknown delivery outcome ${String(unreachable)}` };
      }
    }
  }
}

function isHostCall(name: string): name is HostCallName {
  return Object.hasOwn(HostCallArgsSchemas, name);
}

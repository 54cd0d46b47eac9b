/**
 * The main group's host calls for managing groups: register_group enables a chat the channels
 * know as a group, unregister_group disables one. Like `clawbar groups add` and `remove`, they
 * go through the core, so the queue, the scheduler and the tray hear of each change.
 *
 * Authorization comes only from the run's binding, never from the payload: only the main group
 * (the owner's admin chat) may call them. A refused call is logged and answered with why.
 */
import { CoreInputError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { AddGroupInput } from '../group-admin.js';
import type { Group, Store } from '../store/index.js';
import { clip, oneLine } from '../text.js';
import type { HostCallResult, RunBinding } from './host-tools.js';

/** What the group calls need of the core: the same add and remove as the CLI's. */
export interface GroupChanges {
  add(input: AddGroupInput): Group;
  remove(ref: string): Group;
}

export interface GroupToolsDeps {
  store: Pick<Store, 'getChat' | 'getGroup' | 'listGroups'>;
  groups: GroupChanges;
  log: Logger;
}

/** A group's name, as GroupAdmin takes it: 1-64 characters. */
const MAX_NAME_CHARS = 64;

export class GroupTools {
  constructor(private readonly deps: GroupToolsDeps) {}

  /**
   * Enables a chat the channels know (list_chats shows them) as a group. The name defaults to
   * the chat's own; a group made here is never the main group.
   */
  register(
    binding: RunBinding,
    args: { chat_jid: string; name?: string; trigger?: string; requires_trigger?: boolean },
  ): HostCallResult {
    const refused = this.mainOnly(binding, 'register a group');
    if (refused) return refused;
    const chat = this.deps.store.getChat(args.chat_jid);
    if (!chat) {
      return {
        ok: false,
        result: `no chat has the jid ${JSON.stringify(clip(oneLine(args.chat_jid), 80))}; list_chats shows the chats this assistant can reach`,
      };
    }
    if (chat.channel !== 'whatsapp') {
      return {
        ok: false,
        result:
          'only WhatsApp chats can be registered here; local-chat groups are added with `clawbar groups add`',
      };
    }
    const name = clip(oneLine(args.name ?? chat.name), MAX_NAME_CHARS) || chat.jid.split('@')[0];
    return this.change(() => {
      const group = this.deps.groups.add({
        name: name as string,
        jid: chat.jid,
        ...(args.trigger !== undefined ? { trigger: args.trigger } : {}),
        ...(args.requires_trigger !== undefined ? { requiresTrigger: args.requires_trigger } : {}),
      });
      this.deps.log.info(
        { group: binding.groupJid, registered: group.jid, folder: group.folder },
        'agent registered a group',
      );
      const wakes = group.requiresTrigger
        ? `messages starting with ${group.trigger} wake the assistant`
        : 'every message wakes the assistant';
      return `Registered ${group.name} (${group.jid}) as a group, folder ${group.folder}; ${wakes}.`;
    });
  }

  /** Disables a group by its folder. Its chat history and folder are kept; main cannot go. */
  unregister(binding: RunBinding, args: { group_folder: string }): HostCallResult {
    const refused = this.mainOnly(binding, 'unregister a group');
    if (refused) return refused;
    const group = this.deps.store.listGroups().find((g) => g.folder === args.group_folder);
    if (!group) {
      return {
        ok: false,
        result: `no registered group has the folder ${JSON.stringify(clip(oneLine(args.group_folder), 64))}; list_chats shows which chats are enabled`,
      };
    }
    if (group.isMain) {
      this.deps.log.warn(
        { group: binding.groupJid },
        'refused: the main group tried to unregister itself',
      );
      return {
        ok: false,
        result:
          'the main group cannot unregister itself; the owner can do it with `clawbar groups remove`',
      };
    }
    return this.change(() => {
      this.deps.groups.remove(group.jid);
      this.deps.log.info(
        { group: binding.groupJid, unregistered: group.jid, folder: group.folder },
        'agent unregistered a group',
      );
      return `Unregistered ${group.name} (folder ${group.folder}): the assistant no longer answers there. Its chat history and folder are kept; its scheduled tasks are removed.`;
    });
  }

  private mainOnly(binding: RunBinding, action: string): HostCallResult | null {
    if (binding.isMain) return null;
    this.deps.log.warn({ group: binding.groupJid }, `denied: non-main group tried to ${action}`);
    return { ok: false, result: `not allowed: only the main group may ${action}` };
  }

  /** Runs a change; input errors (a taken name, a bad trigger) become answers the model can act on. */
  private change(run: () => string): HostCallResult {
    try {
      return { ok: true, result: run() };
    } catch (err) {
      if (err instanceof CoreInputError) return { ok: false, result: err.message };
      throw err;
    }
  }
}

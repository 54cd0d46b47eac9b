/**
 * Registering, finding and changing groups, and their folders on disk. Used by the running
 * core and, when `serve` is not running, directly by the CLI.
 */
import fs from 'node:fs';
import path from 'node:path';
import { localJid } from './channels/local.js';
import type { ClawbarConfig } from './config.js';
import type { Logger } from './logger.js';
import { installTemplates } from './templates.js';
import { CoreInputError, UnknownGroupError } from './errors.js';
import { templatesDir } from './paths.js';
import { defaultTrigger } from './router.js';
import { folderFromName, validateFolderName } from './sandbox/mounts.js';
import type { Group, Store } from './store/index.js';

export interface AddGroupInput {
  name: string;
  /** A WhatsApp jid; omitted means a local-chat group. */
  jid?: string;
  main?: boolean;
  /** @default `@{assistantName}` */
  trigger?: string;
  /** False: every message wakes the agent. @default true */
  requiresTrigger?: boolean;
}

/** WhatsApp group (`…@g.us`), person (`…@s.whatsapp.net`) or LID (`…@lid`) jids. */
const WHATSAPP_JID = /^\d{5,20}(-\d{1,20})?@(g\.us|s\.whatsapp\.net|lid)$/;

export interface GroupAdminDeps {
  store: Store;
  config: Pick<ClawbarConfig, 'groupsDir' | 'globalDir' | 'assistantName'>;
  now(): number;
  /** Told when a memory template is not installed because a link sits in its place. */
  log?: Logger;
}

export class GroupAdmin {
  constructor(private readonly deps: GroupAdminDeps) {}

  /** Creates the data folders and copies memory templates that are not there yet. */
  ensureLayout(): void {
    const { config } = this.deps;
    fs.mkdirSync(config.groupsDir, { recursive: true, mode: 0o700 });
    fs.mkdirSync(config.globalDir, { recursive: true });
    installTemplates(path.join(templatesDir(), 'global'), config.globalDir, { log: this.deps.log });
  }

  list(): Group[] {
    return this.deps.store.listGroups();
  }

  /** Finds a group by name, folder or jid, or throws a clear error. */
  resolve(ref: string): Group {
    const trimmed = ref.trim();
    const group = trimmed === '' ? undefined : this.deps.store.findGroup(trimmed);
    if (!group) throw new UnknownGroupError(ref);
    return group;
  }

  add(input: AddGroupInput): Group {
    const { store, config } = this.deps;
    const name = input.name.trim();
    if (name === '' || name.length > 64 || /\p{Cc}/u.test(name)) {
      throw new CoreInputError('a group name must be 1-64 characters with no control characters');
    }
    if (store.findGroup(name)) throw new CoreInputError(`a group named "${name}" already exists`);
    if (input.jid !== undefined && !WHATSAPP_JID.test(input.jid)) {
      throw new CoreInputError(
        `"${input.jid}" is not a WhatsApp jid (like 120363012345678901@g.us or 15551234567@s.whatsapp.net)`,
      );
    }
    if (input.jid && store.getGroup(input.jid))
      throw new CoreInputError(`the chat ${input.jid} is already a group`);
    if (input.main && store.listGroups().some((g) => g.isMain)) {
      throw new CoreInputError(
        'there is already a main group; remove it first, or add this one without --main',
      );
    }
    const trigger = (input.trigger ?? defaultTrigger(config.assistantName)).trim();
    if (trigger === '' || trigger.length > 64 || /\s/.test(trigger)) {
      throw new CoreInputError('a trigger must be 1-64 characters with no spaces, like @Andy');
    }
    // A removed group's folder stays on disk; a new group must not inherit it, so folders
    // that exist on disk count as taken too.
    const folder = folderFromName(name, this.takenFolders());
    validateFolderName(folder);
    const group = store.addGroup(
      {
        jid: input.jid ?? localJid(folder),
        folder,
        name,
        trigger,
        requiresTrigger: input.requiresTrigger ?? true,
        isMain: input.main ?? false,
        channel: input.jid ? 'whatsapp' : 'local',
      },
      this.deps.now(),
    );
    const dir = path.join(config.groupsDir, folder);
    fs.mkdirSync(dir, { recursive: true });
    installTemplates(path.join(templatesDir(), group.isMain ? 'main' : 'group'), dir, {
      log: this.deps.log,
    });
    return group;
  }

  private takenFolders(): Set<string> {
    const { config, store } = this.deps;
    const taken = store.groupFolders();
    if (fs.existsSync(config.groupsDir)) {
      for (const entry of fs.readdirSync(config.groupsDir)) taken.add(entry);
    }
    return taken;
  }

  /** Unregisters a group. Its folder and history stay, so nothing the user made is lost. */
  remove(ref: string): Group {
    const group = this.resolve(ref);
    this.deps.store.removeGroup(group.jid);
    return group;
  }

  setPaused(ref: string, paused: boolean): Group {
    const group = this.resolve(ref);
    this.deps.store.setPaused(group.jid, paused);
    return { ...group, paused };
  }
}

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
import { InvalidPhoneNumberError, normalizePhoneNumber } from './channels/whatsapp-control.js';
import { allowlistKey, defaultTrigger, senderKey } from './router.js';
import { folderFromName, validateFolderName } from './sandbox/mounts.js';
import {
  changeGroupMounts,
  loadMountAllowlist,
  mountAllowlistPath,
  type GroupMountsView,
  type MountChange,
} from './sandbox/mount-allowlist.js';
import { modelNameProblem } from './agent/agent-settings.js';
import type { Group, GroupSettingsChanges, Store } from './store/index.js';

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

/** A change to a group's sender policy (`clawbar groups senders`). */
export interface SenderPolicyChange {
  /** Senders to add: phone numbers or WhatsApp user jids; for a local-chat group, names. */
  allow?: readonly string[];
  /** Senders to take off the list, written as for `allow`. */
  deny?: readonly string[];
  /** Drop the list: anyone in the chat may wake the agent again. */
  everyone?: boolean;
}

/**
 * A change to a group's agent settings (`clawbar groups set`); fields left out stay as they are.
 * The daily budget's two caps change independently.
 */
export interface GroupSettingsInput {
  /** An Anthropic model id; null for the configured default (`CLAWBAR_MODEL`). */
  model?: string | null;
  webSearch?: boolean;
  webFetch?: boolean;
  networkAllowed?: boolean;
  /** Tokens per local day; null for no cap. */
  budgetTokens?: number | null;
  /** US dollars per local day (estimated from the token counts); null for no cap. */
  budgetUsd?: number | null;
}

/** The highest daily budgets accepted: above them a cap is a typo, not a limit. */
export const MAX_DAILY_BUDGET_TOKENS = 1_000_000_000;
export const MAX_DAILY_BUDGET_USD = 100_000;

/** The store's change for `input`, every value checked; throws a {@link CoreInputError}. */
export function settingsChanges(group: Group, input: GroupSettingsInput): GroupSettingsChanges {
  const changes: GroupSettingsChanges = {};
  if (input.model !== undefined) {
    const model = input.model === null ? null : input.model.trim();
    const problem = model === null ? null : modelNameProblem(model);
    if (problem) throw new CoreInputError(problem);
    changes.model = model;
  }
  if (input.webSearch !== undefined) changes.webSearch = input.webSearch;
  if (input.webFetch !== undefined) changes.webFetch = input.webFetch;
  if (input.networkAllowed !== undefined) changes.networkAllowed = input.networkAllowed;
  const { budgetTokens, budgetUsd } = input;
  if (budgetTokens !== undefined || budgetUsd !== undefined) {
    if (
      budgetTokens != null &&
      !(
        Number.isSafeInteger(budgetTokens) &&
        budgetTokens >= 1 &&
        budgetTokens <= MAX_DAILY_BUDGET_TOKENS
      )
    ) {
      throw new CoreInputError(
        `a daily token budget must be a whole number from 1 to ${MAX_DAILY_BUDGET_TOKENS}, or none; got ${budgetTokens}`,
      );
    }
    if (
      budgetUsd != null &&
      !(Number.isFinite(budgetUsd) && budgetUsd > 0 && budgetUsd <= MAX_DAILY_BUDGET_USD)
    ) {
      throw new CoreInputError(
        `a daily budget in USD must be above 0 and at most ${MAX_DAILY_BUDGET_USD}, or none; got ${budgetUsd}`,
      );
    }
    changes.dailyBudget = {
      tokens: budgetTokens === undefined ? group.dailyBudget.tokens : budgetTokens,
      usd: budgetUsd === undefined ? group.dailyBudget.usd : budgetUsd,
    };
  }
  return changes;
}

/** The most senders one group's allowlist holds. */
export const MAX_ALLOWED_SENDERS = 256;

/** A WhatsApp person: a phone jid or a LID, with an optional device suffix. */
const WHATSAPP_USER_JID = /^\d{5,20}(?::\d{1,5})?@(s\.whatsapp\.net|c\.us|lid)$/i;

/**
 * One allowlist entry as given on the CLI, in its stored form. WhatsApp groups take a phone
 * number as people write it (`+1 555 123 4567` becomes `15551234567@s.whatsapp.net`) or a user
 * jid (its device suffix dropped). A local-chat group's senders are the names given with
 * `send --from`, so its entries are names.
 */
export function normalizeSenderEntry(group: Pick<Group, 'jid'>, raw: string): string {
  const entry = raw.trim();
  if (group.jid.startsWith('local:')) {
    if (entry === '' || entry.length > 64 || /[\p{Cc}<>]/u.test(entry)) {
      throw new CoreInputError(
        `"${printable(raw)}" is not a sender name: in a local-chat group senders are the names given with \`send --from\`, 1-64 characters without control characters or < >`,
      );
    }
    return entry;
  }
  if (entry.includes('@')) {
    if (WHATSAPP_USER_JID.test(entry)) return senderKey(entry);
    throw new CoreInputError(
      entry.toLowerCase().endsWith('@g.us')
        ? `"${printable(raw)}" is a group's jid, not a person's; give a phone number like +15551234567`
        : `"${printable(raw)}" is not a WhatsApp user jid; give a phone number like +15551234567 or a jid like 15551234567@s.whatsapp.net`,
    );
  }
  if (!/^\+?[\d\s().-]+$/.test(entry)) {
    throw new CoreInputError(
      `"${printable(raw)}" is neither a phone number (like +1 555 123 4567) nor a WhatsApp jid (like 15551234567@s.whatsapp.net)`,
    );
  }
  try {
    return `${normalizePhoneNumber(entry)}@s.whatsapp.net`;
  } catch (err) {
    if (err instanceof InvalidPhoneNumberError) throw new CoreInputError(err.message);
    throw err;
  }
}

/** Text from the user, safe to quote in one line of an error. */
function printable(text: string): string {
  const clean = text.replace(/[\p{Cc}\p{Cf}]/gu, '?');
  return clean.length > 80 ? `${clean.slice(0, 80)}…` : clean;
}

export interface GroupAdminDeps {
  store: Store;
  config: Pick<ClawbarConfig, 'groupsDir' | 'globalDir' | 'assistantName'> &
    Partial<Pick<ClawbarConfig, 'home'>>;
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

  /**
   * `clawbar groups mounts`: the group's extra mounts as the allowlist judges them now, after
   * adding (checked at once, refused with the reason) or removing one (mount-allowlist.ts).
   */
  mounts(ref: string, change: MountChange = {}): GroupMountsView {
    const group = this.resolve(ref);
    // groupsDir is always `<home>/groups` (config.ts); home is given by the core.
    const home = this.deps.config.home ?? path.dirname(this.deps.config.groupsDir);
    const allowlist = loadMountAllowlist(mountAllowlistPath(home));
    return changeGroupMounts(group, change, { home, allowlist }, (extraMounts) => {
      if (!this.deps.store.updateGroupSettings(group.jid, { extraMounts })) {
        throw new UnknownGroupError(ref);
      }
    });
  }

  /**
   * Changes the group's agent settings. Every value is checked before anything changes; an
   * input with no fields changes nothing and returns the group as it is.
   */
  updateSettings(ref: string, input: GroupSettingsInput): Group {
    const group = this.resolve(ref);
    const changes = settingsChanges(group, input);
    if (Object.keys(changes).length === 0) return group;
    const updated = this.deps.store.updateGroupSettings(group.jid, changes);
    // Removed between the lookup and the write (another client): say so, as for any unknown group.
    if (!updated) throw new UnknownGroupError(ref);
    return updated;
  }

  /**
   * Changes who may wake the group's agent: takes `deny` off the list, then adds `allow`
   * (`everyone` drops the list). Every entry is checked before anything changes. A sender not
   * allowed still has their messages stored; they just never start a run. Removing the last
   * entry leaves an empty list (nobody but the account owner), never "anyone": taking a person
   * off must not open the group to everyone.
   */
  updateSenders(ref: string, change: SenderPolicyChange): Group {
    const group = this.resolve(ref);
    const allow = (change.allow ?? []).map((raw) => normalizeSenderEntry(group, raw));
    const deny = (change.deny ?? []).map((raw) => normalizeSenderEntry(group, raw));
    if (change.everyone) {
      if (allow.length > 0 || deny.length > 0) {
        throw new CoreInputError(
          '--everyone drops the whole list; give it without --allow or --deny',
        );
      }
      this.deps.store.setAllowedSenders(group.jid, null);
      return { ...group, allowedSenders: null };
    }
    if (allow.length === 0 && deny.length === 0) return group;
    const key = (entry: string): string => allowlistKey(group, entry);
    const denied = new Set(deny.map(key));
    const both = allow.find((entry) => denied.has(key(entry)));
    if (both !== undefined)
      throw new CoreInputError(`"${both}" is both allowed and denied; give it once`);
    const current = group.allowedSenders;
    if (deny.length > 0) {
      if (current === null) {
        throw new CoreInputError(
          `anyone may wake the agent in ${group.name}: there is no list to take ${deny.join(', ')} off; add senders with --allow`,
        );
      }
      const listed = new Set(current.map(key));
      const missing = deny.filter((entry) => !listed.has(key(entry)));
      if (missing.length > 0) {
        throw new CoreInputError(
          `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not on the list of ${group.name} (${current.join(', ') || 'empty'})`,
        );
      }
    }
    const next: string[] = [];
    const seen = new Set<string>();
    for (const entry of [...(current ?? []).filter((e) => !denied.has(key(e))), ...allow]) {
      if (seen.has(key(entry))) continue;
      seen.add(key(entry));
      next.push(entry);
    }
    if (next.length > MAX_ALLOWED_SENDERS) {
      throw new CoreInputError(
        `a group may allow at most ${MAX_ALLOWED_SENDERS} senders; this would make ${next.length}`,
      );
    }
    this.deps.store.setAllowedSenders(group.jid, next);
    return { ...group, allowedSenders: next };
  }
}

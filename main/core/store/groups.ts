/** Registered groups: the chats the assistant answers in. */
import type { Db } from './database.js';
import type { ExtraMountRequest, Group, GroupSettingsChanges, NewGroup } from './types.js';

/** The agent settings of a group that nobody has changed, as migration 007 gives them. */
export const DEFAULT_GROUP_SETTINGS = {
  model: null,
  webSearch: true,
  webFetch: false,
  dailyBudget: { tokens: null, usd: null },
  extraMounts: [],
} as const satisfies Pick<
  Group,
  'model' | 'webSearch' | 'webFetch' | 'dailyBudget' | 'extraMounts'
>;

interface GroupRow {
  jid: string;
  folder: string;
  name: string;
  trigger: string;
  requires_trigger: number;
  is_main: number;
  paused: number;
  network_allowed: number;
  allowed_senders: string | null;
  model: string | null;
  web_search: number;
  web_fetch: number;
  daily_token_budget: number | null;
  daily_budget_usd: number | null;
  extra_mounts: string | null;
  created_at: number;
}

/**
 * The stored allowlist, read defensively: the column is a JSON array by its CHECK, but only
 * strings count; anything else in it is dropped rather than trusted.
 */
function parseAllowedSenders(raw: string | null): string[] | null {
  if (raw === null) return null;
  const parsed = JSON.parse(raw) as unknown;
  if (!Array.isArray(parsed)) return [];
  return parsed.filter((entry): entry is string => typeof entry === 'string');
}

function toGroup(row: GroupRow): Group {
  return {
    jid: row.jid,
    folder: row.folder,
    name: row.name,
    trigger: row.trigger,
    requiresTrigger: row.requires_trigger === 1,
    isMain: row.is_main === 1,
    paused: row.paused === 1,
    networkAllowed: row.network_allowed === 1,
    allowedSenders: parseAllowedSenders(row.allowed_senders),
    model: row.model,
    webSearch: row.web_search === 1,
    webFetch: row.web_fetch === 1,
    dailyBudget: { tokens: row.daily_token_budget, usd: row.daily_budget_usd },
    extraMounts: parseExtraMounts(row.extra_mounts),
    createdAt: row.created_at,
  };
}

/**
 * The stored mount requests, read defensively: entries that are not of a request's shape are
 * dropped. What a request may see is decided at every run, against the allowlist file.
 */
function parseExtraMounts(raw: string | null): ExtraMountRequest[] {
  if (raw === null) return [];
  const parsed = JSON.parse(raw) as unknown;
  if (!Array.isArray(parsed)) return [];
  const requests: ExtraMountRequest[] = [];
  for (const entry of parsed as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { hostPath, containerPath, readonly } = entry as Record<string, unknown>;
    if (typeof hostPath !== 'string' || hostPath === '') continue;
    requests.push({
      hostPath,
      ...(typeof containerPath === 'string' ? { containerPath } : {}),
      ...(typeof readonly === 'boolean' ? { readonly } : {}),
    });
  }
  return requests;
}

export function groupQueries(db: Db) {
  const upsertChat = db.prepare(`
    INSERT INTO chats (jid, name, channel, is_group, last_activity) VALUES (?, ?, ?, 1, NULL)
    ON CONFLICT (jid) DO NOTHING`);
  const insert = db.prepare(`
    INSERT INTO groups (jid, folder, name, trigger, requires_trigger, is_main, created_at)
    VALUES (@jid, @folder, @name, @trigger, @requiresTrigger, @isMain, @createdAt)`);
  const startCursor = db.prepare(`
    INSERT INTO cursors (group_jid, last_seq)
    VALUES (?, (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat_jid = ?))`);
  const byJid = db.prepare(`SELECT * FROM groups WHERE jid = ?`);
  // One group's name may equal another's folder; the more exact match wins, not whichever row comes first.
  const byRef = db.prepare(`
    SELECT * FROM groups WHERE jid = @ref OR folder = @ref OR name = @ref COLLATE NOCASE
    ORDER BY CASE WHEN jid = @ref THEN 0 WHEN folder = @ref THEN 1 ELSE 2 END
    LIMIT 1`);
  const list = db.prepare(`SELECT * FROM groups ORDER BY is_main DESC, name`);
  const folders = db.prepare(`SELECT folder FROM groups`);
  const remove = db.prepare(`DELETE FROM groups WHERE jid = ?`);
  const setPaused = db.prepare(`UPDATE groups SET paused = ? WHERE jid = ?`);
  const setAllowedSenders = db.prepare(`UPDATE groups SET allowed_senders = ? WHERE jid = ?`);
  const setSettings = db.prepare(`
    UPDATE groups SET model = @model, web_search = @webSearch, web_fetch = @webFetch,
      network_allowed = @networkAllowed, daily_token_budget = @budgetTokens,
      daily_budget_usd = @budgetUsd, extra_mounts = @extraMounts
    WHERE jid = @jid`);

  return {
    /**
     * Registers a group and starts its cursor at the chat's latest message, so that
     * history from before registration is not answered.
     */
    addGroup: db.transaction((group: NewGroup, now: number): Group => {
      upsertChat.run(group.jid, group.name, group.channel);
      insert.run({
        jid: group.jid,
        folder: group.folder,
        name: group.name,
        trigger: group.trigger,
        requiresTrigger: group.requiresTrigger ? 1 : 0,
        isMain: group.isMain ? 1 : 0,
        createdAt: now,
      });
      startCursor.run(group.jid, group.jid);
      return toGroup(byJid.get(group.jid) as GroupRow);
    }),
    getGroup(jid: string): Group | undefined {
      const row = byJid.get(jid) as GroupRow | undefined;
      return row && toGroup(row);
    },
    /** Finds a group by jid, folder or name (name case-insensitive), in that order of preference. */
    findGroup(ref: string): Group | undefined {
      const row = byRef.get({ ref }) as GroupRow | undefined;
      return row && toGroup(row);
    },
    listGroups(): Group[] {
      return (list.all() as GroupRow[]).map(toGroup);
    },
    groupFolders(): Set<string> {
      return new Set((folders.all() as Array<{ folder: string }>).map((r) => r.folder));
    },
    /** Unregisters a group. Its chat history and its folder on disk are kept. */
    removeGroup(jid: string): boolean {
      return remove.run(jid).changes === 1;
    },
    setPaused(jid: string, paused: boolean): boolean {
      return setPaused.run(paused ? 1 : 0, jid).changes === 1;
    },
    /**
     * Sets who may wake the group's agent: a list of normalized sender ids (an empty list means
     * nobody but the account owner), or null for anyone. The caller normalizes; this stores.
     */
    setAllowedSenders(jid: string, senders: readonly string[] | null): boolean {
      const value = senders === null ? null : JSON.stringify([...new Set(senders)]);
      return setAllowedSenders.run(value, jid).changes === 1;
    },
    /**
     * Changes the group's agent settings (model, web tools, network, daily budget, extra
     * mounts); fields left out stay. The caller validates what they mean (a known model, a
     * positive budget); the table's CHECKs refuse what is out of shape. Returns the group as it
     * now is, or undefined when no group has this jid.
     */
    updateGroupSettings: db.transaction(
      (jid: string, changes: GroupSettingsChanges): Group | undefined => {
        const row = byJid.get(jid) as GroupRow | undefined;
        if (!row) return undefined;
        const before = toGroup(row);
        const budget = changes.dailyBudget ?? before.dailyBudget;
        // daily_token_budget predates CHECKs on added columns (migration 001): checked here.
        if (budget.tokens !== null && !(Number.isSafeInteger(budget.tokens) && budget.tokens > 0)) {
          throw new RangeError('a daily token budget must be a positive whole number');
        }
        const mounts = changes.extraMounts ?? before.extraMounts;
        setSettings.run({
          jid,
          model: changes.model !== undefined ? changes.model : before.model,
          webSearch: (changes.webSearch ?? before.webSearch) ? 1 : 0,
          webFetch: (changes.webFetch ?? before.webFetch) ? 1 : 0,
          networkAllowed: (changes.networkAllowed ?? before.networkAllowed) ? 1 : 0,
          budgetTokens: budget.tokens,
          budgetUsd: budget.usd,
          extraMounts: mounts.length === 0 ? null : JSON.stringify(mounts),
        });
        return toGroup(byJid.get(jid) as GroupRow);
      },
    ),
  };
}

/**
 * A group's agent settings as the CLI and the tray show them (`clawbar groups show`), and the
 * notes that go with a change (`clawbar groups set`). One builder, so that whoever adds a
 * setting (or today's usage and cost) extends one object.
 */
import type { GroupSettingsInput } from '../group-admin.js';
import type { ExtraMountRequest, Group } from '../store/index.js';
import type { UsageToday } from '../budget.js';

export interface GroupSettingsView {
  name: string;
  folder: string;
  jid: string;
  /** The model the group's calls use now: its own, or the configured default. */
  model: string;
  /** True when {@link model} is the configured default (the group has none of its own). */
  modelIsDefault: boolean;
  /** Anthropic's server-side web search. */
  webSearch: boolean;
  /** Anthropic's server-side web fetch. */
  webFetch: boolean;
  /** Whether the group's container gets a network (`--network none` otherwise). */
  network: boolean;
  /** Caps per local day; null for none. */
  dailyBudget: { tokens: number | null; usd: number | null };
  /** Host folders the group asks to see; each is checked against the allowlist at every run. */
  extraMounts: ExtraMountRequest[];
  /** Tokens used today (local day) and their estimated cost (`groups show`). */
  usageToday?: UsageToday;
}

/** The answer to `groups.set`: the settings as they now are, and what the change means. */
export interface GroupSettingsChangeView {
  settings: GroupSettingsView;
  /** What the change means, for the person who made it: risks it opens, and when it applies. */
  notes: SettingsNote[];
}

export interface SettingsNote {
  /** `warning`: the change widens what the agent can reach. */
  level: 'warning' | 'note';
  text: string;
}

export function groupSettingsView(group: Group, defaultModel: string): GroupSettingsView {
  return {
    name: group.name,
    folder: group.folder,
    jid: group.jid,
    model: group.model ?? defaultModel,
    modelIsDefault: group.model === null,
    webSearch: group.webSearch,
    webFetch: group.webFetch,
    network: group.networkAllowed,
    dailyBudget: { ...group.dailyBudget },
    extraMounts: group.extraMounts.map((mount) => ({ ...mount })),
  };
}

/** Why web fetch is off unless a group needs it. */
export const WEB_FETCH_WARNING =
  'web fetch is off by default: an agent that reads a prompt-injected message or page can be made to put your data into a URL it fetches. Keep it on only for groups whose chats and files you trust.';

/** What a network means for the container. */
export const NETWORK_WARNING =
  "the group's container now gets a network: its agent (and any command it runs) can reach the internet and your local network. It applies from the group's next container.";

/** The notes for a change: warnings for what widens the agent's reach, and when it applies. */
export function settingsNotes(input: GroupSettingsInput): SettingsNote[] {
  const notes: SettingsNote[] = [];
  if (input.webFetch === true) notes.push({ level: 'warning', text: WEB_FETCH_WARNING });
  if (input.networkAllowed === true) notes.push({ level: 'warning', text: NETWORK_WARNING });
  if (input.networkAllowed === false) {
    notes.push({
      level: 'note',
      text: "the network is off from the group's next container; a running one keeps its own until it stops",
    });
  }
  return notes;
}

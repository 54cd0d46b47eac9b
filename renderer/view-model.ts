/**
 * What the panels show, computed from the API's answers: plain functions with no DOM, so they
 * are unit-tested without a browser (test/unit/renderer-view-model.test.ts).
 */
import type {
  ApiKeyView,
  ChannelState,
  CoreStatus,
  GroupView,
  TaskView,
} from '../preload/ipc-contract.js';

/** A group's state chip in the Groups panel. */
export type GroupChip = 'idle' | 'queued' | 'running' | 'paused' | 'error';

/** The part of the queue's snapshot that says what each group is doing. */
export type QueueView = CoreStatus['queue'];

/**
 * The chip for one group. Paused wins (nothing runs until it is resumed); then a failure that
 * is not yet behind it (a retry waits, or the last run gave up); then running, then waiting.
 * A warm container with nothing to do is idle.
 */
export function groupChip(
  group: Pick<GroupView, 'jid' | 'paused'>,
  queue: QueueView | null,
  failing: ReadonlySet<string>,
): GroupChip {
  if (group.paused) return 'paused';
  if (failing.has(group.jid) || queue?.retrying.includes(group.jid)) return 'error';
  const run = queue?.running.find((r) => r.groupJid === group.jid);
  if (run && !run.idle) return 'running';
  if (queue?.waiting.includes(group.jid) || queue?.waitingForSetup.includes(group.jid))
    return 'queued';
  return 'idle';
}

/** Whether a group has a run that Stop would end (a busy run, or a failed run due a retry). */
export function canStop(chip: GroupChip): boolean {
  return chip === 'running' || chip === 'error' || chip === 'queued';
}

const wholeNumber = new Intl.NumberFormat('en-US');

/** `12,345 tokens`. */
export function formatTokens(tokens: number): string {
  return `${wholeNumber.format(tokens)} ${tokens === 1 ? 'token' : 'tokens'}`;
}

/** `$1.50`; small amounts keep four decimals (`$0.0042`) so a cheap day does not read as zero. */
export function formatUsd(usd: number): string {
  if (usd > 0 && usd < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

/**
 * Today's usage against the group's daily budget, in one line:
 * `1,200 tokens · $0.01 today of 200,000 tokens`. The cost is "unknown" when some usage was
 * made with a model the price table lacks.
 */
export function usageLine(group: Pick<GroupView, 'usageToday' | 'dailyBudget'>): string {
  const usage = group.usageToday;
  const used = usage
    ? `${formatTokens(usage.tokens)} · ${usage.costUsd === null ? `at least ${formatUsd(usage.knownCostUsd)}` : formatUsd(usage.costUsd)} today`
    : 'no usage recorded today';
  const caps: string[] = [];
  if (group.dailyBudget?.tokens != null) caps.push(formatTokens(group.dailyBudget.tokens));
  if (group.dailyBudget?.usd != null) caps.push(formatUsd(group.dailyBudget.usd));
  return caps.length > 0 ? `${used} of ${caps.join(' or ')}` : `${used} (no daily budget)`;
}

/** A time in the viewer's own time zone, as `Nov 25, 2026, 8:00 AM`; `—` for none. */
export function formatLocalTime(
  time: string | number | null | undefined,
  locale?: string,
  timeZone?: string,
): string {
  if (time === null || time === undefined) return '—';
  const date = new Date(time);
  if (Number.isNaN(date.getTime())) return '—';
  return new Intl.DateTimeFormat(locale, {
    dateStyle: 'medium',
    timeStyle: 'short',
    ...(timeZone ? { timeZone } : {}),
  }).format(date);
}

/** The Connection panel's headline for a WhatsApp state. */
export function describeChannelState(state: ChannelState | null): string {
  if (state === null) return 'WhatsApp is not set up in this Clawbar.';
  switch (state.state) {
    case 'connecting':
      return 'Connecting to WhatsApp…';
    case 'qr':
      return 'Scan this QR code in WhatsApp: Settings → Linked devices → Link a device.';
    case 'pairing-code':
      return `Type this code in WhatsApp (Linked devices → Link with phone number): ${state.code}`;
    case 'open':
      return 'Connected to WhatsApp.';
    case 'closed':
      return `Disconnected: ${state.reason}.${state.retrying ? ' Reconnecting by itself.' : ''}`;
    case 'needs-pairing':
      return `Needs pairing: ${state.reason}.`;
    default: {
      const never: never = state;
      return `Unknown state ${JSON.stringify(never)}`;
    }
  }
}

/** The Schedules panel's "last result" for a task. */
export function lastResult(task: Pick<TaskView, 'lastRun' | 'lastStatus' | 'lastError'>): string {
  if (task.lastStatus === null) return 'not run yet';
  const when = formatLocalTime(task.lastRun);
  if (task.lastError) return `${task.lastStatus} at ${when}: ${task.lastError}`;
  return `${task.lastStatus} at ${when}`;
}

/** Which schedule field the create form filled: exactly one of cron, every, at. */
export type ScheduleKind = 'cron' | 'every' | 'at';

/**
 * An error as a person reads it: Electron prefixes the main process's message with "Error
 * invoking remote method '…': ", which says nothing to a user.
 */
export function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(
    /^Error invoking remote method '[^']*': (Error: )?/,
    '',
  );
}

/**
 * Runs `task` when asked, at most one at a time: a request while it runs makes one more run
 * after it (not one per request), so a burst of live events costs two fetches, not twenty.
 */
export function coalesce(
  task: () => Promise<void>,
  onError: (err: unknown) => void,
): () => Promise<void> {
  let running: Promise<void> | null = null;
  let again = false;
  const run = async (): Promise<void> => {
    do {
      again = false;
      try {
        await task();
      } catch (err) {
        onError(err);
      }
    } while (again);
    running = null;
  };
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = run();
    return running;
  };
}

/** The window's panels, in tab order; a route names one of them. */
export const PANEL_IDS = [
  'connection',
  'groups',
  'schedules',
  'activity',
  'chat',
  'settings',
] as const;
export type PanelId = (typeof PANEL_IDS)[number];

/** Where the window is asked to go: a panel, and in Schedules perhaps one task. */
export interface Route {
  panel: PanelId;
  taskId?: string;
}

/** What a task id may look like in a route: the store's ids, and nothing a selector could abuse. */
const ROUTE_TASK_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Reads a route from the shell's `window:navigate` event, the URL's hash or `?panel=`:
 * `groups` (a panel's id) or `tasks/<id>` (that task, in Schedules). Anything else is null,
 * and the window stays where it is.
 */
export function parseRoute(text: string | null | undefined): Route | null {
  if (!text) return null;
  let route: string;
  try {
    route = decodeURIComponent(text.replace(/^[#/]+/, ''));
  } catch {
    return null;
  }
  const task = /^tasks\/(.+)$/.exec(route);
  if (task) return ROUTE_TASK_ID.test(task[1]!) ? { panel: 'schedules', taskId: task[1]! } : null;
  return (PANEL_IDS as readonly string[]).includes(route) ? { panel: route as PanelId } : null;
}

/** The Settings panel's line about the API key: where it comes from, and what to do. */
export function apiKeyText(view: ApiKeyView): string {
  const restart = view.app === 'serve' ? 'restart `clawbar serve`' : 'restart Clawbar';
  switch (view.source) {
    case 'environment':
      return `From ANTHROPIC_API_KEY in the environment; change it there and ${restart}.`;
    case 'saved':
      return view.protection === 'weak'
        ? 'Saved and in use, but with weak protection: this system has no keyring (install and unlock one, such as GNOME Keyring or KWallet, then save the key again).'
        : 'Saved, encrypted by the system keyring, and in use.';
    case 'unreadable':
      return 'A key is saved, but this system cannot decrypt it (another user or keyring): enter it again.';
    case 'none':
      if (view.app === 'serve')
        return 'No key: set ANTHROPIC_API_KEY in the environment of `clawbar serve` and restart it.';
      if (view.protection === 'unavailable')
        return `No key, and no keyring to keep one in: set ANTHROPIC_API_KEY in the environment and ${restart}.`;
      return 'No key yet: agents cannot answer until you add one (create one at console.anthropic.com).';
    default: {
      const never: never = view.source;
      return `Unknown key source ${JSON.stringify(never)}`;
    }
  }
}

/**
 * The window's status line: ready with the queue, or what holds the agents, each problem with
 * its fix, and an image build with its latest progress (the first start takes minutes).
 */
export function statusText(status: Pick<CoreStatus, 'setup' | 'queue'>): string {
  if (!status.setup.ready) {
    const problems = status.setup.problems.map((p) => {
      if (p.fix) return `${p.message}: ${p.fix}`;
      return p.progress ? `${p.message} (${p.progress})` : p.message;
    });
    const onlyBuilding = status.setup.problems.every((p) => p.kind === 'image-building');
    return onlyBuilding
      ? `Getting ready: ${problems.join('. ')}. Messages wait and are answered after.`
      : `Agents cannot run yet. ${problems.join('. ')}`;
  }
  const running = status.queue.running.filter((run) => !run.idle).length;
  return `Ready. ${running} running, ${status.queue.waiting.length} waiting.`;
}

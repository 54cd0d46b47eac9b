/**
 * `clawbar groups set` and `clawbar groups show`: a group's agent settings (model, web search,
 * web fetch, network, daily budget). The core checks what each value means (group-admin.ts);
 * this parses what the user typed and says how to fix a typo.
 *
 * Loaded with the command list, so only light and type-only imports (see the note in index.ts).
 */
import type { CommandSpec, ParsedArgs } from './args.js';
import { withControl } from './control.js';
import { CliError, type Output } from './output.js';
import type {
  GroupSettingsChangeView,
  GroupSettingsView,
} from '../core/control/group-settings-view.js';
import type { ControlParams } from '../core/control/protocol.js';
import { formatUsageToday } from '../core/budget.js';

/** `on` or `off`, as the switches take them. */
export function parseSwitch(raw: string | undefined, option: string): boolean | undefined {
  if (raw === undefined) return undefined;
  const value = raw.trim().toLowerCase();
  if (value === 'on') return true;
  if (value === 'off') return false;
  throw new CliError(`${option} takes on or off, not "${raw}"`);
}

/** A daily token budget: a whole number of at least 1, or `none` for no cap. */
export function parseTokenBudget(raw: string | undefined): number | null | undefined {
  if (raw === undefined) return undefined;
  const value = raw.trim().toLowerCase().replaceAll('_', '');
  if (value === 'none') return null;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new CliError(
      `--budget-tokens takes a whole number of tokens per day (like 200000) or none, not "${raw}"`,
    );
  }
  return Number(value);
}

/** A daily budget in US dollars: a positive amount (`2`, `0.50`, `$5`), or `none` for no cap. */
export function parseUsdBudget(raw: string | undefined): number | null | undefined {
  if (raw === undefined) return undefined;
  const value = raw.trim().toLowerCase().replace(/^\$/, '');
  if (value === 'none') return null;
  if (!/^\d+(\.\d+)?$/.test(value) || Number(value) <= 0) {
    throw new CliError(
      `--budget-usd takes an amount in US dollars per day above 0 (like 2 or 0.50) or none, not "${raw}"`,
    );
  }
  return Number(value);
}

/** The control request for `groups set`, from its parsed options. */
export function settingsRequest(args: ParsedArgs): ControlParams<'groups.set'> {
  const { values, positionals } = args;
  const model = values.model as string | undefined;
  if (model !== undefined && values['default-model']) {
    throw new CliError('--model and --default-model contradict each other; give one');
  }
  if (model !== undefined && model.trim() === '') {
    throw new CliError('--model needs a model id, like claude-sonnet-4-6');
  }
  const webSearch = parseSwitch(values['web-search'] as string | undefined, '--web-search');
  const webFetch = parseSwitch(values['web-fetch'] as string | undefined, '--web-fetch');
  const network = parseSwitch(values.network as string | undefined, '--network');
  const budgetTokens = parseTokenBudget(values['budget-tokens'] as string | undefined);
  const budgetUsd = parseUsdBudget(values['budget-usd'] as string | undefined);
  const request: ControlParams<'groups.set'> = {
    group: positionals[0] as string,
    ...(model !== undefined ? { model: model.trim() } : {}),
    ...(values['default-model'] ? { model: null } : {}),
    ...(webSearch !== undefined ? { webSearch } : {}),
    ...(webFetch !== undefined ? { webFetch } : {}),
    ...(network !== undefined ? { networkAllowed: network } : {}),
    ...(budgetTokens !== undefined ? { budgetTokens } : {}),
    ...(budgetUsd !== undefined ? { budgetUsd } : {}),
  };
  if (Object.keys(request).length === 1) {
    throw new CliError(
      'nothing to change: give at least one setting, like --web-fetch on (see `clawbar groups set --help`); `clawbar groups show G` shows them',
    );
  }
  return request;
}

const onOff = (on: boolean): string => (on ? 'on' : 'off');

/** `groups show`: one line per setting, labels aligned. */
export function settingsText(view: GroupSettingsView): string {
  const { tokens, usd } = view.dailyBudget;
  const budget =
    tokens === null && usd === null
      ? 'none'
      : [
          tokens === null ? null : `${tokens.toLocaleString('en-US')} tokens`,
          usd === null ? null : `$${usd.toFixed(2)}`,
        ]
          .filter(Boolean)
          .join(', ') + ' per day';
  const mounts =
    view.extraMounts.length === 0
      ? ['none']
      : view.extraMounts.map(
          (m) =>
            `${m.hostPath}${m.containerPath ? ` -> /workspace/extra/${m.containerPath}` : ''}` +
            (m.readonly === false ? ' (asks for write access)' : ' (read-only)'),
        );
  const rows: Array<[string, string]> = [
    ['model', `${view.model}${view.modelIsDefault ? ' (the default)' : ''}`],
    ['web search', onOff(view.webSearch)],
    ['web fetch', onOff(view.webFetch)],
    ['network', view.network ? 'on (the container has a network)' : 'off (--network none)'],
    ['daily budget', budget],
    ...(view.usageToday ? [['today', formatUsageToday(view.usageToday)] as [string, string]] : []),
    ['extra mounts', mounts[0] ?? 'none'],
    ...mounts.slice(1).map((line): [string, string] => ['', line]),
  ];
  return [
    `${view.name} (folder ${view.folder}, jid ${view.jid})`,
    ...rows.map(([label, value]) => `  ${`${label}${label ? ':' : ''}`.padEnd(14)}${value}`),
  ].join('\n');
}

/** `groups set` and `groups show`, for the command list in index.ts. */
export function groupSettingsCommands(out: Output): CommandSpec[] {
  return [
    {
      name: 'groups show',
      synopsis: 'G',
      summary: "a group's settings: model, web tools, network, budget",
      details: "G is the group's name, folder or jid.",
      options: {},
      positionals: { min: 1, max: 1 },
      async run({ positionals }) {
        const view = (await withControl((c) =>
          c.request('groups.show', { group: positionals[0] as string }),
        )) as GroupSettingsView;
        out.print(view, () => settingsText(view));
      },
    },
    {
      name: 'groups set',
      synopsis:
        'G [--model M|--default-model] [--web-search on|off] [--web-fetch on|off] [--network on|off] [--budget-tokens N|none] [--budget-usd X|none]',
      summary: "change a group's model, web tools, network or daily budget",
      details: [
        "G is the group's name, folder or jid. Settings not given stay as they are.",
        'The model and web tools apply from the next model call; the network from the next',
        'container. Web search is on by default. Web fetch is off by default: a prompt-injected',
        'agent can put your data into a URL it fetches. Without --network on, the container has',
        'no network at all; Anthropic runs web search and fetch, never the container.',
      ].join('\n'),
      options: {
        model: { type: 'string', value: 'M', help: 'the model id, like claude-sonnet-4-6' },
        'default-model': {
          type: 'boolean',
          help: 'use the configured model (CLAWBAR_MODEL) again',
        },
        'web-search': { type: 'string', value: 'on|off', help: "Anthropic's web search" },
        'web-fetch': { type: 'string', value: 'on|off', help: "Anthropic's web fetch" },
        network: { type: 'string', value: 'on|off', help: 'give the container a network' },
        'budget-tokens': {
          type: 'string',
          value: 'N|none',
          help: 'a cap on the tokens the group uses per day, or none',
        },
        'budget-usd': {
          type: 'string',
          value: 'X|none',
          help: 'a cap on the estimated US dollars per day, or none',
        },
      },
      positionals: { min: 1, max: 1 },
      async run(args) {
        const request = settingsRequest(args);
        const result = (await withControl((c) =>
          c.request('groups.set', request),
        )) as GroupSettingsChangeView;
        out.print(result, () =>
          [
            settingsText(result.settings),
            ...result.notes.map((note) => `${note.level}: ${note.text}`),
          ].join('\n'),
        );
      },
    },
  ];
}

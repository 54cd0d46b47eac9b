/**
 * `clawbar groups set` and `clawbar groups show` as a user runs them, with `serve` not running:
 * a group's model, web search, web fetch, network and daily budget. Bad values get an error that
 * says how to fix them and change nothing; turning web fetch or the network on says what it
 * opens; `groups list` shows the network. No Docker needed.
 */
import { describe, expect, it } from 'vitest';
import type {
  GroupSettingsChangeView,
  GroupSettingsView,
} from '../../main/core/control/group-settings-view.js';
import { clawbarIn, okIn, useOfflineHome } from '../helpers/offline-cli.js';

const homeOf = useOfflineHome();
const clawbar = (args: string[]) => clawbarIn(homeOf(), args);
const ok = (args: string[]) => okIn(homeOf(), args);
const json = async <T>(args: string[]): Promise<T> =>
  JSON.parse(await ok([...args, '--json'])) as T;

describe('clawbar groups set and show', () => {
  it('shows the defaults, changes each setting, and shows the change', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    expect(await ok(['groups', 'show', 'family'])).toBe(
      [
        'Family (folder family, jid local:family)',
        '  model:        claude-sonnet-4-6 (the default)',
        '  web search:   on',
        '  web fetch:    off',
        '  network:      off (--network none)',
        '  daily budget: none',
        '  today:        no tokens',
        '  extra mounts: none',
        '',
      ].join('\n'),
    );

    const changed = await ok([
      'groups',
      'set',
      'Family',
      '--model',
      'claude-haiku-4-5',
      '--web-search',
      'off',
      '--budget-tokens',
      '200000',
      '--budget-usd',
      '$2.50',
    ]);
    expect(changed).toContain('  model:        claude-haiku-4-5\n');
    expect(changed).toContain('  web search:   off\n');
    expect(changed).toContain('  daily budget: 200,000 tokens, $2.50 per day\n');
    expect(changed).not.toContain('warning:');

    const view = await json<GroupSettingsView>(['groups', 'show', 'Family']);
    expect(view).toEqual({
      name: 'Family',
      folder: 'family',
      jid: 'local:family',
      model: 'claude-haiku-4-5',
      modelIsDefault: false,
      webSearch: false,
      webFetch: false,
      network: false,
      dailyBudget: { tokens: 200_000, usd: 2.5 },
      extraMounts: [],
      usageToday: expect.objectContaining({ tokens: 0, calls: 0, costUsd: 0 }),
    });

    await ok(['groups', 'set', 'Family', '--default-model', '--budget-tokens', 'none']);
    expect(await json<GroupSettingsView>(['groups', 'show', 'Family'])).toMatchObject({
      model: 'claude-sonnet-4-6',
      modelIsDefault: true,
      dailyBudget: { tokens: null, usd: 2.5 },
    });
  });

  it('warns what web fetch and a network open, and groups list shows them', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    expect(await ok(['groups', 'list'])).toContain('(network: off, today: no tokens)');

    const fetchOn = await ok(['groups', 'set', 'Family', '--web-fetch', 'on']);
    expect(fetchOn).toContain('  web fetch:    on\n');
    expect(fetchOn).toMatch(/^warning: web fetch is off by default: .*put your data into a URL/m);

    const result = await json<GroupSettingsChangeView>([
      'groups',
      'set',
      'Family',
      '--network',
      'on',
    ]);
    expect(result.settings.network).toBe(true);
    expect(result.notes).toEqual([
      { level: 'warning', text: expect.stringMatching(/can reach the internet/) as string },
    ]);
    expect(await ok(['groups', 'list'])).toContain(
      '(network: on, web fetch: on, today: no tokens)',
    );
  });

  it.each([
    [
      ['--model', 'gpt-4o'],
      '"gpt-4o" is not a model name: give an Anthropic model id such as claude-sonnet-4-6',
    ],
    [
      ['--model', 'claude-x', '--default-model'],
      '--model and --default-model contradict each other',
    ],
    [['--web-fetch', 'yes'], '--web-fetch takes on or off, not "yes"'],
    [['--budget-tokens=-5'], '--budget-tokens takes a whole number of tokens per day'],
    [['--budget-tokens', '1.5'], '--budget-tokens takes a whole number of tokens per day'],
    [['--budget-usd', 'lots'], '--budget-usd takes an amount in US dollars per day above 0'],
    [['--budget-usd', '0'], '--budget-usd takes an amount in US dollars per day above 0'],
    [[], 'nothing to change: give at least one setting'],
  ])('refuses groups set %j with a clear error and changes nothing', async (options, message) => {
    await ok(['groups', 'add', '--name', 'Family']);
    const before = await ok(['groups', 'show', 'Family', '--json']);
    // A valid change given alongside a bad one is not made either.
    const valid = options.length === 0 ? [] : ['--web-fetch', 'on'];
    const run = await clawbar(['groups', 'set', 'Family', ...valid, ...options]);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(message);
    expect(await ok(['groups', 'show', 'Family', '--json'])).toBe(before);
  });

  it('refuses an unknown group', async () => {
    const run = await clawbar(['groups', 'show', 'nope']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('no group named "nope"');
  });
});

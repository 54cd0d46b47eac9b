/**
 * A group's agent settings through GroupAdmin.updateSettings (`clawbar groups set`): every
 * value is checked before anything changes, the budget's two caps change independently, and
 * the view and notes say what the settings are and what a change opens.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../main/core/config.js';
import { groupSettingsView, settingsNotes } from '../../main/core/control/group-settings-view.js';
import { CoreInputError } from '../../main/core/errors.js';
import { GroupAdmin } from '../../main/core/group-admin.js';
import { DEFAULT_GROUP_SETTINGS, openStore, type Store } from '../../main/core/store/index.js';

describe('GroupAdmin.updateSettings', () => {
  let home: string;
  let store: Store;
  let admin: GroupAdmin;

  beforeEach(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-settings-'));
    const config = loadConfig({ CLAWBAR_HOME: home }, () => undefined);
    store = openStore(config.dbPath);
    admin = new GroupAdmin({ store, config, now: () => 0 });
    admin.ensureLayout();
    admin.add({ name: 'Family' });
  });

  afterEach(() => {
    store.close();
    fs.rmSync(home, { recursive: true, force: true });
  });

  const stored = () => store.findGroup('Family');

  it('starts from the defaults: search on, fetch and network off, no model, no budget', () => {
    expect(stored()).toMatchObject({ ...DEFAULT_GROUP_SETTINGS, networkAllowed: false });
  });

  it('changes what it is given and keeps the rest', () => {
    const updated = admin.updateSettings('family', {
      model: ' claude-haiku-4-5 ',
      webFetch: true,
      networkAllowed: true,
      budgetTokens: 200_000,
    });
    expect(updated).toMatchObject({
      model: 'claude-haiku-4-5',
      webSearch: true,
      webFetch: true,
      networkAllowed: true,
      dailyBudget: { tokens: 200_000, usd: null },
    });
    expect(stored()).toEqual(updated);

    admin.updateSettings('Family', { budgetUsd: 1.5, webSearch: false });
    expect(stored()).toMatchObject({
      model: 'claude-haiku-4-5',
      webSearch: false,
      dailyBudget: { tokens: 200_000, usd: 1.5 },
    });
    admin.updateSettings('Family', { model: null, budgetTokens: null });
    expect(stored()).toMatchObject({ model: null, dailyBudget: { tokens: null, usd: 1.5 } });
  });

  it.each([
    [{ model: 'gpt-4o' }, /"gpt-4o" is not a model name/],
    [{ model: '' }, /is not a model name/],
    [{ budgetTokens: 0 }, /a daily token budget must be a whole number from 1/],
    [{ budgetTokens: 1.5 }, /a daily token budget must be a whole number from 1/],
    [{ budgetTokens: 1e12 }, /a daily token budget must be a whole number from 1/],
    [{ budgetUsd: -1 }, /a daily budget in USD must be above 0/],
    [{ budgetUsd: Number.NaN }, /a daily budget in USD must be above 0/],
  ])('refuses %j with a clear error and changes nothing', (input, message) => {
    const before = stored();
    // Valid changes given alongside are not applied either.
    expect(() => admin.updateSettings('Family', { webFetch: true, ...input })).toThrow(
      CoreInputError,
    );
    expect(() => admin.updateSettings('Family', { webFetch: true, ...input })).toThrow(message);
    expect(stored()).toEqual(before);
  });

  it('refuses an unknown group', () => {
    expect(() => admin.updateSettings('nope', { webFetch: true })).toThrow(/no group named "nope"/);
  });

  it('shows the default model by name, and warns when fetch or the network is turned on', () => {
    const group = admin.updateSettings('Family', { webFetch: true });
    expect(groupSettingsView(group, 'claude-sonnet-4-6')).toMatchObject({
      model: 'claude-sonnet-4-6',
      modelIsDefault: true,
      webSearch: true,
      webFetch: true,
      network: false,
    });
    expect(settingsNotes({ webFetch: true }).map((n) => n.level)).toEqual(['warning']);
    expect(settingsNotes({ webFetch: true })[0]?.text).toMatch(/put your data into a URL/);
    expect(settingsNotes({ networkAllowed: true })[0]?.text).toMatch(/can reach the internet/);
    expect(settingsNotes({ webFetch: false, webSearch: true })).toEqual([]);
  });
});

/**
 * `clawbar groups senders` as a user runs it, with `serve` not running: it shows and changes
 * who may wake the assistant in a group, checks what it is given, and `groups list` shows the
 * policy. Then a stored message shows the policy at work. No Docker needed.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { clawbarIn, okIn, useOfflineHome } from '../helpers/offline-cli.js';

const homeOf = useOfflineHome();
const clawbar = (args: string[]) => clawbarIn(homeOf(), args);
const ok = (args: string[]) => okIn(homeOf(), args);

/** The stored allowlist column, straight from the database. */
function storedPolicy(folder: string): string | null {
  const db = new Database(path.join(homeOf(), 'clawbar.db'), { readonly: true });
  try {
    const row = db.prepare('SELECT allowed_senders FROM groups WHERE folder = ?').get(folder) as {
      allowed_senders: string | null;
    };
    return row.allowed_senders;
  } finally {
    db.close();
  }
}

const TEAM_JID = '120363012345678901@g.us';

describe('clawbar groups senders', () => {
  it('shows, allows (repeated and comma-separated), denies and drops the list of a WhatsApp group', async () => {
    await ok(['groups', 'add', '--name', 'Team', '--jid', TEAM_JID]);
    expect(await ok(['groups', 'senders', 'team'])).toBe(
      'Team: anyone in the chat may wake the assistant\n',
    );

    const allowed = await ok([
      'groups',
      'senders',
      'Team',
      '--allow',
      '+1 555 123 4567',
      '--allow',
      '4915123456789:3@s.whatsapp.net, +44 20 7946 0958',
    ]);
    expect(allowed).toBe(
      [
        'Team: only these senders may wake the assistant (and you, from your own phone):',
        '  15551234567@s.whatsapp.net',
        '  4915123456789@s.whatsapp.net',
        '  442079460958@s.whatsapp.net',
        '',
      ].join('\n'),
    );
    expect(JSON.parse(storedPolicy('team') ?? 'null')).toEqual([
      '15551234567@s.whatsapp.net',
      '4915123456789@s.whatsapp.net',
      '442079460958@s.whatsapp.net',
    ]);
    expect(await ok(['groups', 'list'])).toContain(
      '(senders: 3 allowed, network: off, today: no tokens)',
    );

    const denied = JSON.parse(
      await ok(['groups', 'senders', TEAM_JID, '--deny', '+49 151 23456789', '--json']),
    ) as unknown;
    expect(denied).toEqual({
      group: expect.objectContaining({
        name: 'Team',
        allowedSenders: ['15551234567@s.whatsapp.net', '442079460958@s.whatsapp.net'],
      }),
      allowedSenders: ['15551234567@s.whatsapp.net', '442079460958@s.whatsapp.net'],
    });

    expect(await ok(['groups', 'senders', 'team', '--everyone'])).toBe(
      'Team: anyone in the chat may wake the assistant\n',
    );
    expect(storedPolicy('team')).toBeNull();
    const listed = JSON.parse(await ok(['groups', 'list', '--json'])) as Array<object>;
    expect(listed[0]).not.toHaveProperty('allowedSenders');
    expect(await ok(['groups', 'list'])).not.toContain('senders:');
  });

  it('refuses what is neither a phone number nor a jid, and changes nothing', async () => {
    await ok(['groups', 'add', '--name', 'Team', '--jid', TEAM_JID]);
    await ok(['groups', 'senders', 'team', '--allow', '+15551234567']);

    const bad = await clawbar(['groups', 'senders', 'team', '--allow', '+4915123456789,alice']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      '"alice" is neither a phone number (like +1 555 123 4567) nor a WhatsApp jid (like 15551234567@s.whatsapp.net)',
    );
    const group = await clawbar(['groups', 'senders', 'team', '--allow', TEAM_JID]);
    expect(group.code).toBe(1);
    expect(group.stderr).toContain("is a group's jid, not a person's");
    const missing = await clawbar(['groups', 'senders', 'team', '--deny', '+447700900123']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('447700900123@s.whatsapp.net is not on the list of Team');
    const both = await clawbar([
      'groups',
      'senders',
      'team',
      '--everyone',
      '--allow',
      '+15551234567',
    ]);
    expect(both.code).toBe(2); // a usage error, caught before the database is opened
    expect(both.stderr).toContain('--everyone drops the whole list');
    expect(JSON.parse(storedPolicy('team') ?? 'null')).toEqual(['15551234567@s.whatsapp.net']);

    const unknown = await clawbar(['groups', 'senders', 'ghost']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no group named "ghost"');
    const bare = await clawbar(['groups', 'senders']);
    expect(bare.code).not.toBe(0);
    expect(bare.stderr).toContain('usage: clawbar groups senders G');
  });

  it('in a local-chat group takes --from names: a stranger is stored but not asked for', async () => {
    await ok(['groups', 'add', '--name', 'Family']);
    expect(await ok(['groups', 'senders', 'family', '--allow', 'Alice'])).toBe(
      'Family: only these senders may wake the assistant:\n  Alice\n',
    );

    const stranger = await ok(['send', '--group', 'family', '--from', 'Bob', '@Andy hi']);
    expect(stranger).toBe(
      'stored; Bob may not wake the assistant in this group (see `clawbar groups senders`)\n',
    );
    const allowed = await ok(['send', '--group', 'family', '--from', 'alice', '@Andy hi']);
    expect(allowed).toBe(
      'stored; `clawbar serve` is not running, so it will be answered when it starts\n',
    );

    expect(await ok(['groups', 'senders', 'family', '--deny', 'ALICE'])).toBe(
      'Family: no one may wake the assistant\n',
    );
  });

  it('has help that says what a sender is', async () => {
    const help = await ok(['groups', 'senders', '--help']);
    expect(help).toContain(
      'Usage: clawbar groups senders G [--allow S]... [--deny S]... [--everyone]',
    );
    expect(help).toContain('phone number with its country code');
    expect(await ok(['groups', '--help'])).toContain('groups senders');
  });
});

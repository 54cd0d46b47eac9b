import { describe, expect, it } from 'vitest';
import { formatOutbound, isTriggerMessage, triggerPattern } from '../../main/core/router.js';
import {
  DEFAULT_GROUP_SETTINGS,
  type Group,
  type StoredMessage,
} from '../../main/core/store/index.js';

const group = (over: Partial<Group> = {}): Group => ({
  jid: 'local:family',
  folder: 'family',
  name: 'Family',
  trigger: '@Andy',
  requiresTrigger: true,
  isMain: false,
  paused: false,
  networkAllowed: false,
  allowedSenders: null,
  ...DEFAULT_GROUP_SETTINGS,
  createdAt: 0,
  ...over,
});

const message = (text: string, over: Partial<StoredMessage> = {}): StoredMessage => ({
  seq: 1,
  chatJid: 'local:family',
  id: 'm1',
  sender: 'local:alice',
  senderName: 'Alice',
  text,
  timestamp: Date.UTC(2026, 10, 24, 9, 30),
  fromMe: false,
  fromBot: false,
  quotedId: null,
  mediaRef: null,
  turnId: null,
  ...over,
});

describe('trigger rules', () => {
  it.each(['@Andy hello', '@andy hello', '  @ANDY, what time is it?', '@Andy'])(
    'wakes on %j',
    (text) => {
      expect(isTriggerMessage(group(), message(text))).toBe(true);
    },
  );

  it.each(['hello @Andy', '@Andyroo hi', '@Andy_bot hi', 'Andy hello', '@Andé hi', ''])(
    'stays asleep on %j',
    (text) => {
      expect(isTriggerMessage(group(), message(text))).toBe(false);
    },
  );

  it('treats regex characters in the trigger literally', () => {
    expect(triggerPattern('@a.b').test('@axb hi')).toBe(false);
    expect(triggerPattern('@a.b').test('@a.b hi')).toBe(true);
  });

  it('main groups and no-trigger groups take every message', () => {
    expect(isTriggerMessage(group({ isMain: true }), message('just chatting'))).toBe(true);
    expect(isTriggerMessage(group({ requiresTrigger: false }), message('just chatting'))).toBe(
      true,
    );
  });

  it("never answers the assistant's own messages, even in main", () => {
    expect(isTriggerMessage(group({ isMain: true }), message('@Andy hi', { fromBot: true }))).toBe(
      false,
    );
  });
});

describe('outbound formatting', () => {
  it('strips internal reasoning blocks, including multi-line and unclosed ones', () => {
    expect(formatOutbound('<internal>thinking\nhard</internal>Hello!')).toBe('Hello!');
    expect(formatOutbound('Hi <INTERNAL>x</INTERNAL>there')).toBe('Hi there');
    expect(formatOutbound('Answer.<internal>never closed')).toBe('Answer.');
  });

  it('returns null when nothing is left to send', () => {
    expect(formatOutbound('<internal>only thoughts</internal>  ')).toBeNull();
    expect(formatOutbound('   ')).toBeNull();
  });
});

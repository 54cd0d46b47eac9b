import { proto, type WAMessage } from '@whiskeysockets/baileys';
import { describe, expect, it } from 'vitest';
import {
  normalizeInbound,
  type InboundContext,
  type NormalizedInbound,
  type NormalizeResult,
} from '../../main/core/channels/whatsapp/inbound.js';

const SELF_PN = '15550000001@s.whatsapp.net';
const SELF_LID = '88880000001@lid';
const ALICE = '15550000002@s.whatsapp.net';
const ALICE_LID = '77770000002@lid';
const GROUP = '120363000000000001@g.us';

const LID_BOOK: Record<string, string> = { [ALICE_LID]: ALICE };

function context(overrides: Partial<InboundContext> = {}): InboundContext {
  return {
    self: { pn: '15550000001:7@s.whatsapp.net', lid: '88880000001:7@lid' },
    assistantName: 'Andy',
    mentionTrigger: () => '@Andy',
    lidToPn: async (lid) => LID_BOOK[lid.replace(/:\d+@/, '@')] ?? null,
    now: () => 42,
    ...overrides,
  };
}

/** A message as Baileys hands it over: a real proto object, plus the `*Alt` key fields. */
function wa(
  object: Record<string, unknown>,
  alt: { remoteJidAlt?: string; participantAlt?: string } = {},
): WAMessage {
  const message = proto.WebMessageInfo.fromObject({
    messageTimestamp: 1_700_000_000,
    pushName: 'Alice',
    ...object,
  }) as WAMessage;
  Object.assign(message.key, alt);
  return message;
}

function dm(message: Record<string, unknown>, key: Record<string, unknown> = {}): WAMessage {
  return wa({ key: { remoteJid: ALICE, id: 'M1', fromMe: false, ...key }, message });
}

function inGroup(message: Record<string, unknown>, participant = ALICE): WAMessage {
  return wa({ key: { remoteJid: GROUP, id: 'G1', fromMe: false, participant }, message });
}

function expectMessage(result: NormalizeResult): NormalizedInbound {
  if (result.kind !== 'message') throw new Error(`expected a message, ignored: ${result.why}`);
  return result.message;
}

function expectIgnored(result: NormalizeResult, why: RegExp): void {
  expect(result.kind).toBe('ignored');
  if (result.kind === 'ignored') expect(result.why).toMatch(why);
}

describe('normalizing an inbound WhatsApp message', () => {
  it('takes a plain DM: chat, sender, name, text and time', async () => {
    const message = expectMessage(await normalizeInbound(dm({ conversation: 'hi' }), context()));
    expect(message).toMatchObject({
      chatJid: ALICE,
      isGroup: false,
      id: 'M1',
      sender: ALICE,
      senderName: 'Alice',
      text: 'hi',
      timestamp: 1_700_000_000_000,
      fromMe: false,
      fromBot: false,
      quotedId: null,
      media: null,
    });
  });

  it('takes extended text and a group sender', async () => {
    const message = expectMessage(
      await normalizeInbound(inGroup({ extendedTextMessage: { text: 'hello all' } }), context()),
    );
    expect(message).toMatchObject({
      chatJid: GROUP,
      isGroup: true,
      sender: ALICE,
      text: 'hello all',
    });
  });

  it.each([
    ['ephemeral', (m: object) => ({ ephemeralMessage: { message: m } })],
    ['view once', (m: object) => ({ viewOnceMessage: { message: m } })],
    ['view once v2', (m: object) => ({ viewOnceMessageV2: { message: m } })],
    ['view once v2 extension', (m: object) => ({ viewOnceMessageV2Extension: { message: m } })],
  ])('unwraps a %s message', async (_name, wrap) => {
    const message = expectMessage(
      await normalizeInbound(
        dm(wrap({ imageMessage: { caption: 'look', mimetype: 'image/jpeg', fileLength: 1234 } })),
        context(),
      ),
    );
    expect(message.text).toBe('look');
    expect(message.media).toEqual({
      kind: 'image',
      mimetype: 'image/jpeg',
      fileName: null,
      declaredBytes: 1234,
    });
  });

  it('unwraps a document with caption and keeps its declared name', async () => {
    const message = expectMessage(
      await normalizeInbound(
        dm({
          documentWithCaptionMessage: {
            message: {
              documentMessage: {
                caption: 'the report',
                fileName: '../../etc/passwd',
                mimetype: 'application/pdf',
              },
            },
          },
        }),
        context(),
      ),
    );
    expect(message.text).toBe('the report');
    expect(message.media).toMatchObject({ kind: 'document', fileName: '../../etc/passwd' });
  });

  it('takes a video caption', async () => {
    const message = expectMessage(
      await normalizeInbound(dm({ videoMessage: { caption: 'clip' } }), context()),
    );
    expect(message).toMatchObject({ text: 'clip', media: { kind: 'video' } });
  });

  it('tells a voice note from other audio, and keeps media that has no caption', async () => {
    const voice = expectMessage(
      await normalizeInbound(dm({ audioMessage: { ptt: true, mimetype: 'audio/ogg' } }), context()),
    );
    expect(voice).toMatchObject({ text: '', media: { kind: 'voice', mimetype: 'audio/ogg' } });
    const audio = expectMessage(await normalizeInbound(dm({ audioMessage: {} }), context()));
    expect(audio.media?.kind).toBe('audio');
    const sticker = expectMessage(await normalizeInbound(dm({ stickerMessage: {} }), context()));
    expect(sticker.media?.kind).toBe('sticker');
  });

  it('turns an edit into a new message that names the one it corrects', async () => {
    const edit = dm(
      {
        protocolMessage: {
          type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT,
          key: { remoteJid: ALICE, id: 'ORIGINAL', fromMe: false },
          editedMessage: { conversation: 'fixed typo' },
        },
      },
      { id: 'EDIT1' },
    );
    const message = expectMessage(await normalizeInbound(edit, context()));
    expect(message).toMatchObject({
      id: 'EDIT1',
      text: 'fixed typo',
      editOf: 'ORIGINAL',
      quotedId: 'ORIGINAL',
    });
  });

  it('unwraps an edit inside an editedMessage wrapper', async () => {
    const edit = dm({
      editedMessage: {
        message: {
          protocolMessage: {
            type: proto.Message.ProtocolMessage.Type.MESSAGE_EDIT,
            key: { id: 'ORIGINAL' },
            editedMessage: { extendedTextMessage: { text: 'new words' } },
          },
        },
      },
    });
    expect(expectMessage(await normalizeInbound(edit, context()))).toMatchObject({
      text: 'new words',
      editOf: 'ORIGINAL',
    });
  });

  it('keeps a quoted reply as context after the body, clipped', async () => {
    const long = 'x'.repeat(500);
    const message = expectMessage(
      await normalizeInbound(
        inGroup({
          extendedTextMessage: {
            text: '@Andy what about this?',
            contextInfo: {
              stanzaId: 'Q1',
              participant: '15550000003@s.whatsapp.net',
              quotedMessage: { conversation: long },
            },
          },
        }),
        context(),
      ),
    );
    const [body, quote] = message.text.split('\n');
    expect(body).toBe('@Andy what about this?');
    expect(quote).toMatch(/^\[replying to \+15550000003: "x+…"\]$/);
    expect(quote!.length).toBeLessThan(260);
    expect(message.quotedId).toBe('Q1');
  });

  it('names the assistant when a reply quotes one of its messages', async () => {
    const message = expectMessage(
      await normalizeInbound(
        dm({
          extendedTextMessage: {
            text: 'thanks',
            contextInfo: {
              stanzaId: 'Q2',
              participant: SELF_PN,
              quotedMessage: { conversation: 'Andy: here you go' },
            },
          },
        }),
        context(),
      ),
    );
    expect(message.text).toBe('thanks\n[replying to Andy: "Andy: here you go"]');
  });

  it('turns a mention of our number into the trigger, at the start', async () => {
    const message = expectMessage(
      await normalizeInbound(
        inGroup({
          extendedTextMessage: {
            text: 'hey @15550000001 what time is it',
            contextInfo: { mentionedJid: [SELF_PN] },
          },
        }),
        context(),
      ),
    );
    expect(message.mentionsAssistant).toBe(true);
    expect(message.text).toBe('@Andy hey @Andy what time is it');
  });

  it('turns a mention of our LID into the group trigger', async () => {
    const message = expectMessage(
      await normalizeInbound(
        inGroup({
          extendedTextMessage: {
            text: '@88880000001 summarise please',
            contextInfo: { mentionedJid: [SELF_LID] },
          },
        }),
        context({ mentionTrigger: (jid) => (jid === GROUP ? '@Bot' : '@Andy') }),
      ),
    );
    expect(message.text).toBe('@Bot summarise please');
  });

  it('does not treat a mention of someone else as a trigger', async () => {
    const message = expectMessage(
      await normalizeInbound(
        inGroup({
          extendedTextMessage: { text: 'ask @15550000003', contextInfo: { mentionedJid: [ALICE] } },
        }),
        context(),
      ),
    );
    expect(message.mentionsAssistant).toBe(false);
    expect(message.text).toBe('ask @15550000003');
  });

  it('ignores status broadcasts, reactions, protocol messages and empty messages', async () => {
    expectIgnored(
      await normalizeInbound(
        wa({ key: { remoteJid: 'status@broadcast', id: 'S1' }, message: { conversation: 'x' } }),
        context(),
      ),
      /status/,
    );
    expectIgnored(
      await normalizeInbound(dm({ reactionMessage: { text: '👍', key: { id: 'M0' } } }), context()),
      /reaction/,
    );
    expectIgnored(
      await normalizeInbound(
        dm({ protocolMessage: { type: proto.Message.ProtocolMessage.Type.REVOKE } }),
        context(),
      ),
      /protocol/,
    );
    expectIgnored(await normalizeInbound(dm({ conversation: '   ' }), context()), /no text/);
    expectIgnored(
      await normalizeInbound(wa({ key: { remoteJid: ALICE, id: 'E' } }), context()),
      /no message content/,
    );
    expectIgnored(
      await normalizeInbound(
        wa({ key: { id: 'no-chat' }, message: { conversation: 'x' } }),
        context(),
      ),
      /no chat/,
    );
  });

  it('marks our own prefixed replies as the bot, and the user typing on their phone as not', async () => {
    const selfChat = { remoteJid: SELF_PN, fromMe: true };
    const bot = expectMessage(
      await normalizeInbound(dm({ conversation: 'Andy: done' }, selfChat), context()),
    );
    expect(bot).toMatchObject({ fromMe: true, fromBot: true, senderName: 'Andy', sender: SELF_PN });
    const user = expectMessage(
      await normalizeInbound(dm({ conversation: 'remind me at 5' }, selfChat), context()),
    );
    expect(user).toMatchObject({ fromMe: true, fromBot: false, chatJid: SELF_PN, sender: SELF_PN });
  });

  it('translates a LID chat to its phone jid from remoteJidAlt', async () => {
    const message = expectMessage(
      await normalizeInbound(
        wa(
          { key: { remoteJid: '55550000009@lid', id: 'L1' }, message: { conversation: 'hi' } },
          { remoteJidAlt: '15550000009@s.whatsapp.net' },
        ),
        context(),
      ),
    );
    expect(message).toMatchObject({
      chatJid: '15550000009@s.whatsapp.net',
      sender: '15550000009@s.whatsapp.net',
    });
  });

  it('translates a LID chat through the lookup when no alt is sent', async () => {
    const message = expectMessage(
      await normalizeInbound(
        wa({ key: { remoteJid: ALICE_LID, id: 'L2' }, message: { conversation: 'hi' } }),
        context(),
      ),
    );
    expect(message).toMatchObject({ chatJid: ALICE, sender: ALICE });
  });

  it('translates a LID group sender from participantAlt, else the lookup, else keeps the LID', async () => {
    const viaAlt = wa(
      {
        key: { remoteJid: GROUP, id: 'A', participant: '66660000001@lid' },
        message: { conversation: 'a' },
      },
      { participantAlt: '15550000010@s.whatsapp.net' },
    );
    expect(expectMessage(await normalizeInbound(viaAlt, context())).sender).toBe(
      '15550000010@s.whatsapp.net',
    );
    const viaLookup = inGroup({ conversation: 'b' }, ALICE_LID);
    expect(expectMessage(await normalizeInbound(viaLookup, context())).sender).toBe(ALICE);
    const unknown = inGroup({ conversation: 'c' }, '12121212@lid');
    const failing = context({
      lidToPn: async () => {
        throw new Error('no mapping store');
      },
    });
    expect(expectMessage(await normalizeInbound(unknown, failing)).sender).toBe('12121212@lid');
  });

  it('strips control characters from a sender name and clips it', async () => {
    const message = expectMessage(
      await normalizeInbound(
        wa({
          key: { remoteJid: ALICE, id: 'N' },
          pushName: `Eve\u202e\u0007${'e'.repeat(200)}`,
          message: { conversation: 'x' },
        }),
        context(),
      ),
    );
    expect(message.senderName.startsWith('Eve')).toBe(true);
    expect(message.senderName.includes('\u202e')).toBe(false);
    expect(message.senderName.includes('\u0007')).toBe(false);
    expect(message.senderName.length).toBeLessThanOrEqual(64);
  });

  it('clips very long text', async () => {
    const message = expectMessage(
      await normalizeInbound(dm({ conversation: 'y'.repeat(100_000) }), context()),
    );
    expect(message.text.length).toBe(16_000);
  });
});

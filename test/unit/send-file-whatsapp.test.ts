/**
 * The agent's files on WhatsApp: the channel turns an outbox item with a staged file into
 * media messages, and the real Baileys message builder (`generateWAMessage`) takes them.
 *
 * Why not the fake WhatsApp server: Baileys uploads media over HTTPS to a host named by the
 * `media_conn` query, which the fake does not serve (it would need a TLS upload endpoint and a
 * certificate Baileys trusts). Here the socket is a stand-in whose `sendMessage` runs Baileys'
 * own builder with a stub `upload`: the staged file is read, encrypted and described by the
 * same code as in production, and the test decrypts what would have been uploaded.
 */
import { createDecipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  generateWAMessage,
  getMediaKeys,
  makeEventBuffer,
  type BaileysEventMap,
  type GroupMetadata,
  type MediaType,
  type WAMessage,
} from '@whiskeysockets/baileys';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sniffFileType, stageFile } from '../../main/core/agent/send-file.js';
import type { ChannelHooks } from '../../main/core/channels/channel.js';
import { SqliteAuthState } from '../../main/core/channels/whatsapp/auth-state.js';
import {
  whatsappFileMessages,
  type WhatsAppOutgoingContent,
} from '../../main/core/channels/whatsapp/outbound.js';
import {
  WhatsAppChannel,
  type SocketOptions,
  type WhatsAppSocket,
} from '../../main/core/channels/whatsapp/whatsapp-channel.js';
import type { OutboxAttachment } from '../../main/core/store/index.js';
import { tempStore, type TempStore } from '../helpers/store.js';

const SELF = '15550000001:7@s.whatsapp.net';
const GROUP = '120363000000000001@g.us';
const silent = pino({ level: 'silent' });

const PDF = Buffer.from('%PDF-1.7\n' + 'x'.repeat(5000) + '\n%%EOF\n');
const PNG = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(3000, 9)]);
const MP3 = Buffer.concat([
  Buffer.from('ID3\x04\x00\x00\x00\x00\x00\x00', 'latin1'),
  Buffer.alloc(2000, 3),
]);

/** What Baileys built for one send, and the plaintext of what it would have uploaded. */
interface BuiltSend {
  jid: string;
  content: WhatsAppOutgoingContent;
  message: WAMessage;
  uploaded: Buffer | null;
}

/** A socket whose sendMessage runs Baileys' real builder, uploading to a stub. */
class BuildingSocket implements WhatsAppSocket {
  private readonly realEv = makeEventBuffer(silent);
  readonly built: BuiltSend[] = [];
  readonly ev: WhatsAppSocket['ev'] = {
    on: (event, listener) => this.realEv.on(event, listener),
    off: (event, listener) => this.realEv.off(event, listener),
  };
  user = { id: SELF };
  readonly signalRepository = {
    lidMapping: { getPNForLID: async (): Promise<string | null> => null },
  };

  constructor(readonly options: SocketOptions) {}

  emit<T extends keyof BaileysEventMap>(event: T, data: BaileysEventMap[T]): void {
    this.realEv.emit(event, data);
  }
  end(): void {}
  async logout(): Promise<void> {}
  async sendMessage(
    jid: string,
    content: WhatsAppOutgoingContent,
    options?: { messageId?: string },
  ): Promise<WAMessage | undefined> {
    let encrypted: Buffer | null = null;
    const message = await generateWAMessage(jid, content, {
      userJid: SELF,
      ...(options?.messageId ? { messageId: options.messageId } : {}),
      logger: silent,
      upload: async (encFilePath, opts) => {
        encrypted = fs.readFileSync(encFilePath);
        return {
          mediaUrl: `https://mmg.whatsapp.net/${opts.mediaType}/${encodeURIComponent(opts.fileEncSha256B64)}`,
          directPath: `/v/${opts.mediaType}`,
        };
      },
    });
    this.built.push({ jid, content, message, uploaded: await decrypt(message, encrypted) });
    return message;
  }
  async sendPresenceUpdate(): Promise<void> {}
  async groupMetadata(jid: string): Promise<GroupMetadata> {
    return { id: jid, subject: 'Friends', owner: undefined, participants: [] };
  }
  async groupFetchAllParticipating(): Promise<Record<string, GroupMetadata>> {
    return {};
  }
  async updateMediaMessage(message: WAMessage): Promise<WAMessage> {
    return message;
  }
  async requestPairingCode(): Promise<string> {
    return 'ABCD1234';
  }
}

/** Decrypts an uploaded media file with the key in the built message (WhatsApp's scheme). */
async function decrypt(message: WAMessage, encrypted: Buffer | null): Promise<Buffer | null> {
  if (!encrypted) return null;
  const m = message.message;
  const [media, type]: [{ mediaKey?: Uint8Array | null } | null | undefined, MediaType] =
    m?.imageMessage
      ? [m.imageMessage, 'image']
      : m?.audioMessage
        ? [m.audioMessage, 'audio']
        : [m?.documentMessage, 'document'];
  if (!media?.mediaKey) throw new Error('the built message has no media key');
  const { cipherKey, iv } = await getMediaKeys(media.mediaKey, type);
  // The last 10 bytes are the MAC.
  const decipher = createDecipheriv('aes-256-cbc', cipherKey, iv);
  return Buffer.concat([decipher.update(encrypted.subarray(0, -10)), decipher.final()]);
}

let temp: TempStore;
let filesDir: string;
let channel: WhatsAppChannel;
let sock: BuildingSocket;

const hooks: ChannelHooks = {
  onMessage: () => undefined,
  onState: () => undefined,
  onChatMetadata: () => undefined,
};

function staged(bytes: Buffer, fileName: string): OutboxAttachment {
  return {
    stagedPath: stageFile(filesDir, bytes),
    fileName,
    bytes: bytes.length,
    ...sniffFileType(bytes, fileName),
  };
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('base64');
const b64 = (bytes: Uint8Array | null | undefined): string =>
  Buffer.from(bytes ?? new Uint8Array()).toString('base64');

beforeEach(async () => {
  temp = tempStore('clawbar-wa-files-');
  filesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-wa-staged-'));
  const auth = new SqliteAuthState(temp.store.db).load();
  auth.state.creds.me = { id: SELF, name: 'Me' };
  auth.saveCreds();
  channel = new WhatsAppChannel({
    store: temp.store,
    config: { waUrl: 'ws://127.0.0.1:1', assistantName: 'Andy' },
    log: silent,
    socketFactory: (options) => (sock = new BuildingSocket(options)),
    random: () => 0,
  });
  await channel.connect(hooks);
  sock.emit('connection.update', { connection: 'open' });
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  expect(channel.state.state).toBe('open');
});

afterEach(async () => {
  await channel.disconnect();
  temp.close();
  fs.rmSync(filesDir, { recursive: true, force: true });
});

describe('WhatsApp messages for a file', () => {
  it('puts the caption, with the assistant prefix, on an image or a document', () => {
    const file = { stagedPath: '/s/1', fileName: 'r.pdf', mimetype: 'application/pdf' };
    expect(whatsappFileMessages({ ...file, kind: 'document' }, ' Q3 ', 'Andy: ')).toEqual([
      {
        document: { url: '/s/1' },
        mimetype: 'application/pdf',
        fileName: 'r.pdf',
        caption: 'Andy: Q3',
      },
    ]);
    expect(whatsappFileMessages({ ...file, kind: 'image' }, '', 'Andy: ')).toEqual([
      { image: { url: '/s/1' }, mimetype: 'application/pdf' },
    ]);
  });

  it('sends an audio file first and its caption as a text after it (audio has no caption)', () => {
    const audio = {
      stagedPath: '/s/2',
      fileName: 'a.mp3',
      mimetype: 'audio/mpeg',
      kind: 'audio',
    } as const;
    expect(whatsappFileMessages(audio, 'listen', 'Andy: ')).toEqual([
      { audio: { url: '/s/2' }, mimetype: 'audio/mpeg', ptt: false },
      { text: 'Andy: listen' },
    ]);
  });
});

describe('the WhatsApp channel sends staged files through the real Baileys builder', () => {
  it('sends a PDF as a document: name, type, caption, and the encrypted upload is the file', async () => {
    const attachment = staged(PDF, 'report.pdf');
    const sent = await channel.send({
      outboxId: 7,
      chatJid: GROUP,
      text: 'The report',
      attachment,
    });
    expect(sock.built).toHaveLength(1);
    const [build] = sock.built;
    const doc = build?.message.message?.documentMessage;
    expect(doc?.mimetype).toBe('application/pdf');
    expect(doc?.fileName).toBe('report.pdf');
    expect(doc?.caption).toBe('Andy: The report');
    expect(Number(doc?.fileLength)).toBe(PDF.length);
    expect(b64(doc?.fileSha256)).toBe(sha256(PDF));
    expect(build?.uploaded).toEqual(PDF);
    expect(sent.id).toBe(build?.message.key.id);
  });

  it('sends a PNG as an image', async () => {
    const attachment = staged(PNG, 'chart.png');
    await channel.send({ outboxId: 8, chatJid: GROUP, text: '', attachment });
    const image = sock.built[0]?.message.message?.imageMessage;
    expect(image?.mimetype).toBe('image/png');
    expect(image?.caption ?? '').toBe('');
    expect(sock.built[0]?.uploaded).toEqual(PNG);
  });

  it('sends an MP3 as audio, then the caption as a text message', async () => {
    const attachment = staged(MP3, 'song.mp3');
    const sent = await channel.send({ outboxId: 9, chatJid: GROUP, text: 'a tune', attachment });
    expect(sock.built.map((b) => Object.keys(b.message.message ?? {})[0])).toEqual([
      'audioMessage',
      'extendedTextMessage',
    ]);
    expect(sock.built[0]?.message.message?.audioMessage?.mimetype).toBe('audio/mpeg');
    expect(sock.built[0]?.uploaded).toEqual(MP3);
    expect(sock.built[1]?.message.message?.extendedTextMessage?.text).toBe('Andy: a tune');
    expect(sent.id).toBe(sock.built[1]?.message.key.id);
  });

  it('sends a file whose name lies about its type by what its bytes are', async () => {
    const attachment = staged(PDF, 'holiday.jpg');
    await channel.send({ outboxId: 10, chatJid: GROUP, text: '', attachment });
    const doc = sock.built[0]?.message.message?.documentMessage;
    expect(doc?.mimetype).toBe('application/pdf');
    expect(doc?.fileName).toBe('holiday.jpg');
    expect(sock.built[0]?.message.message?.imageMessage).toBeFalsy();
  });
});

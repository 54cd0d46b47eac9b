/**
 * A fake WhatsApp server on 127.0.0.1 for the REAL Baileys socket (`makeWASocket` from
 * `@whiskeysockets/baileys` 7.0.0-rc14), written from Baileys' own exports. No Baileys patch,
 * no test switch in production code: Baileys connects to `waWebSocketUrl: fake.url`, and the
 * only process-wide change is `WA_CERT_DETAILS.PUBLIC_KEY`, which `startFakeWhatsApp` points
 * at the fake's test root key (Baileys reads it at each handshake).
 *
 * ## Driver API
 *
 * ```ts
 * const fake = await startFakeWhatsApp();          // sets WA_CERT_DETAILS.PUBLIC_KEY
 * const sock = makeWASocket({
 *   waWebSocketUrl: fake.url,
 *   auth: { creds, keys },                         // e.g. initAuthCreds() + makeMemoryKeyStore()
 *   logger: pino({ level: 'silent' }),
 *   // Without history sync Baileys does not hold events back 20 s after the first login
 *   // waiting for a history notification the fake never sends.
 *   shouldSyncHistoryMessage: () => false,
 * });
 * // pairing: on connection.update { qr }, play the phone:
 * await fake.scanQr(qr);          // pair-success, then stream error 515 (restart required)
 * // Baileys closes with 515; open a new socket with the same auth state: it logs in → 'open'.
 *
 * const alice = await fake.addContact({ phone: '15550002222', lid: '90000000000002' });
 * await fake.deliverText({ from: alice, text: 'hi', id: 'ABC' });            // encrypted DM
 * await fake.deliverText({ from: alice, text: 'hi', encryption: 'plaintext' });
 * fake.createGroup({ subject: 'Team', participants: [alice] });              // → group jid
 * await fake.deliverText({ from: alice, group: groupJid, text: '@bot hi' }); // skmsg
 * await fake.deliverText({ from: alice, text: 'x', senderAddressing: 'lid' }); // from @lid, *_pn alt
 * fake.setGroupSubject(groupJid, 'New name');                                // → groups.update
 *
 * // Media: encrypted as WhatsApp does, served by the fake's media host (http://127.0.0.1:…).
 * const img = await fake.deliverMedia({ from: alice, group: groupJid, kind: 'image',
 *   bytes, mimetype: 'image/jpeg', caption: 'look' });                     // → { id, url, … }
 * await fake.deliverMedia({ from: alice, kind: 'audio', bytes: ogg,
 *   mimetype: 'audio/ogg; codecs=opus' });                                   // voice note (ptt)
 * await fake.deliverMedia({ …, kind: 'document', fileName: 'a.pdf', blob: 'bad-mac' });
 * // blob: 'intact' | 'bad-mac' | 'bad-body' | 'missing' (404) | 'cut' (connection cut halfway)
 * fake.mediaRequests();                           // every GET of the media host: path, status
 *
 * await fake.waitForOutbox((m) => m.text === 'pong');   // decrypted sends of the app
 * fake.outbox();                                         // all of them: { chatJid, id, text, message }
 *
 * // Pairing by code: Baileys' requestPairingCode(phone) sends `link_code_companion_reg`; the
 * // fake records who asked and answers with a pairing ref, as the server does (no link follows).
 * fake.pairingCodeRequests();                     // [{ jid: '15551234567@s.whatsapp.net', phone }]
 *
 * fake.sendStreamError(515 | 440 | 401 | 500 …);  // on the live connection
 * fake.logOut();                                  // 401 now and on every later login attempt
 * fake.dropSocket();                              // TCP cut, no close frame (Baileys sees 428)
 * fake.connectionCount; fake.connections;         // every WebSocket accepted, with times
 * fake.protocolErrors();                          // what broke inside the fake; expect []
 * await fake.close();
 * ```
 *
 * What the server answers: the Noise XX handshake with a test cert chain; registration
 * (`pair-device` with refs) and login (`<success>` then `<ib><offline/>`); the iqs Baileys makes
 * around login (prekey count/upload, passive, digest, ping, props, blocklist, privacy), usync
 * (devices, lid, contact), `encrypt` key bundle fetches, `w:g2` group metadata; any other iq gets
 * an empty `result`. Client `<message>`s are acked and decrypted by the fake contacts.
 *
 * ## Media: how the app downloads it
 *
 * A delivered media message carries `url` (the fake host, plain http on 127.0.0.1), `mediaKey`,
 * `fileSha256`, `fileEncSha256`, `fileLength` and `mimetype`, but no `directPath`: Baileys
 * rc14's `downloadContentFromMessage` fetches `https://<host of url><directPath>` when a direct
 * path is present (always https), and `url` as is only when there is none. So the channel needs
 * no option and no test hook: `downloadMediaMessage(msg, 'buffer' | 'stream', {})` or
 * `downloadContentFromMessage(media, 'image' | 'audio' …)` reach the fake as they are, in this
 * process or in a `clawbar serve` child.
 *
 * What Baileys rc14's download does NOT do (pinned by tests in whatsapp-fake.test.ts):
 * - it checks neither the MAC nor `fileSha256`: a bad MAC still yields the bytes, a tampered
 *   body yields wrong bytes without an error (`blob: 'bad-mac' | 'bad-body'`);
 * - a connection cut mid-body (`blob: 'cut'`) leaves its stream pending for ever, and the
 *   fetch's source stream, which nobody listens to, raises an uncaught `TypeError: terminated`;
 * - `options.options.signal` is not passed to fetch, so a download cannot be aborted.
 * `downloadVerifiedMedia` in media.ts is a reference download that does all three (deadline,
 * cap, MAC + SHA-256 checks) from Baileys' `getMediaKeys`/`getUrlFromDirectPath` and `fetch`.
 *
 * Not covered: media upload (the app sending media), media re-upload requests for expired media,
 * https media hosts with `directPath`, app-state sync, history sync, completing a pairing by code
 * (the companion_hello is recorded and answered; the phone's side never follows), retry
 * receipts, multiple own devices (the phone itself has no device session).
 */
import {
  Curve,
  encodeBinaryNode,
  decodeBinaryNode,
  getBinaryNodeChild,
  getBinaryNodeChildren,
  getBinaryNodeChildBuffer,
  hmacSign,
  jidDecode,
  jidEncode,
  proto,
  WA_CERT_DETAILS,
  type BinaryNode,
  type KeyPair,
} from '@whiskeysockets/baileys';
import { randomBytes } from 'node:crypto';
import { FakeContact, type KeyBundle } from './contact.js';
import {
  createMediaFiles,
  encryptMedia,
  type FakeMediaBlobState,
  type FakeMediaRequest,
} from './media.js';
import {
  FrameReader,
  lengthPrefixed,
  makeFakeCertificates,
  ServerNoiseHandshake,
  type NoiseTransport,
} from './noise.js';
import { startWsServer, type FakeWsConnection, type FakeWsServer } from './ws-server.js';

const S_WHATSAPP_NET = 's.whatsapp.net';
/** Refs in `pair-device`: Baileys shows one QR per ref (60 s, then 20 s each). */
const PAIR_REF_COUNT = 6;

/** One pairing-code request the fake received (Baileys' `requestPairingCode`). */
export type FakePairingCodeRequest = {
  /** The account the code is for, as Baileys sent it: `<phone>@s.whatsapp.net`. */
  jid: string;
  /** The phone number part of `jid`: digits only, with the country code. */
  phone: string;
  /** `companion_hello`: the first stage, the only one the app sends before the phone acts. */
  stage: string;
};

/** One WebSocket the fake accepted. */
export type FakeConnectionRecord = {
  /** 1, 2, 3… in accept order. */
  index: number;
  openedAt: Date;
  closedAt: Date | undefined;
  /** What the client did after the handshake. */
  kind: 'handshaking' | 'registration' | 'login' | 'rejected-login';
};

/** A message the app sent, as decrypted by a fake contact. */
export type FakeOutboxEntry = {
  /** The chat: the contact's jid for a DM, the group jid for a group. */
  chatJid: string;
  id: string;
  /** `conversation` or `extendedTextMessage.text`, else undefined. */
  text: string | undefined;
  message: proto.IMessage;
  /** The contact that decrypted it. */
  decryptedBy: string;
  receivedAt: Date;
};

/** A group the fake knows, for `w:g2` metadata queries and group deliveries. */
export type FakeGroup = {
  jid: string;
  subject: string;
  participants: FakeContact[];
  creation: number;
};

/** Who sends a delivered message, where, and how it is wrapped. */
export type DeliverOptions = {
  from: FakeContact;
  /** A group jid from `createGroup`; omitted for a DM. */
  group?: string;
  /** @default a fresh random id. Reuse one to deliver a duplicate. */
  id?: string;
  /** @default 'signal' */
  encryption?: 'signal' | 'plaintext';
  /**
   * `lid` addresses the sender by its `@lid` jid (`from`/`participant`), with the phone jid in
   * `sender_pn`/`participant_pn`, as WhatsApp does for LID chats. @default 'pn'
   */
  senderAddressing?: 'pn' | 'lid';
  /** @default now */
  timestamp?: Date;
};

export type DeliverTextOptions = DeliverOptions & { text: string };

export type DeliverMediaOptions = DeliverOptions & {
  /** `audio` is a voice note (`ptt: true`) unless `ptt` is false. */
  kind: 'image' | 'audio' | 'video' | 'document';
  /** The plaintext file. */
  bytes: Buffer;
  mimetype: string;
  /** Images, videos and documents. */
  caption?: string;
  /** Documents: the sender's file name. */
  fileName?: string;
  /** Audio only: a voice note (push-to-talk) or a plain audio file. @default true */
  ptt?: boolean;
  /** What the media host serves: see {@link FakeMediaBlobState}. @default 'intact' */
  blob?: FakeMediaBlobState;
  /** Overrides the `fileLength` the message declares (a hostile sender's claim). */
  declaredLength?: number;
};

/** What `deliverMedia` sent and served. */
export type DeliveredMedia = {
  id: string;
  /** Where the fake host serves the blob (http://127.0.0.1:…). */
  url: string;
  directPath: string;
  /** The encrypted blob as encrypted (before any `blob` tampering). */
  blob: Buffer;
  /** The message as delivered (`imageMessage`, `audioMessage`…). */
  message: proto.IMessage;
};

type Account = {
  /** Phone number of the paired account (the "phone"). */
  phone: string;
  /** LID user of the account. */
  lid: string;
  /** Device id the companion gets at pairing. */
  device: number;
  /** The phone's account signing key, used for the ADV device identity. */
  accountKey: KeyPair;
  /** The companion's bundle, from its registration payload and prekey uploads. */
  bundle: KeyBundle | undefined;
  /** True after pairing and until `logOut()`. */
  paired: boolean;
};

type Connection = {
  record: FakeConnectionRecord;
  ws: FakeWsConnection;
  reader: FrameReader;
  handshake: ServerNoiseHandshake;
  transport: NoiseTransport | undefined;
  pairRefs: string[];
  /** Pending iqs we sent, by id, waiting for the client's result. */
  awaiting: Map<string, (node: BinaryNode) => void>;
  /** Serialises frame handling: decodeBinaryNode is async. */
  inbound: Promise<void>;
};

export type FakeWhatsApp = Awaited<ReturnType<typeof startFakeWhatsApp>>;

/**
 * Starts the fake on an ephemeral port and points Baileys' `WA_CERT_DETAILS.PUBLIC_KEY` at its
 * test root key. Close it with `close()`.
 */
export async function startFakeWhatsApp(
  opts: {
    /** @default '15550001111' */
    phone?: string;
    /** @default '100000000000001' */
    lid?: string;
  } = {},
) {
  const certs = makeFakeCertificates();
  // Baileys reads this object at handshake time (noise-handler.js processHandshake).
  WA_CERT_DETAILS.PUBLIC_KEY = certs.rootPublicKey;

  const account: Account = {
    phone: opts.phone ?? '15550001111',
    lid: opts.lid ?? '100000000000001',
    device: 1,
    accountKey: Curve.generateKeyPair(),
    bundle: undefined,
    paired: false,
  };
  const connections: FakeConnectionRecord[] = [];
  const live = new Set<Connection>();
  const contacts = new Map<string, FakeContact>();
  const groups = new Map<string, FakeGroup>();
  const outbox: FakeOutboxEntry[] = [];
  const outboxWaiters = new Set<() => void>();
  /** Pending `waitForOutbox` calls, so `close()` can end them and clear their timers. */
  const pendingWaits = new Set<{ timer: NodeJS.Timeout; reject: (err: Error) => void }>();
  /**
   * What went wrong inside the fake: undecryptable client messages, malformed frames. Tests
   * can assert this stays empty, so a broken fake does not pass silently.
   */
  const protocolErrors: Error[] = [];
  /** Message ids the client has acked with a delivery `receipt`, for tests that wait on them. */
  const receipts: { id: string; type: string | undefined }[] = [];
  /** Each pairing-code request (`link_code_companion_reg`, stage companion_hello), oldest first. */
  const pairingCodeRequests: FakePairingCodeRequest[] = [];
  let tagCounter = 0;
  const nextTag = () => `fake-${++tagCounter}`;

  const deviceJid = () => jidEncode(account.phone, S_WHATSAPP_NET, account.device);
  const lidDeviceJid = () => jidEncode(account.lid, 'lid', account.device);

  const current = (): Connection | undefined => {
    let latest: Connection | undefined;
    for (const conn of live) {
      if (conn.transport && (!latest || conn.record.index > latest.record.index)) latest = conn;
    }
    return latest;
  };

  const sendNode = (conn: Connection, node: BinaryNode) => {
    if (!conn.transport || !conn.ws.isOpen) return;
    conn.ws.send(lengthPrefixed(conn.transport.encrypt(encodeBinaryNode(node))));
  };

  const requireCurrent = (what: string): Connection => {
    const conn = current();
    if (!conn)
      throw new Error(`fake WhatsApp: cannot ${what}: no client has completed the handshake`);
    return conn;
  };

  const iqResult = (request: BinaryNode, content?: BinaryNode[]): BinaryNode => ({
    tag: 'iq',
    attrs: { id: request.attrs.id ?? '', type: 'result', from: S_WHATSAPP_NET },
    content,
  });

  // ── handshake ──────────────────────────────────────────────────────────

  const onRawFrame = (conn: Connection, frame: Buffer) => {
    if (!conn.transport) {
      const hs = proto.HandshakeMessage.decode(frame);
      if (hs.clientHello?.ephemeral) {
        conn.ws.send(lengthPrefixed(conn.handshake.serverHello(hs.clientHello.ephemeral)));
        return;
      }
      if (hs.clientFinish?.static && hs.clientFinish.payload) {
        const { payload } = conn.handshake.clientFinish(
          hs.clientFinish.static,
          hs.clientFinish.payload,
        );
        conn.transport = conn.handshake.transport();
        onClientPayload(conn, payload);
        return;
      }
      throw new Error('unexpected handshake message');
    }
    const plain = conn.transport.decrypt(frame);
    conn.inbound = conn.inbound
      .then(async () => onNode(conn, await decodeBinaryNode(plain)))
      .catch((err: unknown) => {
        protocolErrors.push(toError(err));
        conn.ws.destroy();
      });
  };

  const onClientPayload = (conn: Connection, payload: proto.ClientPayload) => {
    const pairing = payload.devicePairingData;
    if (pairing) {
      conn.record.kind = 'registration';
      account.bundle = {
        registrationId: readBigEndian(pairing.eRegid),
        identityKey: Buffer.from(pairing.eIdent ?? []),
        signedPreKey: {
          keyId: readBigEndian(pairing.eSkeyId),
          publicKey: Buffer.from(pairing.eSkeyVal ?? []),
          signature: Buffer.from(pairing.eSkeySig ?? []),
        },
        preKeys: [],
      };
      conn.pairRefs = Array.from({ length: PAIR_REF_COUNT }, () =>
        randomBytes(12).toString('base64'),
      );
      sendNode(conn, {
        tag: 'iq',
        attrs: { id: nextTag(), type: 'set', xmlns: 'md', from: S_WHATSAPP_NET },
        content: [
          {
            tag: 'pair-device',
            attrs: {},
            content: conn.pairRefs.map((ref) => ({
              tag: 'ref',
              attrs: {},
              content: Buffer.from(ref),
            })),
          },
        ],
      });
      return;
    }
    const loginOk =
      account.paired &&
      String(payload.username) === account.phone &&
      (payload.device ?? 0) === account.device;
    if (!loginOk) {
      conn.record.kind = 'rejected-login';
      sendNode(conn, { tag: 'failure', attrs: { reason: '401', location: 'fake' } });
      conn.ws.close();
      return;
    }
    conn.record.kind = 'login';
    sendNode(conn, {
      tag: 'success',
      attrs: { t: unixNow(), lid: lidDeviceJid(), props: '1', creation: unixNow() },
    });
    sendNode(conn, {
      tag: 'ib',
      attrs: { from: S_WHATSAPP_NET },
      content: [{ tag: 'offline', attrs: { count: '0' } }],
    });
  };

  // ── client nodes ───────────────────────────────────────────────────────

  const onNode = async (conn: Connection, node: BinaryNode) => {
    switch (node.tag) {
      case 'iq':
        if (node.attrs.type === 'result' || node.attrs.type === 'error') {
          const waiter = conn.awaiting.get(node.attrs.id ?? '');
          conn.awaiting.delete(node.attrs.id ?? '');
          waiter?.(node);
          return;
        }
        sendNode(conn, answerIq(node));
        return;
      case 'message':
        await onClientMessage(conn, node);
        return;
      case 'receipt':
        receipts.push({ id: node.attrs.id ?? '', type: node.attrs.type });
        sendNode(conn, {
          tag: 'ack',
          attrs: {
            class: 'receipt',
            id: node.attrs.id ?? '',
            from: node.attrs.to ?? S_WHATSAPP_NET,
          },
        });
        return;
      default:
        // ack, presence, ib, chatstate: nothing to answer.
        return;
    }
  };

  /** Answers one client iq (type get/set) with a minimal valid result. */
  const answerIq = (iq: BinaryNode): BinaryNode => {
    const xmlns = iq.attrs.xmlns;
    const first = Array.isArray(iq.content) ? iq.content[0] : undefined;
    switch (xmlns) {
      case 'encrypt': {
        if (first?.tag === 'count') {
          return iqResult(iq, [
            { tag: 'count', attrs: { value: String(account.bundle?.preKeys.length ?? 0) } },
          ]);
        }
        if (first?.tag === 'digest') return iqResult(iq, [{ tag: 'digest', attrs: {} }]);
        if (first?.tag === 'key') return iqResult(iq, [keyBundleList(first)]);
        if (getBinaryNodeChild(iq, 'list')) storeUploadedPreKeys(iq);
        return iqResult(iq);
      }
      case 'usync':
        return iqResult(iq, [answerUsync(iq)]);
      case 'abt':
        return iqResult(iq, [
          { tag: 'props', attrs: { protocol: '1', hash: 'fake' }, content: [] },
        ]);
      case 'blocklist':
        return iqResult(iq, [{ tag: 'list', attrs: {}, content: [] }]);
      case 'privacy':
        return iqResult(iq, [{ tag: 'privacy', attrs: {}, content: [] }]);
      case 'w:g2':
        return answerGroups(iq);
      case 'md':
        return first?.tag === 'link_code_companion_reg'
          ? answerPairingCode(iq, first)
          : iqResult(iq);
      default:
        return iqResult(iq);
    }
  };

  /**
   * Baileys' `requestPairingCode` asks the server to send the code (which Baileys made itself)
   * to the phone: the server answers with a ref for the later stages. Recorded, so a test can
   * check which number the app asked for.
   */
  const answerPairingCode = (iq: BinaryNode, reg: BinaryNode): BinaryNode => {
    const jid = reg.attrs.jid ?? '';
    pairingCodeRequests.push({
      jid,
      phone: jidDecode(jid)?.user ?? '',
      stage: reg.attrs.stage ?? '',
    });
    return iqResult(iq, [
      {
        tag: 'link_code_companion_reg',
        attrs: {},
        content: [
          {
            tag: 'link_code_pairing_ref',
            attrs: {},
            content: Buffer.from(randomBytes(16).toString('base64')),
          },
        ],
      },
    ]);
  };

  const storeUploadedPreKeys = (iq: BinaryNode) => {
    if (!account.bundle) return;
    for (const key of getBinaryNodeChildren(getBinaryNodeChild(iq, 'list'), 'key')) {
      const id = getBinaryNodeChildBuffer(key, 'id');
      const value = getBinaryNodeChildBuffer(key, 'value');
      if (!id || !value || value.length !== 32) continue;
      account.bundle.preKeys.push({ keyId: readBigEndian(id), publicKey: Buffer.from(value) });
    }
    const skey = getBinaryNodeChild(iq, 'skey');
    const id = getBinaryNodeChildBuffer(skey, 'id');
    const value = getBinaryNodeChildBuffer(skey, 'value');
    const signature = getBinaryNodeChildBuffer(skey, 'signature');
    if (id && value && signature) {
      account.bundle.signedPreKey = {
        keyId: readBigEndian(id),
        publicKey: Buffer.from(value),
        signature: Buffer.from(signature),
      };
    }
  };

  /** The contact a jid (phone or lid, any device) belongs to. */
  const contactFor = (jid: string | undefined): FakeContact | undefined => {
    const decoded = jid ? jidDecode(jid) : undefined;
    if (!decoded) return undefined;
    for (const contact of contacts.values()) {
      if (jidDecode(contact.jid)?.user === decoded.user) return contact;
      if (jidDecode(contact.lidJid)?.user === decoded.user) return contact;
    }
    return undefined;
  };

  const isOwnUser = (jid: string | undefined) => {
    const user = jid ? jidDecode(jid)?.user : undefined;
    return user === account.phone || user === account.lid;
  };

  const keyBundleList = (keyNode: BinaryNode): BinaryNode => {
    const users: BinaryNode[] = [];
    for (const user of getBinaryNodeChildren(keyNode, 'user')) {
      const jid = user.attrs.jid;
      const contact = contactFor(jid);
      if (!jid || !contact) continue;
      const bundle = contact.bundle();
      const preKey = bundle.preKeys[0];
      users.push({
        tag: 'user',
        attrs: { jid },
        content: [
          { tag: 'registration', attrs: {}, content: bigEndian(bundle.registrationId, 4) },
          { tag: 'type', attrs: {}, content: Buffer.from([5]) },
          { tag: 'identity', attrs: {}, content: Buffer.from(bundle.identityKey) },
          {
            tag: 'skey',
            attrs: {},
            content: [
              { tag: 'id', attrs: {}, content: bigEndian(bundle.signedPreKey.keyId, 3) },
              { tag: 'value', attrs: {}, content: Buffer.from(bundle.signedPreKey.publicKey) },
              { tag: 'signature', attrs: {}, content: Buffer.from(bundle.signedPreKey.signature) },
            ],
          },
          ...(preKey
            ? [
                {
                  tag: 'key',
                  attrs: {},
                  content: [
                    { tag: 'id', attrs: {}, content: bigEndian(preKey.keyId, 3) },
                    { tag: 'value', attrs: {}, content: Buffer.from(preKey.publicKey) },
                  ],
                },
              ]
            : []),
        ],
      });
    }
    return { tag: 'list', attrs: {}, content: users };
  };

  const answerUsync = (iq: BinaryNode): BinaryNode => {
    const usync = getBinaryNodeChild(iq, 'usync');
    const protocols = (getBinaryNodeChild(usync, 'query')?.content ?? []) as BinaryNode[];
    const users = getBinaryNodeChildren(getBinaryNodeChild(usync, 'list'), 'user');
    const out: BinaryNode[] = [];
    for (const user of users) {
      const contactNode = getBinaryNodeChild(user, 'contact');
      const phone = contactNode?.content
        ? Buffer.from(contactNode.content as Uint8Array).toString()
        : undefined;
      const jid =
        user.attrs.jid ?? (phone ? `${phone.replace(/^\+/, '')}@${S_WHATSAPP_NET}` : undefined);
      if (!jid) continue;
      const contact = contactFor(jid);
      const own = isOwnUser(jid);
      const children: BinaryNode[] = [];
      for (const protocol of Array.isArray(protocols) ? protocols : []) {
        switch (protocol.tag) {
          case 'devices':
            children.push({
              tag: 'devices',
              attrs: {},
              content: [
                {
                  tag: 'device-list',
                  attrs: {},
                  // The phone (device 0) is not faked as a signal party, so the own user lists
                  // only the companion itself, which Baileys skips.
                  content: own
                    ? [{ tag: 'device', attrs: { id: String(account.device), 'key-index': '1' } }]
                    : contact
                      ? [{ tag: 'device', attrs: { id: '0' } }]
                      : [],
                },
              ],
            });
            break;
          case 'lid': {
            const lid = own ? jidEncode(account.lid, 'lid') : contact?.lidJid;
            children.push(lid ? { tag: 'lid', attrs: { val: lid } } : { tag: 'lid', attrs: {} });
            break;
          }
          case 'contact':
            children.push({ tag: 'contact', attrs: { type: contact || own ? 'in' : 'out' } });
            break;
          default:
            break;
        }
      }
      out.push({ tag: 'user', attrs: { jid }, content: children });
    }
    return {
      tag: 'usync',
      attrs: { sid: usync?.attrs.sid ?? '', mode: 'query', last: 'true', index: '0' },
      content: [{ tag: 'list', attrs: {}, content: out }],
    };
  };

  const groupNode = (group: FakeGroup): BinaryNode => ({
    tag: 'group',
    attrs: {
      id: jidDecode(group.jid)?.user ?? '',
      subject: group.subject,
      s_t: String(group.creation),
      creation: String(group.creation),
      creator: jidEncode(account.phone, S_WHATSAPP_NET),
      addressing_mode: 'pn',
    },
    content: [
      {
        tag: 'participant',
        attrs: { jid: jidEncode(account.phone, S_WHATSAPP_NET), type: 'superadmin' },
      },
      ...group.participants.map((p) => ({ tag: 'participant', attrs: { jid: p.jid } })),
    ],
  });

  const answerGroups = (iq: BinaryNode): BinaryNode => {
    const first = Array.isArray(iq.content) ? iq.content[0] : undefined;
    if (first?.tag === 'query') {
      const group = groups.get(iq.attrs.to ?? '');
      if (!group) {
        return {
          tag: 'iq',
          attrs: { id: iq.attrs.id ?? '', type: 'error', from: iq.attrs.to ?? S_WHATSAPP_NET },
          content: [{ tag: 'error', attrs: { code: '404', text: 'item-not-found' } }],
        };
      }
      return iqResult(iq, [groupNode(group)]);
    }
    if (first?.tag === 'participating') {
      return iqResult(iq, [
        { tag: 'groups', attrs: {}, content: [...groups.values()].map((g) => groupNode(g)) },
      ]);
    }
    return iqResult(iq);
  };

  // ── messages the app sends ─────────────────────────────────────────────

  const onClientMessage = async (conn: Connection, node: BinaryNode) => {
    const to = node.attrs.to ?? '';
    const id = node.attrs.id ?? '';
    sendNode(conn, { tag: 'ack', attrs: { class: 'message', id, from: to, t: unixNow() } });
    const group = groups.get(to);
    const encs: { recipient: string; enc: BinaryNode }[] = [];
    for (const enc of getBinaryNodeChildren(node, 'enc')) encs.push({ recipient: to, enc });
    for (const target of getBinaryNodeChildren(getBinaryNodeChild(node, 'participants'), 'to')) {
      for (const enc of getBinaryNodeChildren(target, 'enc'))
        encs.push({ recipient: target.attrs.jid ?? '', enc });
    }
    const sender = deviceJid();
    let recorded = false;
    // Pairwise parts first: in a group they carry the sender key the skmsg needs.
    for (const { recipient, enc } of encs.filter((e) => e.enc.attrs.type !== 'skmsg')) {
      const contact = contactFor(recipient);
      const type = enc.attrs.type;
      if (!contact || (type !== 'pkmsg' && type !== 'msg') || !(enc.content instanceof Uint8Array))
        continue;
      let message: proto.Message;
      try {
        message = await decryptWithEitherIdentity(contact, recipient, type, enc.content);
      } catch (err) {
        protocolErrors.push(
          new Error(`${contact.jid} could not decrypt ${type} ${id} for ${recipient}`, {
            cause: err,
          }),
        );
        continue;
      }
      if (message.senderKeyDistributionMessage) {
        await contact.processSenderKey(sender, message.senderKeyDistributionMessage);
      }
      if (!group && !recorded) {
        record({ chatJid: to, id, message, decryptedBy: contact.jid });
        recorded = true;
      }
    }
    const skmsg = encs.find((e) => e.enc.attrs.type === 'skmsg');
    if (group && skmsg && skmsg.enc.content instanceof Uint8Array) {
      for (const contact of group.participants) {
        try {
          const message = await contact.decryptGroup(group.jid, sender, skmsg.enc.content);
          record({ chatJid: group.jid, id, message, decryptedBy: contact.jid });
          break;
        } catch {
          // This participant has no sender key yet; another may.
        }
      }
    }
  };

  /**
   * Baileys encrypts from its LID identity to a LID recipient and from its phone-number identity
   * to a phone-number one; the contact keeps its session under the matching address. Try that
   * one first, then the other (a pkmsg opens a session under either).
   */
  const decryptWithEitherIdentity = async (
    contact: FakeContact,
    recipient: string,
    type: 'pkmsg' | 'msg',
    ciphertext: Uint8Array,
  ): Promise<proto.Message> => {
    const [first, second] = recipient.endsWith('@lid')
      ? [lidDeviceJid(), deviceJid()]
      : [deviceJid(), lidDeviceJid()];
    try {
      return await contact.decryptFrom(first, type, ciphertext);
    } catch (firstError) {
      try {
        return await contact.decryptFrom(second, type, ciphertext);
      } catch {
        throw firstError;
      }
    }
  };

  const record = (entry: Omit<FakeOutboxEntry, 'text' | 'receivedAt'>) => {
    const m = entry.message;
    const text = m.conversation ?? m.extendedTextMessage?.text ?? undefined;
    outbox.push({ ...entry, text: text ?? undefined, receivedAt: new Date() });
    for (const wake of [...outboxWaiters]) wake();
  };

  // ── connections ────────────────────────────────────────────────────────

  // Media is served on the WebSocket's own port: the one origin Clawbar trusts for media when
  // CLAWBAR_WA_URL points it at another WhatsApp service, as it points it here.
  const mediaFiles = createMediaFiles();
  const ws: FakeWsServer = await startWsServer(
    (socket) => {
      const rec: FakeConnectionRecord = {
        index: connections.length + 1,
        openedAt: new Date(),
        closedAt: undefined,
        kind: 'handshaking',
      };
      connections.push(rec);
      const conn: Connection = {
        record: rec,
        ws: socket,
        reader: new FrameReader(),
        handshake: new ServerNoiseHandshake(certs),
        transport: undefined,
        pairRefs: [],
        awaiting: new Map(),
        inbound: Promise.resolve(),
      };
      live.add(conn);
      socket.on('message', (data) => {
        try {
          for (const frame of conn.reader.push(data)) onRawFrame(conn, frame);
        } catch (err) {
          // Hostile or broken input: end this connection, as WhatsApp would.
          protocolErrors.push(toError(err));
          socket.destroy();
        }
      });
      socket.on('close', () => {
        rec.closedAt = new Date();
        live.delete(conn);
      });
    },
    (req, res) => mediaFiles.handle(req, res),
  );

  const mediaHost = mediaFiles.host(`http://127.0.0.1:${ws.port}`, async () => undefined);

  /**
   * Sends `message` from a contact to the device, in a DM or a group: Signal-encrypted with the
   * contact's real session (`pkmsg`/`msg`, or `skmsg` plus the sender key in a pairwise part in
   * a group) or as `<plaintext>`. `mediatype` marks a media message, as WhatsApp does.
   */
  const deliver = async (
    opts: DeliverOptions,
    message: proto.IMessage,
    mediatype: string | undefined,
  ): Promise<string> => {
    const conn = requireCurrent('deliver a message');
    const id = opts.id ?? randomBytes(10).toString('hex').toUpperCase();
    const t = String(Math.floor((opts.timestamp ?? new Date()).getTime() / 1000));
    const byLid = opts.senderAddressing === 'lid';
    const senderJid = byLid ? opts.from.lidJid : opts.from.jid;
    const attrs: Record<string, string> = {
      id,
      t,
      notify: opts.from.pushName,
      type: mediatype ? 'media' : 'text',
    };
    if (opts.group) {
      if (!groups.has(opts.group)) throw new Error(`unknown group ${opts.group}`);
      attrs.from = opts.group;
      attrs.participant = senderJid;
      attrs.addressing_mode = byLid ? 'lid' : 'pn';
      if (byLid) attrs.participant_pn = opts.from.jid;
      else attrs.participant_lid = opts.from.lidJid;
    } else {
      attrs.from = senderJid;
      if (byLid) attrs.sender_pn = opts.from.jid;
      else attrs.sender_lid = opts.from.lidJid;
    }
    const encAttrs = (type: string): Record<string, string> =>
      mediatype ? { v: '2', type, mediatype } : { v: '2', type };
    const content: BinaryNode[] = [];
    if (opts.encryption === 'plaintext') {
      content.push({
        tag: 'plaintext',
        attrs: mediatype ? { mediatype } : {},
        content: Buffer.from(proto.Message.encode(message).finish()),
      });
    } else {
      // Baileys decrypts with the LID address when it knows the contact's LID, so the
      // contact must hold its session under the same address the device will use.
      const target = byLid ? lidDeviceJid() : deviceJid();
      const bundle = () => account.bundle;
      if (opts.group) {
        const { ciphertext, senderKeyDistributionMessage } = await opts.from.encryptForGroup(
          opts.group,
          message,
        );
        const distribution = await opts.from.encryptTo(target, bundle, {
          senderKeyDistributionMessage: {
            groupId: opts.group,
            axolotlSenderKeyDistributionMessage: senderKeyDistributionMessage,
          },
        });
        content.push({
          tag: 'enc',
          attrs: encAttrs(distribution.type),
          content: Buffer.from(distribution.ciphertext),
        });
        content.push({ tag: 'enc', attrs: encAttrs('skmsg'), content: Buffer.from(ciphertext) });
      } else {
        const enc = await opts.from.encryptTo(target, bundle, message);
        content.push({
          tag: 'enc',
          attrs: encAttrs(enc.type),
          content: Buffer.from(enc.ciphertext),
        });
      }
    }
    sendNode(conn, { tag: 'message', attrs, content });
    return id;
  };

  const sendStreamError = (code: number) => {
    const conn = requireCurrent('send a stream error');
    const node: BinaryNode =
      code === 440
        ? {
            tag: 'stream:error',
            attrs: {},
            content: [{ tag: 'conflict', attrs: { type: 'replaced' } }],
          }
        : { tag: 'stream:error', attrs: { code: String(code) } };
    sendNode(conn, node);
  };

  return {
    /** `ws://127.0.0.1:<port>`, for `makeWASocket({ waWebSocketUrl })`. */
    url: `ws://127.0.0.1:${ws.port}`,
    /** The paired account's phone-number jid (no device). */
    get accountJid() {
      return jidEncode(account.phone, S_WHATSAPP_NET);
    },
    /** The paired account's LID jid (no device). */
    get accountLid() {
      return jidEncode(account.lid, 'lid');
    },
    /** How many WebSockets were accepted so far. */
    get connectionCount() {
      return connections.length;
    },
    /** Every WebSocket accepted, in order, with open/close times and what it did. */
    get connections(): readonly FakeConnectionRecord[] {
      return connections;
    },
    /** True while the account is paired (between `scanQr` and `logOut`). */
    get paired() {
      return account.paired;
    },

    /**
     * Plays the phone scanning `qr` (the string Baileys put in `connection.update`): checks the
     * ref belongs to a live registration, sends `pair-success` with an ADV identity signed by
     * the account key and HMAC'd with the QR's adv secret, waits for Baileys' `pair-device-sign`,
     * then sends stream error 515 (restart required), as WhatsApp does.
     */
    async scanQr(qr: string): Promise<void> {
      const [ref, noiseKeyB64, identityKeyB64, advB64] = (qr.split('#')[1] ?? '').split(',');
      if (!ref || !noiseKeyB64 || !identityKeyB64 || !advB64) {
        throw new Error(`not a WhatsApp pairing QR: ${qr}`);
      }
      const conn = [...live].find((c) => c.pairRefs.includes(ref));
      if (!conn) throw new Error(`QR ref ${ref} belongs to no live registration connection`);
      const identityKey = Buffer.from(identityKeyB64, 'base64');
      const deviceDetails = proto.ADVDeviceIdentity.encode({
        rawId: 1,
        timestamp: Math.floor(Date.now() / 1000),
        keyIndex: 1,
      }).finish();
      const accountSignature = Curve.sign(
        account.accountKey.private,
        Buffer.concat([Buffer.from([6, 0]), deviceDetails, identityKey]),
      );
      const details = proto.ADVSignedDeviceIdentity.encode({
        details: deviceDetails,
        accountSignatureKey: account.accountKey.public,
        accountSignature: Buffer.from(accountSignature),
      }).finish();
      const hmac = hmacSign(details, Buffer.from(advB64, 'base64'));
      const id = nextTag();
      const reply = new Promise<BinaryNode>((resolve) => conn.awaiting.set(id, resolve));
      sendNode(conn, {
        tag: 'iq',
        attrs: { id, type: 'set', xmlns: 'md', from: S_WHATSAPP_NET, t: unixNow() },
        content: [
          {
            tag: 'pair-success',
            attrs: {},
            content: [
              {
                tag: 'device-identity',
                attrs: {},
                content: Buffer.from(
                  proto.ADVSignedDeviceIdentityHMAC.encode({ details, hmac }).finish(),
                ),
              },
              { tag: 'platform', attrs: { name: 'smba' } },
              { tag: 'device', attrs: { jid: deviceJid(), lid: lidDeviceJid() } },
            ],
          },
        ],
      });
      const answer = await withTimeout(reply, 10_000, 'Baileys did not answer pair-success');
      if (!getBinaryNodeChild(answer, 'pair-device-sign')) {
        throw new Error(`Baileys rejected pair-success: ${JSON.stringify(answer.attrs)}`);
      }
      account.paired = true;
      sendNode(conn, { tag: 'stream:error', attrs: { code: '515' } });
    },

    /**
     * Sends `<stream:error>` on the live connection. 440 is sent as `<conflict type="replaced">`
     * (Baileys maps it to connectionReplaced); any other code goes in the `code` attribute,
     * which Baileys uses as the disconnect status code (515 restart, 401 logged out, 500 …).
     */
    sendStreamError,

    /** Logs the companion out: stream error 401 now, and every later login fails with 401. */
    logOut(): void {
      account.paired = false;
      if (current()) sendStreamError(401);
    },

    /** Cuts the live TCP connection without a close frame. */
    dropSocket(): void {
      requireCurrent('drop the socket').ws.destroy();
    },

    /** Makes a contact with its own Signal identity, known to usync and key fetches. */
    async addContact(opts: {
      phone: string;
      lid?: string;
      pushName?: string;
    }): Promise<FakeContact> {
      const contact = await FakeContact.create(opts);
      contacts.set(contact.jid, contact);
      return contact;
    },

    /** Makes a group the account is in (as super admin), with these contacts. Returns its jid. */
    createGroup(opts: { subject: string; participants: FakeContact[]; id?: string }): string {
      // 18 digits, as WhatsApp's own group ids (`120363…`).
      const jid = `${opts.id ?? `120363${String(Date.now()).slice(-10)}${String(groups.size).padStart(2, '0')}`}@g.us`;
      groups.set(jid, {
        jid,
        subject: opts.subject,
        participants: opts.participants,
        creation: Math.floor(Date.now() / 1000),
      });
      return jid;
    },

    /** Renames a group and tells the client with a `w:gp2` subject notification (→ `groups.update`). */
    setGroupSubject(groupJid: string, subject: string, by?: FakeContact): void {
      const group = groups.get(groupJid);
      if (!group) throw new Error(`unknown group ${groupJid}: create it with createGroup first`);
      group.subject = subject;
      const author = by ?? group.participants[0];
      sendNode(requireCurrent('change a group subject'), {
        tag: 'notification',
        attrs: {
          from: groupJid,
          type: 'w:gp2',
          id: nextTag(),
          t: unixNow(),
          participant: author?.jid ?? jidEncode(account.phone, S_WHATSAPP_NET),
        },
        content: [{ tag: 'subject', attrs: { subject, s_t: unixNow() } }],
      });
    },

    /**
     * Delivers a text from a contact, in a DM or a group, encrypted with the contact's real
     * Signal session (`pkmsg` until the device has answered, then `msg`; `skmsg` in groups,
     * with the sender key riding along in a pairwise part) or as `<plaintext>`.
     * Returns the message id.
     */
    deliverText(opts: DeliverTextOptions): Promise<string> {
      return deliver(opts, { conversation: opts.text }, undefined);
    },

    /**
     * Delivers a media message: encrypts `bytes` as WhatsApp media, serves the blob from the
     * fake media host, and sends an image/audio (voice note: `ptt`)/video/document message
     * pointing at it, encrypted like `deliverText`. Returns the message id and what was served.
     */
    async deliverMedia(opts: DeliverMediaOptions): Promise<DeliveredMedia> {
      const mediaType = opts.kind;
      const encrypted = await encryptMedia(opts.bytes, mediaType);
      const state = opts.blob ?? 'intact';
      const { url, directPath } = mediaHost.publish(encrypted.blob, state);
      const media = {
        // `url` only, no `directPath`: Baileys builds `https://<host><directPath>` when a direct
        // path is present, and the fake host speaks plain http (see the header).
        url,
        mimetype: opts.mimetype,
        mediaKey: encrypted.mediaKey,
        fileSha256: encrypted.fileSha256,
        fileEncSha256: encrypted.fileEncSha256,
        fileLength: encrypted.fileLength,
        mediaKeyTimestamp: Math.floor(Date.now() / 1000),
        ...(opts.declaredLength !== undefined ? { fileLength: opts.declaredLength } : {}),
      };
      const message: proto.IMessage =
        opts.kind === 'image'
          ? { imageMessage: { ...media, caption: opts.caption } }
          : opts.kind === 'video'
            ? { videoMessage: { ...media, caption: opts.caption } }
            : opts.kind === 'audio'
              ? { audioMessage: { ...media, ptt: opts.ptt ?? true, seconds: 1 } }
              : {
                  documentMessage: {
                    ...media,
                    caption: opts.caption,
                    fileName: opts.fileName,
                    title: opts.fileName,
                  },
                };
      // WhatsApp names voice notes `ptt` in the enc node's mediatype.
      const mediatype = opts.kind === 'audio' && (opts.ptt ?? true) ? 'ptt' : opts.kind;
      const id = await deliver(opts, message, mediatype);
      return { id, url, directPath, blob: encrypted.blob, message };
    },

    /** `http://127.0.0.1:<port>`: the fake media host that serves `deliverMedia` blobs. */
    mediaOrigin: mediaHost.origin,

    /** Every GET the media host answered (path, status, headers), oldest first. */
    mediaRequests(): FakeMediaRequest[] {
      return mediaHost.requests();
    },

    /** Decrypted messages the app sent, oldest first (a copy). */
    outbox(): FakeOutboxEntry[] {
      return [...outbox];
    },

    /** Pairing-code requests the client sent (who asked for a code), oldest first; a copy. */
    pairingCodeRequests(): FakePairingCodeRequest[] {
      return pairingCodeRequests.map((request) => ({ ...request }));
    },

    /** Delivery receipts the client sent for delivered messages (id and type). */
    receipts(): { id: string; type: string | undefined }[] {
      return [...receipts];
    },

    /** Resolves with the first outbox entry matching `predicate`, waiting up to `timeoutMs`. */
    waitForOutbox(
      predicate: (entry: FakeOutboxEntry) => boolean,
      timeoutMs = 10_000,
    ): Promise<FakeOutboxEntry> {
      const found = outbox.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const check = () => {
          const entry = outbox.find(predicate);
          if (!entry) return;
          clearTimeout(timer);
          outboxWaiters.delete(check);
          pendingWaits.delete(pending);
          resolve(entry);
        };
        const timer = setTimeout(() => {
          outboxWaiters.delete(check);
          pendingWaits.delete(pending);
          reject(
            new Error(
              `no matching outbox entry within ${timeoutMs} ms; outbox: ${JSON.stringify(outbox.map((e) => e.text))}`,
            ),
          );
        }, timeoutMs);
        const pending = { timer, reject };
        pendingWaits.add(pending);
        outboxWaiters.add(check);
      });
    },

    /** Errors inside the fake (undecryptable client messages, malformed frames); a copy. */
    protocolErrors(): Error[] {
      return [...protocolErrors];
    },

    /** Closes every connection and the listener. */
    async close(): Promise<void> {
      for (const pending of pendingWaits) {
        clearTimeout(pending.timer);
        pending.reject(new Error('fake WhatsApp closed while waiting for the outbox'));
      }
      pendingWaits.clear();
      outboxWaiters.clear();
      for (const conn of live) conn.ws.destroy();
      await Promise.all([ws.close(), mediaHost.close()]);
    },
  };
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function unixNow(): string {
  return String(Math.floor(Date.now() / 1000));
}

function readBigEndian(bytes: Uint8Array | null | undefined): number {
  let n = 0;
  for (const b of bytes ?? []) n = n * 256 + b;
  return n;
}

function bigEndian(n: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  out.writeUIntBE(n, 0, length);
  return out;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

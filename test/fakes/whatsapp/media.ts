/**
 * WhatsApp media for the fake server: encryption as WhatsApp does it, and a small HTTP host on
 * 127.0.0.1 that serves the encrypted blobs, as `mmg.whatsapp.net` does.
 *
 * The format (the same for every media type, only the HKDF info differs):
 * - a random 32-byte media key, expanded with HKDF-SHA256 (info `WhatsApp <Type> Keys`) to
 *   112 bytes: iv = [0, 16), cipherKey = [16, 48), macKey = [48, 80);
 * - the blob is AES-256-CBC(cipherKey, iv, plaintext, PKCS#7) followed by the first 10 bytes of
 *   HMAC-SHA256(macKey, iv ‖ ciphertext);
 * - the message carries `mediaKey`, `fileSha256` (of the plaintext), `fileEncSha256` (of the
 *   blob) and `fileLength` (of the plaintext).
 *
 * The key expansion is Baileys' own `getMediaKeys`; the cipher and MAC are written here from
 * `node:crypto` rather than taken from Baileys' `encryptedStream`, so that a format mistake on
 * either side shows up instead of cancelling out.
 */
import {
  DEFAULT_ORIGIN,
  getMediaKeys,
  getUrlFromDirectPath,
  type MediaType,
} from '@whiskeysockets/baileys';
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Bytes of the truncated HMAC at the end of a media blob. */
export const MEDIA_MAC_BYTES = 10;

/** What the fake does to a blob before serving it, to test how the app copes. */
export type FakeMediaBlobState =
  /** Served as encrypted. */
  | 'intact'
  /** The trailing MAC is flipped; the ciphertext is intact. */
  | 'bad-mac'
  /**
   * The first ciphertext byte is flipped (the MAC no longer matches): CBC then decrypts the
   * first two blocks wrongly but the padding stays valid, so a client that does not check the
   * MAC or `fileSha256` gets wrong bytes without an error.
   */
  | 'bad-body'
  /** Not served: 404, as for media that expired on WhatsApp's servers. */
  | 'missing'
  /**
   * The response declares the full length, sends the first half, then the connection is cut.
   */
  | 'cut';

export type EncryptedMedia = {
  mediaKey: Buffer;
  /** Ciphertext ‖ 10-byte MAC: what the media host serves. */
  blob: Buffer;
  fileSha256: Buffer;
  fileEncSha256: Buffer;
  fileLength: number;
};

/** Encrypts `plaintext` as WhatsApp media of `mediaType` (`image`, `audio`, `video`, `document`…). */
export async function encryptMedia(
  plaintext: Buffer,
  mediaType: MediaType,
): Promise<EncryptedMedia> {
  const mediaKey = randomBytes(32);
  const { iv, cipherKey, macKey } = await macKeys(mediaKey, mediaType);
  const cipher = createCipheriv('aes-256-cbc', cipherKey, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const mac = createHmac('sha256', macKey)
    .update(iv)
    .update(ciphertext)
    .digest()
    .subarray(0, MEDIA_MAC_BYTES);
  const blob = Buffer.concat([ciphertext, mac]);
  return {
    mediaKey,
    blob,
    fileSha256: sha256(plaintext),
    fileEncSha256: sha256(blob),
    fileLength: plaintext.length,
  };
}

/**
 * Checks a blob as a careful client would before trusting it: its MAC against the media key,
 * then its SHA-256 against `fileEncSha256`. Returns what is wrong, or undefined.
 * (For the fake's own tests; Baileys' download checks neither.)
 */
export async function checkMediaBlob(
  blob: Buffer,
  expected: { mediaKey: Uint8Array; fileEncSha256: Uint8Array },
  mediaType: MediaType,
): Promise<string | undefined> {
  const { iv, macKey } = await macKeys(expected.mediaKey, mediaType);
  const ciphertext = blob.subarray(0, blob.length - MEDIA_MAC_BYTES);
  const mac = createHmac('sha256', macKey).update(iv).update(ciphertext).digest();
  if (!mac.subarray(0, MEDIA_MAC_BYTES).equals(blob.subarray(blob.length - MEDIA_MAC_BYTES))) {
    return 'MAC mismatch';
  }
  return sha256(blob).equals(Buffer.from(expected.fileEncSha256))
    ? undefined
    : 'fileEncSha256 mismatch';
}

/** The iv and MAC key of a media key, with the MAC key Baileys' type leaves optional. */
async function macKeys(
  mediaKey: Uint8Array,
  mediaType: MediaType,
): Promise<{ iv: Uint8Array; cipherKey: Uint8Array; macKey: Uint8Array }> {
  const { iv, cipherKey, macKey } = await getMediaKeys(mediaKey, mediaType);
  if (!macKey) throw new Error(`getMediaKeys gave no macKey for ${mediaType}`);
  return { iv, cipherKey, macKey };
}

export function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

/** Returns a copy of `blob` altered as `state` says (`missing` and `cut` leave it as is). */
export function tamperBlob(blob: Buffer, state: FakeMediaBlobState): Buffer {
  const copy = Buffer.from(blob);
  if (state === 'bad-mac') copy[copy.length - 1]! ^= 0xff;
  if (state === 'bad-body') copy[0]! ^= 0xff;
  return copy;
}

/** One GET the media host answered. */
export type FakeMediaRequest = {
  path: string;
  status: number;
  /** Request headers as received (Baileys sends `Origin: https://web.whatsapp.com`). */
  headers: http.IncomingHttpHeaders;
};

export type FakeMediaHost = {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /**
   * Serves `blob` (altered per `state`) under a fresh path like WhatsApp's direct paths.
   * Returns the full URL and the path.
   */
  publish(blob: Buffer, state?: FakeMediaBlobState): { url: string; directPath: string };
  requests(): FakeMediaRequest[];
  close(): Promise<void>;
};

type Published = { blob: Buffer; state: FakeMediaBlobState };

/**
 * The media host's files and request log, without a server of its own: `handle` answers a
 * request, so the fake WhatsApp server can serve media on the same port as its WebSocket (the
 * origin Clawbar trusts for media is the one of `CLAWBAR_WA_URL`). Only GET of published paths
 * succeeds.
 */
export function createMediaFiles(): {
  handle(req: http.IncomingMessage, res: http.ServerResponse): void;
  /** The host's API once its origin is known; `close` is the caller's to supply. */
  host(origin: string, close: () => Promise<void>): FakeMediaHost;
} {
  const blobs = new Map<string, Published>();
  const requests: FakeMediaRequest[] = [];
  return {
    handle(req, res) {
      const path = new URL(req.url ?? '/', 'http://fake').pathname;
      const published = req.method === 'GET' ? blobs.get(path) : undefined;
      const status = !published || published.state === 'missing' ? 404 : 200;
      requests.push({ path, status, headers: req.headers });
      if (!published || status !== 200) {
        res.writeHead(status, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(published.blob.length),
      });
      if (published.state === 'cut') {
        res.write(published.blob.subarray(0, Math.floor(published.blob.length / 2)), () =>
          res.socket?.destroy(),
        );
        return;
      }
      res.end(published.blob);
    },
    host(origin, close) {
      return {
        origin,
        publish(blob, state = 'intact') {
          // The shape of WhatsApp's direct paths: /v/t62.7118-24/<id>.enc?… (query left out).
          const directPath = `/v/t62.7118-24/${randomBytes(16).toString('hex')}.enc`;
          blobs.set(directPath, { blob: tamperBlob(blob, state), state });
          return { url: `${origin}${directPath}`, directPath };
        },
        requests: () => [...requests],
        close,
      };
    },
  };
}

/** Starts a media host of its own on an ephemeral 127.0.0.1 port. */
export async function startMediaHost(): Promise<FakeMediaHost> {
  const files = createMediaFiles();
  const server = http.createServer((req, res) => files.handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return files.host(
    `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  );
}

/** The WhatsApp media fields a download needs, as in `imageMessage`, `audioMessage`… */
export type DownloadableMedia = {
  url?: string | null;
  directPath?: string | null;
  mediaKey?: Uint8Array | null;
  fileSha256?: Uint8Array | null;
  fileEncSha256?: Uint8Array | null;
};

/**
 * A reference for the channel's media download, proved against this fake (the channel writes
 * its own in main/): what Baileys' `downloadMediaMessage` does, plus what it leaves out.
 * - The URL is Baileys' choice: `getUrlFromDirectPath(directPath, host of url)` when there is a
 *   direct path, else `url` as is.
 * - The fetch has a deadline and its own AbortSignal, and the body is read here, so a cut
 *   connection rejects (Baileys' stream then never ends and its source emits an uncaught error).
 * - The blob is capped at `maxBytes` (+ padding and MAC) while it streams.
 * - The blob's SHA-256 and MAC are checked before decrypting, and the plaintext's SHA-256
 *   after; a tampered or foreign blob is refused instead of saved as garbage.
 */
export async function downloadVerifiedMedia(
  media: DownloadableMedia,
  mediaType: MediaType,
  opts: { maxBytes: number; timeoutMs: number },
): Promise<Buffer> {
  const { mediaKey, fileSha256, fileEncSha256 } = media;
  if (!mediaKey || !fileSha256 || !fileEncSha256) {
    throw new Error('the media message lacks mediaKey, fileSha256 or fileEncSha256');
  }
  const host = media.url ? new URL(media.url).host : undefined;
  const url = media.directPath ? getUrlFromDirectPath(media.directPath, host) : media.url;
  if (!url) throw new Error('the media message has neither url nor directPath');

  const response = await fetch(url, {
    headers: { Origin: DEFAULT_ORIGIN },
    signal: AbortSignal.timeout(opts.timeoutMs),
  });
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new Error(`the media host answered ${response.status} for ${url}`);
  }
  const limit = opts.maxBytes + 16 + MEDIA_MAC_BYTES;
  const chunks: Buffer[] = [];
  let length = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read().catch((err: unknown) => {
      throw new Error(`the media download broke off after ${length} bytes`, { cause: err });
    });
    if (done) break;
    length += value.length;
    if (length > limit) {
      await reader.cancel();
      throw new Error(`the media is larger than ${opts.maxBytes} bytes`);
    }
    chunks.push(Buffer.from(value));
  }
  const blob = Buffer.concat(chunks);
  if (blob.length < 16 + MEDIA_MAC_BYTES) throw new Error('the media blob is too short');
  const problem = await checkMediaBlob(blob, { mediaKey, fileEncSha256 }, mediaType);
  if (problem) throw new Error(`the media blob failed its check: ${problem}`);
  const { iv, cipherKey } = await macKeys(mediaKey, mediaType);
  const decipher = createDecipheriv('aes-256-cbc', cipherKey, iv);
  const plaintext = Buffer.concat([
    decipher.update(blob.subarray(0, blob.length - MEDIA_MAC_BYTES)),
    decipher.final(),
  ]);
  if (!sha256(plaintext).equals(Buffer.from(fileSha256))) {
    throw new Error('the decrypted media does not match fileSha256');
  }
  return plaintext;
}

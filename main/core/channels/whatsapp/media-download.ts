/**
 * Downloads and decrypts WhatsApp media, checking it as it goes. This replaces Baileys'
 * `downloadMediaMessage`, which (in 7.0.0-rc14) checks neither the MAC nor the hashes, hangs
 * and raises an uncaught `TypeError: terminated` when the connection is cut, ignores abort
 * signals, and fetches whatever URL the sender put in the message.
 *
 * The format: the message carries a 32-byte `mediaKey`, expanded by HKDF (Baileys'
 * `getMediaKeys`) into an iv, an AES-256-CBC key and a MAC key. The host serves
 * `ciphertext ‖ first 10 bytes of HMAC-SHA256(macKey, iv ‖ ciphertext)`; `fileEncSha256` is the
 * SHA-256 of that whole blob and `fileSha256` the SHA-256 of the plaintext.
 *
 * What this module guarantees, since the message (URL, keys, sizes) is the sender's:
 * - **Only media hosts are fetched.** The URL must be `https://` on a host ending in
 *   `.whatsapp.net` (WhatsApp's media hosts, default port), or have one of the exact origins in
 *   `allowedOrigins`; anything else is refused before a request is made, so a message cannot
 *   make this machine GET an address on its network. Redirects are not followed.
 *   The channel passes as `allowedOrigins` the origin of `CLAWBAR_WA_URL` (ws→http,
 *   wss→https) when it is set: media then comes from the same service the user pointed Clawbar
 *   at (the fake WhatsApp server in tests). Without it, only `*.whatsapp.net`.
 * - **Nothing unchecked is kept.** Plaintext is yielded as it is decrypted, so it can be written
 *   to disk while it streams, but the iterator throws at the end unless the MAC,
 *   `fileEncSha256` and `fileSha256` all match: the consumer (media.ts `saveInboundMedia`)
 *   then deletes what it wrote.
 * - **It always ends.** A deadline and the caller's signal abort the fetch; every network
 *   error, a cut connection too, rejects the iterator (it never surfaces as an uncaught error);
 *   the bytes are counted against the cap as they arrive and the download stops past it.
 */
import {
  DEF_MEDIA_HOST,
  DEFAULT_ORIGIN,
  getMediaKeys,
  normalizeMessageContent,
  proto,
  type MediaType,
} from '@whiskeysockets/baileys';
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Bytes of the truncated HMAC at the end of a media blob. */
export const MEDIA_MAC_BYTES = 10;
/** AES block size: CBC with PKCS#7 padding adds 1 to 16 bytes. */
const AES_BLOCK_BYTES = 16;
/** Lengths of a media key and of a SHA-256 digest. */
const KEY_BYTES = 32;
const SHA256_BYTES = 32;
/** HTTP statuses by which a media host says the media expired; the sender's phone may re-upload. */
const GONE_STATUSES: ReadonlySet<number> = new Set([404, 410]);

/** The fields of a WhatsApp media message (`imageMessage`, `audioMessage`…) a download needs. */
export interface DownloadableMedia {
  url?: string | null;
  directPath?: string | null;
  mediaKey?: Uint8Array | null;
  fileEncSha256?: Uint8Array | null;
  fileSha256?: Uint8Array | null;
  /** The plaintext length the message declares; when given, a longer blob is refused early. */
  fileLength?: number | Long | null;
}

/** Protobuf's 64-bit integers, as Baileys types `fileLength`. */
type Long = { toString(): string };

export interface DownloadMediaOptions {
  /**
   * Origins (`http://127.0.0.1:8080`) fetched besides `https://*.whatsapp.net`: compared
   * exactly, after URL normalization. @default none
   */
  allowedOrigins?: readonly string[];
  /** The largest plaintext accepted; the encrypted blob is cut off past its matching length. */
  maxBytes: number;
  /** Deadline for the whole download, headers and body, in milliseconds. */
  timeoutMs: number;
  /** Aborts the download; the iterator then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Why a media download was refused or failed. `status` is the host's HTTP status, if any. */
export class MediaDownloadError extends Error {
  override readonly name = 'MediaDownloadError';
  constructor(
    message: string,
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** The host said the media is gone (404/410): asking the sender's phone to re-upload may help. */
  get mediaGone(): boolean {
    return this.status !== undefined && GONE_STATUSES.has(this.status);
  }
}

/**
 * Downloads `media` of `mediaType` and yields its decrypted bytes as they arrive. Rejects
 * (never throws uncaught) when the message lacks its keys or hashes, the URL's origin is not
 * allowed (before any request), the host does not answer 200, the connection breaks, the blob
 * passes the cap, the deadline passes or `signal` aborts, and at the end unless the MAC,
 * `fileEncSha256` and `fileSha256` all match.
 */
export async function* downloadWhatsAppMedia(
  media: DownloadableMedia,
  mediaType: MediaType,
  options: DownloadMediaOptions,
): AsyncGenerator<Uint8Array, void, undefined> {
  const { mediaKey, fileEncSha256, fileSha256 } = media;
  if (!isBytes(mediaKey, KEY_BYTES)) {
    throw new MediaDownloadError(`the media message has no valid mediaKey (${KEY_BYTES} bytes)`);
  }
  if (!isBytes(fileEncSha256, SHA256_BYTES) || !isBytes(fileSha256, SHA256_BYTES)) {
    throw new MediaDownloadError('the media message lacks fileEncSha256 or fileSha256');
  }
  const url = mediaUrl(media, options.allowedOrigins ?? []);
  const limit = encryptedLimit(options.maxBytes, declaredLength(media.fileLength));
  options.signal?.throwIfAborted();

  const { iv, cipherKey, macKey } = await getMediaKeys(mediaKey, mediaType);
  if (!macKey) throw new MediaDownloadError(`no MAC key is defined for ${mediaType} media`);

  // One signal for the deadline and the caller's abort; both are undone in `finally`.
  const controller = new AbortController();
  const deadline = setTimeout(
    () =>
      controller.abort(
        new MediaDownloadError(`the media download took longer than ${options.timeoutMs} ms`),
      ),
    options.timeoutMs,
  );
  const onAbort = (): void => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let finished = false;
  const failure = (what: string, err: unknown): unknown =>
    controller.signal.aborted
      ? controller.signal.reason
      : new MediaDownloadError(`${what}: ${messageOf(err)}`, undefined, { cause: err });

  try {
    let response: Response;
    try {
      response = await fetch(url, {
        headers: { Origin: DEFAULT_ORIGIN },
        redirect: 'manual',
        signal: controller.signal,
      });
    } catch (err) {
      throw failure(`the media host ${url.origin} could not be reached`, err);
    }
    if (response.status !== 200 || !response.body) {
      await response.body?.cancel().catch(() => undefined);
      const redirect = response.status >= 300 && response.status < 400;
      throw new MediaDownloadError(
        redirect
          ? `the media host ${url.origin} redirected (${response.status}); redirects are not followed`
          : `the media host ${url.origin} answered ${response.status}`,
        response.status,
      );
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    if (declared > limit) {
      await response.body.cancel().catch(() => undefined);
      throw tooLarge(options.maxBytes);
    }

    const mac = createHmac('sha256', macKey).update(iv);
    const blobHash = createHash('sha256');
    const plainHash = createHash('sha256');
    const decipher = createDecipheriv('aes-256-cbc', cipherKey, iv);
    // The last 10 bytes are the MAC, not ciphertext; where the blob ends is only known at the
    // end, so the last 10 bytes seen are held back until more arrive.
    let held: Buffer = Buffer.alloc(0);
    let received = 0;
    reader = response.body.getReader();
    for (;;) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (err) {
        throw failure(`the media download broke off after ${received} bytes`, err);
      }
      if (next.done) break;
      received += next.value.byteLength;
      if (received > limit) throw tooLarge(options.maxBytes);
      blobHash.update(next.value);
      const joined = Buffer.concat([held, next.value]);
      const ciphertext = joined.subarray(0, Math.max(0, joined.length - MEDIA_MAC_BYTES));
      held = joined.subarray(ciphertext.length);
      mac.update(ciphertext);
      const plaintext = decipher.update(ciphertext);
      if (plaintext.length > 0) {
        plainHash.update(plaintext);
        yield plaintext;
      }
    }
    finished = true;

    const cipherLength = received - MEDIA_MAC_BYTES;
    if (cipherLength < AES_BLOCK_BYTES || cipherLength % AES_BLOCK_BYTES !== 0) {
      throw new MediaDownloadError(`the media blob has an impossible length (${received} bytes)`);
    }
    const expectedMac = mac.digest().subarray(0, MEDIA_MAC_BYTES);
    if (!timingSafeEqual(expectedMac, held)) {
      throw new MediaDownloadError('the media blob failed its MAC check (tampered or corrupted)');
    }
    if (!timingSafeEqual(blobHash.digest(), fileEncSha256)) {
      throw new MediaDownloadError(
        'the media blob does not match the fileEncSha256 it was sent with',
      );
    }
    let last: Buffer;
    try {
      last = decipher.final();
    } catch (err) {
      throw new MediaDownloadError('the media blob has invalid padding', undefined, { cause: err });
    }
    plainHash.update(last);
    if (!timingSafeEqual(plainHash.digest(), fileSha256)) {
      throw new MediaDownloadError(
        'the decrypted media does not match the fileSha256 it was sent with',
      );
    }
    if (last.length > 0) yield last;
  } finally {
    clearTimeout(deadline);
    options.signal?.removeEventListener('abort', onAbort);
    // Stopped early (an error, the cap, or the consumer returned): release the connection.
    if (reader && !finished) await reader.cancel().catch(() => undefined);
  }
}

/** How long the sender's phone gets to upload expired media again. */
export const REUPLOAD_TIMEOUT_MS = 30_000;

/** {@link downloadMessageMedia}'s options: the download's, plus how to get expired media again. */
export interface DownloadMessageMediaOptions extends DownloadMediaOptions {
  /**
   * Asks the sender's phone to upload the media again and resolves with the updated message
   * (Baileys' `sock.updateMediaMessage`); called once, when the host says the media is gone.
   * @default none: expired media is not retried
   */
  reupload?: () => Promise<proto.IMessage | null | undefined>;
  /** @default {@link REUPLOAD_TIMEOUT_MS} */
  reuploadTimeoutMs?: number;
}

/**
 * Downloads the media of a WhatsApp message (see {@link downloadWhatsAppMedia}); when the host
 * says it expired (404/410), asks for a re-upload once and downloads the new copy, checked the
 * same way. Rejects when the message has no media.
 */
export async function* downloadMessageMedia(
  message: proto.IMessage | null | undefined,
  options: DownloadMessageMediaOptions,
): AsyncGenerator<Uint8Array, void, undefined> {
  const found = downloadableMediaOf(message);
  if (!found) throw new MediaDownloadError('the message has no downloadable media');
  try {
    // A gone-status error comes before the first chunk, so nothing was yielded when it is caught.
    yield* downloadWhatsAppMedia(found.media, found.mediaType, options);
    return;
  } catch (err) {
    if (!(err instanceof MediaDownloadError && err.mediaGone && options.reupload)) throw err;
  }
  const updated = await withDeadline(
    options.reupload(),
    options.reuploadTimeoutMs ?? REUPLOAD_TIMEOUT_MS,
    options.signal,
  );
  const again = downloadableMediaOf(updated);
  if (!again) throw new MediaDownloadError('the re-uploaded message has no downloadable media');
  yield* downloadWhatsAppMedia(again.media, again.mediaType, options);
}

/**
 * `promise`, or a rejection once `timeoutMs` pass or `signal` aborts (Baileys waits for a
 * re-upload answer with no deadline). A late rejection of `promise` is swallowed.
 */
async function withDeadline<T>(
  promise: Promise<T>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<T> {
  promise.catch(() => undefined);
  signal?.throwIfAborted();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new MediaDownloadError(
            `the sender's phone did not upload the media again in ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    onAbort = () => reject(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([
      promise.catch((err: unknown) => {
        throw new MediaDownloadError(
          `asking for a re-upload failed: ${messageOf(err)}`,
          undefined,
          {
            cause: err,
          },
        );
      }),
      stop,
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The URL to fetch, as WhatsApp clients pick it (the direct path on the host of `url`, else
 * `url`), refused unless its origin is allowed. Throws {@link MediaDownloadError}.
 */
export function mediaUrl(media: DownloadableMedia, allowedOrigins: readonly string[]): URL {
  const given = media.url ? parseUrl(media.url) : undefined;
  let url: URL | undefined;
  if (media.directPath) {
    // A direct path is a path: `//host`, `@host` or `.evil` after the host would move it.
    if (!/^\/(?!\/)/.test(media.directPath)) {
      throw new MediaDownloadError('the media message has a directPath that is not a path');
    }
    url = parseUrl(`${given?.origin ?? `https://${DEF_MEDIA_HOST}`}${media.directPath}`);
  } else {
    url = given;
  }
  if (!url) throw new MediaDownloadError('the media message has no usable url or directPath');
  if (!isAllowedOrigin(url, allowedOrigins)) {
    throw new MediaDownloadError(
      `the media URL's origin ${url.origin} is not a WhatsApp media host (https://*.whatsapp.net) nor an allowed origin; it was not fetched`,
    );
  }
  return url;
}

/** `https://*.whatsapp.net` on the default port, or exactly one of `allowedOrigins`. */
export function isAllowedOrigin(url: URL, allowedOrigins: readonly string[]): boolean {
  if (url.username || url.password) return false;
  if (url.protocol === 'https:' && url.port === '' && url.hostname.endsWith('.whatsapp.net')) {
    return true;
  }
  return allowedOrigins.some((origin) => parseUrl(origin)?.origin === url.origin);
}

/**
 * The media origin that goes with a `CLAWBAR_WA_URL` (`ws://127.0.0.1:9/ws` →
 * `http://127.0.0.1:9`), or undefined when it is not set or not a ws(s) URL.
 */
export function mediaOriginForWaUrl(waUrl: string | undefined): string | undefined {
  const url = waUrl ? parseUrl(waUrl) : undefined;
  if (url?.protocol !== 'ws:' && url?.protocol !== 'wss:') return undefined;
  return `${url.protocol === 'wss:' ? 'https' : 'http'}://${url.host}`;
}

/**
 * The downloadable media in a message and its Baileys media type (which picks the HKDF keys),
 * with the same unwrapping and order as inbound.ts's `mediaOf`; null when there is none.
 */
export function downloadableMediaOf(
  message: proto.IMessage | null | undefined,
): { media: DownloadableMedia; mediaType: MediaType } | null {
  let content = normalizeMessageContent(message ?? undefined);
  const edited = content?.protocolMessage;
  if (edited?.type === proto.Message.ProtocolMessage.Type.MESSAGE_EDIT) {
    content = normalizeMessageContent(edited.editedMessage ?? undefined);
  }
  if (!content) return null;
  if (content.imageMessage) return { media: content.imageMessage, mediaType: 'image' };
  if (content.videoMessage) return { media: content.videoMessage, mediaType: 'video' };
  if (content.audioMessage) return { media: content.audioMessage, mediaType: 'audio' };
  if (content.documentMessage) return { media: content.documentMessage, mediaType: 'document' };
  if (content.stickerMessage) return { media: content.stickerMessage, mediaType: 'sticker' };
  return null;
}

/**
 * The most encrypted bytes accepted: the plaintext cap (or the declared length, when smaller)
 * plus a full block of padding and the MAC.
 */
function encryptedLimit(maxBytes: number, declared: number | undefined): number {
  const plain = declared !== undefined ? Math.min(declared, maxBytes) : maxBytes;
  return plain + AES_BLOCK_BYTES + MEDIA_MAC_BYTES;
}

function declaredLength(value: DownloadableMedia['fileLength']): number | undefined {
  if (value === null || value === undefined) return undefined;
  const n = Number(typeof value === 'number' ? value : value.toString());
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

function isBytes(value: Uint8Array | null | undefined, length: number): value is Uint8Array {
  return value instanceof Uint8Array && value.byteLength === length;
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function tooLarge(maxBytes: number): MediaDownloadError {
  return new MediaDownloadError(`the media is larger than ${maxBytes} bytes, the most accepted`);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

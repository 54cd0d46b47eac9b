/**
 * Media that arrives on WhatsApp (images, videos, audio, voice notes, documents, stickers) is
 * saved into the group's `inbox/` folder, so the agent can open it, and the stored message
 * names it: `[image inbox/2026-11-25-image-1a2b3c4d.jpg] caption`.
 *
 * Everything here is hostile. The sender picks the mimetype, the file name and the size; the
 * agent can write its own group folder, so `inbox/` (or a name inside it) may be a link it
 * planted to somewhere on the host, a FIFO, or a file. So:
 * - the folder is reached with the no-link-following walk of safe-fs.ts (`ensureDirInside`),
 *   then held open, and the file is created *through that descriptor* with
 *   `O_CREAT|O_EXCL|O_NOFOLLOW`: nothing is ever written through a link or over a file;
 * - the name is ours: the date, the kind, a hash of the message id and an extension from an
 *   allowlist of mimetypes. Only a document keeps a stem of its own name, reduced to ASCII
 *   letters, digits, `-` and `_`;
 * - the download is streamed to the file and counted; past the cap it stops and the partial
 *   file is removed, as it is when the download fails or is aborted.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  childPath,
  ensureDirInside,
  errorCode,
  type OpenDir,
  UnsafePathError,
  walkMode,
} from '../../safe-fs.js';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW } = fs.constants;

/** The largest media file saved; a larger one is refused (and its download stopped). 25 MiB. */
export const MAX_INBOUND_MEDIA_BYTES = 25 * 1024 * 1024;

/** The folder inside a group's folder that media goes to. */
export const INBOX_DIR = 'inbox';

/** The longest stem kept from a document's own file name. */
export const MAX_DOCUMENT_STEM_CHARS = 40;

/**
 * How many names are tried when the first is taken (two media of one message id on one day,
 * or names the agent planted): `-2`, `-3`… Past this the media is refused, not overwritten.
 */
export const MAX_NAME_ATTEMPTS = 20;

/** What kind of media arrived; `voice` is a voice note (WhatsApp's push-to-talk audio). */
export type MediaKind = 'image' | 'video' | 'audio' | 'voice' | 'document' | 'sticker';

/** Extensions for the mimetypes we name; any other mimetype is saved as `.bin`. */
const EXTENSION_BY_MIMETYPE: Readonly<Record<string, string>> = {
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/heic': 'heic',
  'image/heif': 'heif',
  'video/mp4': 'mp4',
  'video/3gpp': '3gp',
  'video/quicktime': 'mov',
  'video/webm': 'webm',
  'audio/ogg': 'ogg',
  'audio/opus': 'opus',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'audio/aac': 'aac',
  'audio/amr': 'amr',
  'audio/wav': 'wav',
  'audio/x-wav': 'wav',
  'audio/webm': 'weba',
  'application/pdf': 'pdf',
  'text/plain': 'txt',
  'text/csv': 'csv',
  'text/markdown': 'md',
  'application/json': 'json',
  'application/zip': 'zip',
  'application/rtf': 'rtf',
  'application/msword': 'doc',
  'application/vnd.ms-excel': 'xls',
  'application/vnd.ms-powerpoint': 'ppt',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': 'docx',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': 'xlsx',
  'application/vnd.openxmlformats-officedocument.presentationml.presentation': 'pptx',
  'application/vnd.oasis.opendocument.text': 'odt',
  'application/vnd.oasis.opendocument.spreadsheet': 'ods',
};

/** Saved: where, relative to the group's folder (always `inbox/…`), and how large. */
export interface SavedMedia {
  relativePath: string;
  bytes: number;
}

/** Not saved, and why, in words for the stored message and the log. */
export interface RefusedMedia {
  refused: string;
  /** The underlying error, for the log; never shown to the chat. */
  cause?: unknown;
}

export type SaveMediaResult = SavedMedia | RefusedMedia;

/** What {@link saveInboundMedia} needs to know about one media message. */
export interface InboundMedia {
  /** The group's folder (`$CLAWBAR_HOME/groups/<folder>`); it must be a real directory. */
  groupDir: string;
  kind: MediaKind;
  /** As the sender claims it; only picks the extension, from an allowlist. */
  mimetype: string | null | undefined;
  /** The sender's own file name (documents); only a sanitized stem of it is used. */
  fileName?: string | null;
  /** When the message was sent, in milliseconds since the epoch: the name's date. */
  timestamp: number;
  /** WhatsApp's message id; its hash makes the name (the id itself never reaches the disk). */
  messageId: string;
  /** @default {@link MAX_INBOUND_MEDIA_BYTES} */
  maxBytes?: number;
  /**
   * The size the message declares, when it does: larger than `maxBytes` is refused without
   * downloading. It is only a claim, so the download is counted all the same.
   */
  declaredBytes?: number | null;
  /** Stops the download (and removes the partial file), e.g. at shutdown or on a timeout. */
  signal?: AbortSignal;
  /** Starts the download: Baileys' `downloadMediaMessage(msg, 'stream')` or anything alike. */
  download: () => Promise<AsyncIterable<Uint8Array> | Readable>;
}

/** Type guard: the media was saved. */
export function isSavedMedia(result: SaveMediaResult): result is SavedMedia {
  return 'relativePath' in result;
}

/**
 * Downloads one media message into `<groupDir>/inbox/`, under a name of our own, never
 * following a link and never overwriting anything. Resolves with where it went, or with why it
 * was not saved (too large, the download failed, `inbox` is a link…); it does not reject.
 */
export async function saveInboundMedia(media: InboundMedia): Promise<SaveMediaResult> {
  const maxBytes = media.maxBytes ?? MAX_INBOUND_MEDIA_BYTES;
  if (media.declaredBytes != null && media.declaredBytes > maxBytes) {
    return { refused: tooLarge(maxBytes) };
  }
  if (media.signal?.aborted) return { refused: 'the download was cancelled' };

  let inbox: OpenDir;
  try {
    inbox = openInbox(media.groupDir);
  } catch (err) {
    return { refused: inboxRefusal(err), cause: err };
  }
  try {
    const baseName = mediaBaseName(media);
    const extension = extensionFor(media.mimetype);
    const created = await createUniqueFile(inbox, baseName, extension);
    if ('refused' in created) return created;
    const { handle, name } = created;
    const at = childPath(inbox, name);
    let bytes: number;
    try {
      bytes = await streamInto(handle, media, maxBytes);
    } catch (err) {
      await handle.close().catch(() => undefined);
      // The name is reached through the inbox descriptor, and unlink never follows a link at
      // its last name: only the file made above goes.
      await fsp.rm(at, { force: true });
      if (err instanceof TooLargeError) return { refused: tooLarge(maxBytes) };
      if (media.signal?.aborted) return { refused: 'the download was cancelled', cause: err };
      return { refused: `the download failed: ${messageOf(err)}`, cause: err };
    }
    await handle.close();
    return { relativePath: `${INBOX_DIR}/${name}`, bytes };
  } catch (err) {
    return { refused: `it could not be saved: ${messageOf(err)}`, cause: err };
  } finally {
    fs.closeSync(inbox.fd);
  }
}

/**
 * The text stored for a media message: what arrived and where, then the caption.
 * `[image inbox/2026-11-25-image-1a2b3c4d.jpg] look at this`, `[voice note inbox/….ogg]`,
 * `[document inbox/….pdf (report.pdf)]`, or `[image not saved: larger than 25 MiB]`.
 * `fileName` (the sender's) is shown for a document, cleaned of control and direction
 * characters, so it reads as what it is.
 */
export function describeMedia(
  kind: MediaKind,
  saved: SaveMediaResult | string,
  caption?: string | null,
  fileName?: string | null,
): string {
  const label = kind === 'voice' ? 'voice note' : kind;
  const where =
    typeof saved === 'string'
      ? saved
      : isSavedMedia(saved)
        ? saved.relativePath
        : `not saved: ${saved.refused}`;
  const shownName = kind === 'document' && fileName ? displayFileName(fileName) : '';
  const head = `[${label} ${where}${shownName ? ` (${shownName})` : ''}]`;
  const text = caption?.trim() ?? '';
  return text ? `${head} ${text}` : head;
}

/** The extension for a claimed mimetype (parameters and case ignored), or `bin`. */
export function extensionFor(mimetype: string | null | undefined): string {
  const essence = (mimetype ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return EXTENSION_BY_MIMETYPE[essence] ?? 'bin';
}

/**
 * The name before any collision suffix and the extension:
 * `2026-11-25-image-1a2b3c4d`, or `2026-11-25-document-1a2b3c4d-report` for a document.
 */
export function mediaBaseName(
  media: Pick<InboundMedia, 'kind' | 'timestamp' | 'messageId' | 'fileName'>,
): string {
  const hash = createHash('sha256').update(media.messageId).digest('hex').slice(0, 8);
  const stem = media.kind === 'document' && media.fileName ? safeStem(media.fileName) : '';
  return [localDate(media.timestamp), media.kind, hash, stem].filter(Boolean).join('-');
}

/**
 * A sender's file name reduced to something that is safe as part of ours: its last path
 * segment without the extension, accents dropped, every other character outside
 * `[A-Za-z0-9_-]` (dots, slashes, control and direction characters, other scripts) made `-`,
 * at most {@link MAX_DOCUMENT_STEM_CHARS} long. May be empty.
 */
export function safeStem(fileName: string): string {
  const last = fileName.split(/[/\\]/).pop() ?? '';
  const dot = last.lastIndexOf('.');
  const withoutExtension = dot > 0 ? last.slice(0, dot) : last;
  return withoutExtension
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[-_]+|[-_]+$/g, '')
    .slice(0, MAX_DOCUMENT_STEM_CHARS)
    .replace(/[-_]+$/, '');
}

/** The longest sender's file name shown in a stored message. */
const MAX_DISPLAY_NAME_CHARS = 80;

/** A sender's file name fit to show: no control, format or direction characters, no brackets. */
function displayFileName(fileName: string): string {
  const cleaned = fileName
    // Cc: control (newlines too); Cf: format, which holds the direction overrides (U+202E…).
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+/gu, ' ')
    .replace(/\[/g, '(')
    .replace(/\]/g, ')')
    .replace(/\s+/g, ' ')
    .trim();
  const chars = Array.from(cleaned);
  return chars.length > MAX_DISPLAY_NAME_CHARS
    ? `${chars.slice(0, MAX_DISPLAY_NAME_CHARS - 1).join('')}…`
    : cleaned;
}

/** `YYYY-MM-DD` of the timestamp in the local time zone (`TZ`), the user's calendar. */
function localDate(timestamp: number): string {
  const date = Number.isFinite(timestamp) ? new Date(timestamp) : new Date(0);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/**
 * Makes sure `inbox/` exists in the group's folder, as a real directory reached without
 * following a link, and opens it. Where there is no `/proc/self/fd`, the path is opened again
 * and checked to still lie in the group's folder (safe-fs.ts says what that leaves open).
 */
function openInbox(groupDir: string): OpenDir {
  ensureDirInside(groupDir, INBOX_DIR);
  const root = fs.openSync(groupDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    const shown = path.join(groupDir, INBOX_DIR);
    const fd = fs.openSync(
      childPath({ fd: root, path: groupDir }, INBOX_DIR),
      O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
    );
    if (!walkMode.procFd) {
      const expected = path.join(fs.realpathSync.native(groupDir), INBOX_DIR);
      if (fs.realpathSync.native(shown) !== expected) {
        fs.closeSync(fd);
        throw new UnsafePathError(
          `${shown} moved while it was being opened; it was left alone`,
          groupDir,
          INBOX_DIR,
        );
      }
    }
    return { fd, path: shown };
  } finally {
    fs.closeSync(root);
  }
}

/** Why the inbox could not be used, for the stored message (no host paths: the agent reads it). */
function inboxRefusal(err: unknown): string {
  const code = errorCode(err);
  if (err instanceof UnsafePathError || code === 'ELOOP' || code === 'ENOTDIR') {
    return `the group's folder or its ${INBOX_DIR}/ is not a plain folder (a link or another file is in its place), so nothing was written there`;
  }
  return `the group's ${INBOX_DIR}/ folder could not be opened (${code ?? 'error'})`;
}

/**
 * Creates `<base>.<ext>`, or `<base>-2.<ext>`, `-3`… when a name is taken, inside the open
 * inbox, with `O_CREAT|O_EXCL|O_NOFOLLOW`: whatever is at a taken name (a file, a link, a FIFO)
 * is left as it is.
 */
async function createUniqueFile(
  inbox: OpenDir,
  base: string,
  extension: string,
): Promise<{ handle: fsp.FileHandle; name: string } | RefusedMedia> {
  for (let attempt = 1; attempt <= MAX_NAME_ATTEMPTS; attempt++) {
    const name = `${base}${attempt === 1 ? '' : `-${attempt}`}.${extension}`;
    try {
      const handle = await fsp.open(
        childPath(inbox, name),
        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
        0o644,
      );
      // The umask may have taken bits off; the agent (another uid) must be able to read it.
      await handle.chmod(0o644);
      return { handle, name };
    } catch (err) {
      // EEXIST: taken (O_EXCL refuses a link at the name too); ELOOP: a link, on some systems.
      if (errorCode(err) !== 'EEXIST' && errorCode(err) !== 'ELOOP') throw err;
    }
  }
  return {
    refused: `${MAX_NAME_ATTEMPTS} names for it were already taken in the inbox folder`,
  };
}

class TooLargeError extends Error {
  override readonly name = 'TooLargeError';
}

/** Writes the download into `handle`, counting; throws {@link TooLargeError} past `maxBytes`. */
async function streamInto(
  handle: fsp.FileHandle,
  media: InboundMedia,
  maxBytes: number,
): Promise<number> {
  const source = await media.download();
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const stop = (): void => {
    // A Readable is destroyed (its socket closes); a plain iterator is told it is done.
    if (isReadable(source)) source.destroy();
    else void Promise.resolve(iterator.return?.()).catch(() => undefined);
  };
  let bytes = 0;
  try {
    for (;;) {
      const next = await nextOrAbort(iterator, media.signal);
      if (next.done) break;
      const chunk = toBytes(next.value);
      bytes += chunk.byteLength;
      if (bytes > maxBytes) throw new TooLargeError(tooLarge(maxBytes));
      for (let written = 0; written < chunk.byteLength;) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written);
        written += bytesWritten;
      }
    }
  } catch (err) {
    stop();
    throw err;
  }
  return bytes;
}

/** The iterator's next value, or a rejection as soon as `signal` aborts (a stalled download). */
function nextOrAbort(
  iterator: AsyncIterator<unknown>,
  signal: AbortSignal | undefined,
): Promise<IteratorResult<unknown>> {
  if (!signal) return iterator.next();
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    iterator.next().then(
      (result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('the download was cancelled');
}

function isReadable(source: unknown): source is Readable {
  return typeof (source as Readable).destroy === 'function';
}

/** A chunk as bytes; a download that yields anything else is broken, and says so. */
function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError(`the download yielded ${typeof chunk}, not bytes`);
}

function tooLarge(maxBytes: number): string {
  return `larger than ${formatBytes(maxBytes)}, the most saved`;
}

function formatBytes(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  if (mib >= 1) return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
  return `${bytes} bytes`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

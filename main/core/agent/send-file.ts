/**
 * The agent's `send_file` host call: a file from the group's own folder goes to the group's own
 * chat, as an image, an audio message or a document, through the outbox.
 *
 * The agent writes its folder, so everything about the file is hostile: the path may climb out
 * (`..`), name a host path, pass a link planted to another group's folder or to `/etc`, be a
 * FIFO that never ends, a directory, a huge file, or a file swapped for a link between a check
 * and a read. So:
 * - **Authorization from the run binding only**: the folder read is the binding's, the chat
 *   written to is the binding's. The payload names a path and a caption, nothing else.
 * - **Paths are read on the host against the group's real folder**, in container terms: a path
 *   relative to `/workspace/group`, or absolute under it. Anything else (the global memory,
 *   extra mounts, the host's own paths) is refused with the way to fix it: copy the file into
 *   the group folder first. Global memory is not sendable even read-only: the issue scopes
 *   send_file to the group's own folder, and a main agent can copy a global file in if it must.
 * - **One read, through one descriptor** (safe-fs.ts `readFileInside`): the walk follows no
 *   link, the file is opened with `O_NOFOLLOW|O_NONBLOCK`, `fstat` on that descriptor must say
 *   regular file, and the bytes are read from it, capped. There is no check-then-open gap to
 *   race: what was checked is what was read.
 * - **Staged at once** into a host folder outside every group folder (`0700`, a name of the
 *   host's own), with `fsync`, before the outbox row is written: the agent cannot change the
 *   file after the call, and the outbox can retry across restarts. The outbox removes the copy
 *   when the item is sent or failed for good (outbox.ts); the local chat moves it into its
 *   archive first, so the path it records stays valid ({@link archiveStagedFile}).
 * - **The type is sniffed from the bytes**, never from the extension: only a real JPEG or PNG
 *   goes as an image, only real Opus/MP3/M4A/AMR as audio; everything else is a document.
 *
 * Sizes: WhatsApp's own limits for what a linked device sends are 16 MB for audio and video and
 * 5 MB for images that render inline (documents may be far larger); the whole file is held in
 * memory once while it is staged, so 16 MiB is the cap for any file, and an image over 5 MiB
 * goes as a document, which WhatsApp does not recompress.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { errorCode, readFileInside, UnsafePathError } from '../safe-fs.js';
import { clip, oneLine } from '../text.js';
import type { Logger } from '../logger.js';
import type { DeliveryOutcome, OutboxWorker } from '../outbox.js';
import type { OutboxAttachment, OutboxFileKind, Store } from '../store/index.js';
import type { HostCallResult, RunBinding } from './host-tools.js';

/** The largest file send_file takes, of any kind. @default 16 MiB */
export const MAX_SEND_FILE_BYTES = 16 * 1024 * 1024;
/** The largest image sent as an image; a larger one goes as a document. @default 5 MiB */
export const MAX_INLINE_IMAGE_BYTES = 5 * 1024 * 1024;
/** Where the group's folder is inside the container: the paths the agent knows. */
export const CONTAINER_GROUP_DIR = '/workspace/group';
/** The longest file name shown to the chat. */
const MAX_FILE_NAME_CHARS = 100;
/** How long send_file waits to say "sent" before it answers "queued". @default 2000 */
const SEND_CONFIRM_MS = 2_000;

/** A refusal the agent reads: why, and how to do it right. */
class SendFileRefusal extends Error {
  override readonly name = 'SendFileRefusal';
}

// ── paths ──────────────────────────────────────────────────────────────────

/**
 * The path inside the group folder that the agent's `raw` path names, as segments joined by
 * `/`. Relative paths start at {@link CONTAINER_GROUP_DIR} (the agent's working directory);
 * absolute ones must lie under it. `.` segments are dropped; `..`, control characters and
 * empty paths are refused.
 * @throws {SendFileRefusal}
 */
export function groupRelativePath(raw: string): string {
  if (raw.trim() === '')
    throw new SendFileRefusal('the path is empty; give a file in ' + CONTAINER_GROUP_DIR);
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(raw)) {
    throw new SendFileRefusal('the path contains control characters; give a plain file path');
  }
  let segments = raw.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) {
    throw new SendFileRefusal(
      `"${clip(raw, 200)}" has a ".." segment; give a path inside ${CONTAINER_GROUP_DIR} without ".."`,
    );
  }
  if (raw.startsWith('/')) {
    const [first, second, ...rest] = segments;
    if (first !== 'workspace' || second !== 'group') {
      throw new SendFileRefusal(
        `only files in ${CONTAINER_GROUP_DIR} can be sent, and "${clip(raw, 200)}" is not there; copy it into ${CONTAINER_GROUP_DIR} first`,
      );
    }
    segments = rest;
  }
  if (segments.length === 0) {
    throw new SendFileRefusal(`${CONTAINER_GROUP_DIR} is a folder; name a file inside it`);
  }
  return segments.join('/');
}

/** The name the chat sees: the path's last segment on one line, clipped; never empty. */
export function displayFileName(relativePath: string): string {
  const base = oneLine(relativePath.split('/').pop() ?? '');
  return base === '' ? 'file' : clip(base, MAX_FILE_NAME_CHARS);
}

// ── types, from the bytes ────────────────────────────────────────────────────

/** What a file is, for the channel. */
export interface SniffedType {
  mimetype: string;
  kind: OutboxFileKind;
}

const startsWith = (bytes: Buffer, ascii: string, at = 0): boolean =>
  bytes.length >= at + ascii.length && bytes.toString('latin1', at, at + ascii.length) === ascii;

/** Mimetypes of zip-based office files: the zip magic says zip, the extension says which. */
const ZIP_OFFICE_TYPES: Readonly<Record<string, string>> = {
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text',
  ods: 'application/vnd.oasis.opendocument.spreadsheet',
};

/** Text mimetypes by extension, for files whose bytes are text. */
const TEXT_TYPES: Readonly<Record<string, string>> = {
  csv: 'text/csv',
  md: 'text/markdown',
  json: 'application/json',
  html: 'text/plain',
};

/**
 * The file's type from its first bytes. The extension only refines a type the bytes already
 * established (which office format a zip is, which text a text is); it never makes a file an
 * image or audio.
 */
export function sniffFileType(bytes: Buffer, fileName: string): SniffedType {
  const ext = path.extname(fileName).slice(1).toLowerCase();
  const document = (mimetype: string): SniffedType => ({ mimetype, kind: 'document' });
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return imageUnlessLarge('image/jpeg', bytes.length);
  }
  if (startsWith(bytes, '\x89PNG\r\n\x1a\n')) return imageUnlessLarge('image/png', bytes.length);
  if (startsWith(bytes, 'GIF87a') || startsWith(bytes, 'GIF89a')) return document('image/gif');
  if (startsWith(bytes, 'RIFF') && startsWith(bytes, 'WEBP', 8)) return document('image/webp');
  if (startsWith(bytes, 'RIFF') && startsWith(bytes, 'WAVE', 8)) return document('audio/wav');
  if (startsWith(bytes, '%PDF-')) return document('application/pdf');
  if (startsWith(bytes, 'OggS')) {
    // WhatsApp plays Opus in Ogg; Vorbis and the rest go as documents.
    return startsWith(bytes, 'OpusHead', 28)
      ? { mimetype: 'audio/ogg; codecs=opus', kind: 'audio' }
      : document('audio/ogg');
  }
  if (startsWith(bytes, 'ID3') || isMpegAudioFrame(bytes)) {
    return { mimetype: 'audio/mpeg', kind: 'audio' };
  }
  if (startsWith(bytes, '#!AMR\n')) return { mimetype: 'audio/amr', kind: 'audio' };
  if (startsWith(bytes, 'ftyp', 4)) {
    const brand = bytes.toString('latin1', 8, 12);
    if (brand === 'M4A ' || brand === 'M4B ') return { mimetype: 'audio/mp4', kind: 'audio' };
    return document('video/mp4');
  }
  if (startsWith(bytes, 'PK\x03\x04')) return document(ZIP_OFFICE_TYPES[ext] ?? 'application/zip');
  if (looksLikeText(bytes)) return document(TEXT_TYPES[ext] ?? 'text/plain');
  return document('application/octet-stream');
}

function imageUnlessLarge(mimetype: string, bytes: number): SniffedType {
  return { mimetype, kind: bytes > MAX_INLINE_IMAGE_BYTES ? 'document' : 'image' };
}

/** An MPEG audio frame header: 11 sync bits, then a layer that is not "reserved". */
function isMpegAudioFrame(bytes: Buffer): boolean {
  if (bytes.length < 2 || bytes[0] !== 0xff) return false;
  const second = bytes[1] as number;
  return (second & 0xe0) === 0xe0 && ((second >> 1) & 0x03) !== 0;
}

/** No NUL byte and valid UTF-8 in the first 8 KiB (a cut multi-byte character at the end is fine). */
function looksLikeText(bytes: Buffer): boolean {
  const head = bytes.subarray(0, 8192);
  if (head.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: true });
    return true;
  } catch {
    return false;
  }
}

// ── staging ────────────────────────────────────────────────────────────────

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

/** The folder staged copies wait in, inside `filesDir`. */
const STAGED_DIR = 'staged';
/** The folder the local chat keeps delivered files in, inside `filesDir`. */
const SENT_DIR = 'sent';

/**
 * Writes `bytes` to a new file of the host's own naming in `<filesDir>/staged/` (`0600`, the
 * folder `0700`), flushed to disk before it returns: the outbox row that names it is committed
 * next, and must never name a file a crash left half-written.
 */
export function stageFile(filesDir: string, bytes: Buffer): string {
  const dir = path.join(filesDir, STAGED_DIR);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const staged = path.join(dir, randomUUID());
  const fd = fs.openSync(staged, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    for (let written = 0; written < bytes.length;) {
      written += fs.writeSync(fd, bytes, written, bytes.length - written);
    }
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(staged, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  return staged;
}

/** A name safe on any file system: ASCII letters, digits, `.`, `-`, `_`; never hidden. */
function safeArchiveName(fileName: string): string {
  const cleaned = fileName.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '');
  return clip(cleaned === '' ? 'file' : cleaned, 80);
}

/**
 * Moves a staged file into `<filesDir>/sent/`, where the local chat keeps what it delivered,
 * and returns its new path. A retry after a crash between the move and the outbox's record
 * finds the file already moved and returns the same path.
 * @throws {Error} when neither the staged copy nor an archived one exists
 */
export function archiveStagedFile(attachment: OutboxAttachment): string {
  const filesDir = path.dirname(path.dirname(attachment.stagedPath));
  const sentDir = path.join(filesDir, SENT_DIR);
  const archived = path.join(
    sentDir,
    `${path.basename(attachment.stagedPath)}-${safeArchiveName(attachment.fileName)}`,
  );
  fs.mkdirSync(sentDir, { recursive: true, mode: 0o700 });
  try {
    fs.renameSync(attachment.stagedPath, archived);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT' || !fs.existsSync(archived)) {
      throw new Error(`the staged copy of ${attachment.fileName} is gone`, { cause: err });
    }
  }
  return archived;
}

/** Bytes for people: `812 B`, `12.3 KB`, `4.1 MB`. */
function humanBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/**
 * How the chat history records a file: `[file report.pdf, application/pdf, 12.3 KB]`, with
 * where the host keeps it when it does (`: /…/sent/…`), then the caption on the next line.
 */
export function describeSentFile(
  attachment: OutboxAttachment,
  caption: string,
  keptAt?: string,
): string {
  const where = keptAt === undefined ? '' : `: ${keptAt}`;
  const line = `[file ${attachment.fileName}, ${attachment.mimetype}, ${humanBytes(attachment.bytes)}${where}]`;
  return caption === '' ? line : `${line}\n${caption}`;
}

// ── the host call ────────────────────────────────────────────────────────────

export interface SendFileDeps {
  store: Pick<Store, 'enqueueOutboundFile'>;
  outbox: Pick<OutboxWorker, 'notify' | 'whenSettled'>;
  /** `$CLAWBAR_HOME/groups`: a group's folder is `<groupsDir>/<binding.folder>`. */
  groupsDir: string;
  /** Host-only folder for staged copies (`$CLAWBAR_HOME/outbox-files`), outside `groupsDir`. */
  filesDir: string;
  /** Removes `<internal>` notes from the caption; null when nothing is left. */
  formatOutbound(text: string): string | null;
  /** Counts the send against the group's message limits, or says why it may not go. */
  takeAllowance(binding: RunBinding): string | null;
  now(): number;
  log: Logger;
  /** @default 16 MiB ({@link MAX_SEND_FILE_BYTES}) */
  maxBytes?: number;
  /** @default 2000 */
  sendConfirmMs?: number;
}

/** Arguments of send_file, as protocol.ts's schema parses them. */
export interface SendFileArgs {
  path: string;
  caption?: string;
}

export class SendFile {
  private readonly log: Logger;

  constructor(private readonly deps: SendFileDeps) {
    this.log = deps.log.child({ mod: 'send-file' });
  }

  /** Checks, stages and queues one file for the bound run's own chat. Never throws. */
  async send(binding: RunBinding, args: SendFileArgs): Promise<HostCallResult> {
    let staged: { attachment: OutboxAttachment; caption: string };
    try {
      staged = this.stage(binding, args);
    } catch (err) {
      const reason = refusalReason(err, path.join(this.deps.groupsDir, binding.folder), args.path);
      if (reason === null) throw err;
      this.log.warn(
        { group: binding.groupJid, path: clip(oneLine(args.path), 200), reason },
        'send_file refused',
      );
      return { ok: false, result: `send_file refused: ${reason}` };
    }
    const { attachment, caption } = staged;
    const refused = this.deps.takeAllowance(binding);
    if (refused !== null) {
      fs.rmSync(attachment.stagedPath, { force: true });
      return { ok: false, result: refused };
    }
    let itemId: number;
    try {
      itemId = this.deps.store.enqueueOutboundFile(binding.chatJid, {
        text: caption,
        turnId: binding.turnId,
        now: this.deps.now(),
        attachment,
      }).id;
    } catch (err) {
      fs.rmSync(attachment.stagedPath, { force: true });
      throw err;
    }
    this.deps.outbox.notify();
    this.log.info(
      { group: binding.groupJid, outboxId: itemId, kind: attachment.kind, bytes: attachment.bytes },
      'file queued',
    );
    const outcome = await this.deps.outbox.whenSettled(
      itemId,
      this.deps.sendConfirmMs ?? SEND_CONFIRM_MS,
    );
    return answerFor(outcome, attachment);
  }

  /** Reads the file once, safely, and stages a copy. @throws {SendFileRefusal|UnsafePathError} */
  private stage(
    binding: RunBinding,
    args: SendFileArgs,
  ): { attachment: OutboxAttachment; caption: string } {
    const rel = groupRelativePath(args.path);
    const caption =
      args.caption === undefined ? '' : (this.deps.formatOutbound(args.caption) ?? '');
    const maxBytes = this.deps.maxBytes ?? MAX_SEND_FILE_BYTES;
    const groupDir = path.join(this.deps.groupsDir, binding.folder);
    const bytes = readFileInside(groupDir, rel, { maxBytes });
    if (bytes.length === 0) throw new SendFileRefusal(`${containerPath(rel)} is empty`);
    const fileName = displayFileName(rel);
    const type = sniffFileType(bytes, fileName);
    const stagedPath = stageFile(this.deps.filesDir, bytes);
    return {
      attachment: { stagedPath, fileName, bytes: bytes.length, ...type },
      caption,
    };
  }
}

function containerPath(rel: string): string {
  return `${CONTAINER_GROUP_DIR}/${rel}`;
}

/**
 * Why a file was refused, in the agent's terms (host paths replaced by container ones), or
 * null for a failure that is the host's own (disk full in the staging folder…).
 */
function refusalReason(err: unknown, groupDir: string, rawPath: string): string | null {
  const shownPath = JSON.stringify(clip(oneLine(rawPath), 200));
  const hostToContainer = (text: string): string => text.split(groupDir).join(CONTAINER_GROUP_DIR);
  if (err instanceof SendFileRefusal) return err.message;
  if (err instanceof UnsafePathError) {
    const rel = err.relativePath;
    const message = hostToContainer(err.message)
      .replace(/; host code does not (read|follow|write)[^;]*$/, '')
      .replace(/\/proc\/self\/fd\/\d+\//g, '');
    if (/symbolic link/.test(message)) {
      return `${containerPath(rel)} is or passes through a symbolic link; send_file reads only real files in ${CONTAINER_GROUP_DIR} (copy the file there instead of linking it)`;
    }
    if (/more than the|grew past/.test(message)) {
      return `${message}; send at most ${humanBytes(MAX_SEND_FILE_BYTES)}, e.g. compress or split it`;
    }
    return message;
  }
  switch (errorCode(err)) {
    case 'ENOENT':
      return `there is no file at ${shownPath}; check the path with the list tool`;
    case 'ENOTDIR':
      return 'a folder on the path is a file; check the path with the list tool';
    case 'EACCES':
    case 'EPERM':
      return 'the file cannot be read (permission denied)';
    case 'ELOOP':
      return `the path passes through a symbolic link; send_file reads only real files in ${CONTAINER_GROUP_DIR}`;
    default:
      return null;
  }
}

function answerFor(outcome: DeliveryOutcome, attachment: OutboxAttachment): HostCallResult {
  const what = `${attachment.fileName} (${attachment.kind}, ${attachment.mimetype}, ${humanBytes(attachment.bytes)})`;
  switch (outcome) {
    case 'sent':
      return { ok: true, result: `sent ${what}` };
    case 'queued':
      return {
        ok: true,
        result: `queued ${what}: the chat is not reachable right now; it will be delivered when it is`,
      };
    case 'failed':
      return { ok: false, result: `not delivered: the chat refused ${what}` };
    default: {
      const unreachable: never = outcome;
      return { ok: false, result: `unknown delivery outcome ${String(unreachable)}` };
    }
  }
}

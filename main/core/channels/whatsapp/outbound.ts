/**
 * Shaping the assistant's replies for WhatsApp: long text split into messages at sensible
 * places, and how long "typing…" shows before a message goes, at a person's pace.
 *
 * WhatsApp takes long messages, but a wall of text reads badly on a phone and very long ones
 * are cut by some clients, so a reply over `maxChars` is sent as several. Each part ends at
 * the best boundary that leaves it reasonably full: a paragraph, else a line, else a sentence,
 * else a word, else (a single huge word) between two characters, never inside a surrogate pair
 * or a grapheme (an emoji with its modifiers stays whole). A ``` code block is kept in one
 * part when it fits; when it cannot, it is cut at a line, closed at the end of one part and
 * reopened (with its language) at the start of the next, so each part renders as code.
 *
 * A file the agent sent (send_file) goes as WhatsApp media, by the kind sniffed from its bytes:
 * {@link whatsappFileMessages}.
 */

/** The longest part {@link splitForWhatsApp} makes, in UTF-16 code units. @default 4000 */
export const WHATSAPP_MAX_MESSAGE_CHARS = 4000;

/**
 * A boundary is used only when it leaves the part at least this full (of `maxChars`);
 * otherwise a finer boundary further on is preferred, so one early blank line does not make a
 * tiny part.
 */
const MIN_FILL = 0.3;

const FENCE = '```';

/** A ``` block: where its opening line starts and where its closing line ends (or the text). */
interface FenceSpan {
  start: number;
  end: number;
  /** The opening line, e.g. "```ts", reopened when the block is cut. */
  opener: string;
}

/**
 * Splits `text` into WhatsApp messages of at most `maxChars` each (see the module comment).
 * No part is empty or only whitespace; joining the parts gives back the text, less the
 * whitespace at each cut and plus the fence lines added to close and reopen a cut code block.
 */
export function splitForWhatsApp(text: string, maxChars = WHATSAPP_MAX_MESSAGE_CHARS): string[] {
  if (!Number.isInteger(maxChars) || maxChars < 16) {
    throw new RangeError(`maxChars must be a whole number of at least 16, got ${maxChars}`);
  }
  const parts: string[] = [];
  let rest = text.trim();
  while (rest.length > maxChars) {
    const { part, next } = cutOnce(rest, maxChars);
    if (part.trim() !== '') parts.push(part);
    rest = next;
  }
  if (rest.trim() !== '') parts.push(rest);
  return parts;
}

/** One cut: the first part (at most `maxChars`) and what remains, fence reopened if cut. */
function cutOnce(text: string, maxChars: number): { part: string; next: string } {
  const fences = fenceSpans(text);
  const inside = (at: number): FenceSpan | undefined =>
    fences.find((f) => at > f.start && at < f.end);

  // Outside code blocks first: paragraph, line, sentence, word.
  const outside = bestBoundary(text, maxChars, (at) => inside(at) === undefined);
  if (outside !== undefined) return plainCut(text, outside);

  // A code block that does not fit: cut inside it (past its opening line), leaving room to
  // close it, and reopen it in the next part.
  const closer = `\n${FENCE}`;
  const budget = maxChars - closer.length;
  const inCode = (at: number): boolean => {
    const fence = inside(at);
    return fence !== undefined && at > fence.start + fence.opener.length;
  };
  let at = bestBoundary(text, budget, inCode);
  if (at === undefined) {
    // No boundary at all (one huge word or code line): between graphemes, leaving room to
    // close the block only when the cut falls in one.
    at = graphemeCut(text, maxChars);
    if (inCode(at)) at = graphemeCut(text, budget);
  }
  const fence = inside(at);
  if (!fence || !inCode(at)) return plainCut(text, at);
  const rest = text.slice(at);
  // At a line: drop the line break, keep the next line's indentation. Inside a line: the space.
  const reopened = /^\r?\n/.test(rest) ? rest.replace(/^(\r?\n)+/, '') : rest.trimStart();
  return {
    part: `${text.slice(0, at).trimEnd()}${closer}`,
    next: `${fence.opener}\n${reopened}`,
  };
}

function plainCut(text: string, at: number): { part: string; next: string } {
  return { part: text.slice(0, at).trimEnd(), next: text.slice(at).trimStart() };
}

const PARAGRAPH = /\n[ \t]*\n/g;
const LINE = /\n/g;
/** After a sentence's end mark (and any closing quote or bracket), before the space. */
const SENTENCE = /[.!?…。！？][)"'»”’\]]*(?=\s)/g;
const WORD = /\s+/g;

/**
 * The best place to cut within the first `maxChars`: the last paragraph break that leaves the
 * part {@link MIN_FILL} full, else the last line break, sentence end, then word break, each
 * only where `allowed`. Undefined when there is none.
 */
function bestBoundary(
  text: string,
  maxChars: number,
  allowed: (at: number) => boolean,
): number | undefined {
  const minimum = Math.floor(maxChars * MIN_FILL);
  for (const pattern of [PARAGRAPH, LINE, SENTENCE, WORD]) {
    const at = lastBoundary(text, maxChars, pattern, allowed);
    if (at !== undefined && at >= minimum) return at;
  }
  // None leaves the part full enough: any boundary at all beats cutting a word.
  for (const pattern of [PARAGRAPH, LINE, SENTENCE, WORD]) {
    const at = lastBoundary(text, maxChars, pattern, allowed);
    if (at !== undefined) return at;
  }
  return undefined;
}

/**
 * The last cut position for `pattern` in `text` where the part before it fits in `maxChars`.
 * A cut is at the start of the match (a break), except for sentences: after the end mark.
 */
function lastBoundary(
  text: string,
  maxChars: number,
  pattern: RegExp,
  allowed: (at: number) => boolean,
): number | undefined {
  let best: number | undefined;
  const window = text.slice(0, maxChars + 1);
  for (const match of window.matchAll(pattern)) {
    const at = pattern === SENTENCE ? match.index + match[0].length : match.index;
    if (at <= 0 || at > maxChars) continue;
    if (allowed(at)) best = at;
  }
  return best;
}

/** The last grapheme boundary at or before `maxChars` (never 0: a part has something). */
function graphemeCut(text: string, maxChars: number): number {
  const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  let cut = 0;
  // A grapheme is short; a little past the limit is enough to see where the last one ends.
  for (const { index } of segmenter.segment(text.slice(0, maxChars + 64))) {
    if (index > maxChars) break;
    cut = index;
  }
  if (cut > 0) return cut;
  // One grapheme longer than a message (hundreds of combining marks): cut between code
  // points, never inside a surrogate pair.
  const code = text.charCodeAt(maxChars - 1);
  return code >= 0xd800 && code <= 0xdbff ? maxChars - 1 : maxChars;
}

/** The ``` blocks of `text`: a line starting with ``` opens one, the next such line closes it. */
function fenceSpans(text: string): FenceSpan[] {
  const spans: FenceSpan[] = [];
  let open: { start: number; opener: string } | null = null;
  let lineStart = 0;
  while (lineStart <= text.length) {
    const newline = text.indexOf('\n', lineStart);
    const lineEnd = newline === -1 ? text.length : newline;
    const line = text.slice(lineStart, lineEnd);
    if (line.trimStart().startsWith(FENCE)) {
      if (open) {
        spans.push({ start: open.start, end: lineEnd, opener: open.opener });
        open = null;
      } else {
        open = { start: lineStart, opener: line.trim() };
      }
    }
    if (newline === -1) break;
    lineStart = newline + 1;
  }
  // An unclosed block runs to the end, as WhatsApp shows it.
  if (open) spans.push({ start: open.start, end: text.length, opener: open.opener });
  return spans;
}

/** Options of {@link typingDelayMs}. */
export interface TypingPace {
  /** @default 1000 */
  minMs?: number;
  /** @default 4000 */
  maxMs?: number;
  /** About a fast typist's pace on a phone, much sped up: nobody waits a minute. @default 25 */
  msPerChar?: number;
}

/**
 * How long "typing…" shows before a message of this text is sent: longer for longer text, as
 * a person would take, but between `minMs` and `maxMs`. It also spaces a split reply's parts,
 * which keeps the account's sending pattern human (WhatsApp flags bursts).
 */
export function typingDelayMs(text: string, pace: TypingPace = {}): number {
  const minMs = pace.minMs ?? 1000;
  const maxMs = pace.maxMs ?? 4000;
  const msPerChar = pace.msPerChar ?? 25;
  const chars = Array.from(text.trim()).length;
  return Math.round(Math.min(maxMs, Math.max(minMs, chars * msPerChar)));
}

/** A file as {@link whatsappFileMessages} needs it: the outbox's staged copy, typed. */
export interface WhatsAppFile {
  /** The host's staged copy; Baileys streams it from here (never from a group folder). */
  stagedPath: string;
  fileName: string;
  /** Sniffed from the bytes (agent/send-file.ts). */
  mimetype: string;
  kind: 'image' | 'audio' | 'document';
}

/** One message content for Baileys' `sendMessage`, in the shapes the channel sends. */
export type WhatsAppOutgoingContent =
  | { text: string }
  | { image: { url: string }; mimetype: string; caption?: string }
  | { audio: { url: string }; mimetype: string; ptt: false }
  | { document: { url: string }; mimetype: string; fileName: string; caption?: string };

/**
 * The WhatsApp messages that carry a file and its caption: an image or a document with the
 * caption on it, or an audio message followed by the caption as a text (WhatsApp audio has no
 * caption). A caption gets `prefix` (the assistant's name), as every reply does, so the
 * assistant's own messages are recognised when they come back; a file without a caption is
 * recognised by its message id.
 */
export function whatsappFileMessages(
  file: WhatsAppFile,
  caption: string,
  prefix: string,
): WhatsAppOutgoingContent[] {
  const media = { url: file.stagedPath };
  const captioned = caption.trim() === '' ? {} : { caption: `${prefix}${caption.trim()}` };
  switch (file.kind) {
    case 'image':
      return [{ image: media, mimetype: file.mimetype, ...captioned }];
    case 'document':
      return [{ document: media, mimetype: file.mimetype, fileName: file.fileName, ...captioned }];
    case 'audio': {
      // Not a voice note (ptt): the file is a recording the agent made or found, not speech.
      const audio: WhatsAppOutgoingContent = { audio: media, mimetype: file.mimetype, ptt: false };
      return captioned.caption ? [audio, { text: captioned.caption }] : [audio];
    }
    default: {
      const unreachable: never = file.kind;
      throw new Error(`unknown file kind ${String(unreachable)}`);
    }
  }
}

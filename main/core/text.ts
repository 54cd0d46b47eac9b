/**
 * Text from outside (chat names, prompts, agents' errors) made safe to show on one line of a
 * list, a log or a notice.
 */

/** Line breaks and other control characters, which could fake extra lines. */
const CONTROL_CHARS = /[\p{Cc}\p{Zl}\p{Zp}]+/gu;
/** Bidirectional overrides, which could make text read backwards. */
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` on one line: control characters become spaces, bidi overrides go, spaces collapse. */
export function oneLine(text: string): string {
  return text.replace(BIDI_CONTROLS, '').replace(CONTROL_CHARS, ' ').replace(/\s+/g, ' ').trim();
}

/** Cuts `text` to `max` characters (code points, so no emoji is split in half), marking the cut. */
export function clip(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

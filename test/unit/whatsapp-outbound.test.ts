/**
 * Long replies split for WhatsApp: parts fit, end at the best boundary, keep code blocks whole
 * or close and reopen them, never cut a character in half, and lose no text.
 */
import { describe, expect, it } from 'vitest';

import {
  splitForWhatsApp,
  typingDelayMs,
  WHATSAPP_MAX_MESSAGE_CHARS,
} from '../../main/core/channels/whatsapp/outbound.js';

/** The text with all whitespace removed: what must survive a split unchanged. */
function ink(text: string): string {
  return text.replace(/\s+/g, '');
}

/** A small deterministic generator, so "random" cases are the same on every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function expectWellFormed(parts: string[], max: number): void {
  expect(parts.length).toBeGreaterThan(0);
  for (const part of parts) {
    expect(part.length).toBeLessThanOrEqual(max);
    expect(part.trim()).not.toBe('');
    // No lone surrogate at either end: a pair was never cut in half.
    expect(part).not.toMatch(/^[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/);
  }
}

/** Every part has balanced ``` lines (each block it opens, it closes). */
function fencesBalanced(part: string): boolean {
  return part.split('\n').filter((line) => line.trimStart().startsWith('```')).length % 2 === 0;
}

describe('splitForWhatsApp', () => {
  it('leaves a short reply whole and drops an empty one', () => {
    expect(splitForWhatsApp('Hello there.')).toEqual(['Hello there.']);
    expect(splitForWhatsApp('  \n\n ')).toEqual([]);
    expect(splitForWhatsApp('x'.repeat(WHATSAPP_MAX_MESSAGE_CHARS))).toHaveLength(1);
  });

  it('splits at paragraphs before lines, sentences or words', () => {
    const first = `${'Alpha beta gamma. '.repeat(3).trim()}`;
    const second = `${'Delta epsilon. '.repeat(3).trim()}`;
    const parts = splitForWhatsApp(`${first}\n\n${second}`, 60);
    expect(parts).toEqual([first, second]);
  });

  it('splits a long paragraph at sentence ends, then a long sentence at words', () => {
    const sentences = Array.from({ length: 12 }, (_, i) => `Sentence number ${i} is here.`);
    const parts = splitForWhatsApp(sentences.join(' '), 80);
    expectWellFormed(parts, 80);
    for (const part of parts) expect(part).toMatch(/\.$/);
    expect(ink(parts.join(' '))).toBe(ink(sentences.join(' ')));

    const words = Array.from({ length: 100 }, (_, i) => `word${i}`).join(' ');
    const byWord = splitForWhatsApp(words, 50);
    expectWellFormed(byWord, 50);
    for (const part of byWord) expect(part).toMatch(/^word\d+( word\d+)*$/);
    expect(byWord.join(' ')).toBe(words);
  });

  it('cuts a single huge word between characters, losing nothing', () => {
    const huge = 'a'.repeat(250);
    const parts = splitForWhatsApp(huge, 100);
    expect(parts.map((p) => p.length)).toEqual([100, 100, 50]);
    expect(parts.join('')).toBe(huge);
  });

  it('never cuts an emoji or a surrogate pair in half', () => {
    for (const unit of ['😀', '👍🏽', '👨‍👩‍👧', '𝄞', 'é']) {
      const text = unit.repeat(200);
      for (const max of [16, 17, 33, 100]) {
        const parts = splitForWhatsApp(text, max);
        expectWellFormed(parts, max);
        expect(parts.join('')).toBe(text);
        for (const part of parts) expect(part.split(unit).join('')).toBe('');
      }
    }
  });

  it('keeps a code block in one part when it fits', () => {
    const code = '```js\nconst a = 1;\n\nconst b = 2;\n```';
    const text = `${'Intro words here. '.repeat(4).trim()}\n\n${code}\n\nThe end.`;
    const parts = splitForWhatsApp(text, 90);
    expectWellFormed(parts, 90);
    expect(parts.some((p) => p.includes(code))).toBe(true);
    for (const part of parts) expect(fencesBalanced(part)).toBe(true);
  });

  it('closes and reopens a code block that must be split, at a line, with its language', () => {
    const lines = Array.from({ length: 40 }, (_, i) => `  line(${i});`);
    const text = `Here is the code:\n\n\`\`\`ts\n${lines.join('\n')}\n\`\`\`\n\nDone.`;
    const parts = splitForWhatsApp(text, 120);
    expectWellFormed(parts, 120);
    for (const part of parts) expect(fencesBalanced(part), part).toBe(true);
    const codeParts = parts.filter((p) => p.includes('line('));
    expect(codeParts.length).toBeGreaterThan(1);
    for (const part of codeParts) expect(part).toMatch(/^```ts\n|\n```ts\n/);
    // Each part but the last ends in the fence that closes it; the last holds the real one.
    for (const part of codeParts.slice(0, -1)) expect(part.endsWith('\n```')).toBe(true);
    // Every code line survives whole, indentation included, in order.
    const seen = parts
      .join('\n')
      .split('\n')
      .filter((l) => l.includes('line('));
    expect(seen).toEqual(lines);
  });

  it('closes and reopens a code block cut inside one very long line', () => {
    const longLine = Array.from({ length: 60 }, (_, i) => `tok${i}`).join(' ');
    const text = `\`\`\`\n${longLine}\n\`\`\``;
    const parts = splitForWhatsApp(text, 80);
    expectWellFormed(parts, 80);
    for (const part of parts) expect(fencesBalanced(part), part).toBe(true);
    expect(ink(parts.join('').replaceAll('```', ''))).toBe(ink(longLine));
  });

  it('holds its rules for many generated texts', () => {
    const random = seeded(42);
    const pieces = ['word', 'Sentence.', 'emoji😀', '👍🏽', '\n', '\n\n', ' ', ' ', ' ', 'ünïcödé'];
    for (let round = 0; round < 200; round++) {
      const length = Math.floor(random() * 400);
      let text = '';
      for (let i = 0; i < length; i++) text += pieces[Math.floor(random() * pieces.length)];
      if (random() < 0.3)
        text += `\n\`\`\`py\n${'x = 1\n'.repeat(Math.floor(random() * 60))}\`\`\`\n`;
      const max = 16 + Math.floor(random() * 300);
      const parts = splitForWhatsApp(text, max);
      if (text.trim() === '') {
        expect(parts).toEqual([]);
        continue;
      }
      expectWellFormed(parts, max);
      // All the text is there, less whitespace, plus only the fence lines added at cuts.
      expect(ink(parts.join('')).replace(/```(py)?/g, '')).toBe(ink(text).replace(/```(py)?/g, ''));
      for (const part of parts) expect(fencesBalanced(part), JSON.stringify(part)).toBe(true);
    }
  });

  it('refuses a limit too small to hold a closed code block', () => {
    expect(() => splitForWhatsApp('text', 4)).toThrow(/at least 16/);
  });
});

describe('typingDelayMs', () => {
  it('grows with the text within one and four seconds', () => {
    expect(typingDelayMs('ok')).toBe(1000);
    expect(typingDelayMs('x'.repeat(100))).toBe(2500);
    expect(typingDelayMs('x'.repeat(10_000))).toBe(4000);
    expect(typingDelayMs('😀'.repeat(100))).toBe(typingDelayMs('x'.repeat(100)));
    expect(typingDelayMs('hi', { minMs: 0, maxMs: 500, msPerChar: 10 })).toBe(20);
  });
});

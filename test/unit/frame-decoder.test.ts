import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FrameDecoder } from '../../main/core/agent/protocol.js';

const Ping = z.object({ type: z.literal('ping'), n: z.number() });

describe('FrameDecoder', () => {
  it('joins a frame split across chunks and splits frames sharing a chunk', () => {
    const decoder = new FrameDecoder(Ping);
    expect(decoder.push('{"type":"pi')).toEqual([]);
    expect(decoder.push('ng","n":1}\n{"type":"ping","n":2}\n')).toEqual([
      { ok: true, frame: { type: 'ping', n: 1 } },
      { ok: true, frame: { type: 'ping', n: 2 } },
    ]);
  });

  it('names why a line was refused and keeps decoding', () => {
    const decoder = new FrameDecoder(Ping);
    const results = decoder.push('garbage\n{"type":"pong"}\n\n{"type":"ping","n":3}\n');
    expect(results.map((r) => (r.ok ? 'ok' : r.kind))).toEqual(['not_json', 'invalid', 'ok']);
  });

  it('counts the limit in UTF-8 bytes, not characters', () => {
    // 10 three-byte characters: 10 characters, 30 bytes.
    const wide = '€'.repeat(10);
    const frame = JSON.stringify({ type: 'ping', n: 1, pad: wide });
    const decoder = new FrameDecoder(Ping, frame.length + 5);
    expect(decoder.push(`${frame}\n`)).toEqual([
      { ok: false, kind: 'too_large', error: expect.stringContaining('larger than') },
    ]);
    expect(new FrameDecoder(Ping, frame.length + 20 + 5).push(`${frame}\n`)[0]?.ok).toBe(true);
  });

  it('refuses an oversized line once, skips its tail, then reads the next frame', () => {
    const decoder = new FrameDecoder(Ping, 64);
    expect(decoder.push('x'.repeat(100)).map((r) => !r.ok && r.kind)).toEqual(['too_large']);
    expect(decoder.push('y'.repeat(100))).toEqual([]);
    expect(decoder.push('tail\n{"type":"ping","n":4}\n')).toEqual([
      { ok: true, frame: { type: 'ping', n: 4 } },
    ]);
  });
});

/**
 * WhatsApp media into a group's `inbox/`: named by us, capped, never written through a link
 * the agent planted in its folder, never over an existing file. Real temp dirs throughout:
 * `base/groups/family` is the group's folder, `base/host` stands in for a host directory
 * outside it that a planted link points at.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  describeMedia,
  extensionFor,
  type InboundMedia,
  isSavedMedia,
  MAX_INBOUND_MEDIA_BYTES,
  safeStem,
  saveInboundMedia,
  type SaveMediaResult,
  type SavedMedia,
} from '../../main/core/channels/whatsapp/media.js';
import { walkMode } from '../../main/core/safe-fs.js';

/** Noon UTC: the same calendar day in every time zone from -11 to +11. */
const NOON = Date.UTC(2026, 10, 25, 12, 0, 0);

let base: string;
let groupDir: string;
let hostDir: string;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-media-'));
  groupDir = path.join(base, 'groups', 'family');
  hostDir = path.join(base, 'host');
  fs.mkdirSync(groupDir, { recursive: true });
  fs.mkdirSync(hostDir);
});

afterEach(() => {
  walkMode.procFd = process.platform === 'linux' && fs.existsSync('/proc/self/fd');
  fs.rmSync(base, { recursive: true, force: true });
});

/** A download of these chunks, as an async generator (what Baileys' stream is, to us). */
function chunks(...parts: Array<string | Uint8Array>): () => Promise<AsyncIterable<Uint8Array>> {
  return async () =>
    (async function* () {
      for (const part of parts) yield typeof part === 'string' ? Buffer.from(part) : part;
    })();
}

function media(overrides: Partial<InboundMedia> = {}): InboundMedia {
  return {
    groupDir,
    kind: 'image',
    mimetype: 'image/jpeg',
    timestamp: NOON,
    messageId: '3EB0C767D26B1C7E4F2A',
    download: chunks('\xff\xd8jpeg bytes'),
    ...overrides,
  };
}

function expectSaved(result: SaveMediaResult): SavedMedia {
  if (!isSavedMedia(result)) throw new Error(`expected the media saved, got: ${result.refused}`);
  return result;
}

function expectRefused(result: SaveMediaResult): string {
  if (isSavedMedia(result)) throw new Error(`expected a refusal, got ${result.relativePath}`);
  return result.refused;
}

function inboxEntries(): string[] {
  return fs.readdirSync(path.join(groupDir, 'inbox')).sort();
}

function hostEntries(): string[] {
  return fs.readdirSync(hostDir).sort();
}

describe('saveInboundMedia', () => {
  it('saves an image into inbox/ under a dated name of its own and says where', async () => {
    const saved = expectSaved(await saveInboundMedia(media()));
    expect(saved.relativePath).toMatch(/^inbox\/2026-11-25-image-[0-9a-f]{8}\.jpg$/);
    expect(saved.bytes).toBe(Buffer.from('\xff\xd8jpeg bytes').byteLength);
    const onDisk = path.join(groupDir, saved.relativePath);
    expect(fs.readFileSync(onDisk)).toEqual(Buffer.from('\xff\xd8jpeg bytes'));
    expect(fs.statSync(onDisk).mode & 0o777).toBe(0o644);
  });

  it('streams a Readable as well as an async iterable', async () => {
    const saved = expectSaved(
      await saveInboundMedia(
        media({
          kind: 'voice',
          mimetype: 'audio/ogg; codecs=opus',
          download: async () => Readable.from([Buffer.from('Ogg'), Buffer.from('S voice')]),
        }),
      ),
    );
    expect(saved.relativePath).toMatch(/^inbox\/2026-11-25-voice-[0-9a-f]{8}\.ogg$/);
    expect(fs.readFileSync(path.join(groupDir, saved.relativePath), 'utf8')).toBe('OggS voice');
  });

  it('stops a download that passes the cap and leaves no file', async () => {
    let pulled = 0;
    const endless = async function* (): AsyncGenerator<Uint8Array> {
      for (;;) {
        pulled++;
        yield new Uint8Array(1024);
      }
    };
    const refused = expectRefused(
      await saveInboundMedia(media({ maxBytes: 10 * 1024, download: async () => endless() })),
    );
    expect(refused).toMatch(/larger than 10240 bytes/);
    // It stopped pulling at the chunk that crossed the cap, not at the end of an endless stream.
    expect(pulled).toBe(11);
    expect(inboxEntries()).toEqual([]);
  });

  it('destroys a Readable download that passes the cap', async () => {
    const source = new Readable({
      read() {
        this.push(Buffer.alloc(4096));
      },
    });
    const refused = expectRefused(
      await saveInboundMedia(media({ maxBytes: 8192, download: async () => source })),
    );
    expect(refused).toMatch(/larger than/);
    expect(source.destroyed).toBe(true);
    expect(inboxEntries()).toEqual([]);
  });

  it('refuses a declared size over the cap without downloading', async () => {
    let downloaded = false;
    const refused = expectRefused(
      await saveInboundMedia(
        media({
          declaredBytes: MAX_INBOUND_MEDIA_BYTES + 1,
          download: async () => {
            downloaded = true;
            return Readable.from([]);
          },
        }),
      ),
    );
    expect(refused).toBe('larger than 25 MiB, the most saved');
    expect(downloaded).toBe(false);
  });

  it('removes the partial file when the download throws midway', async () => {
    const failing = async function* (): AsyncGenerator<Uint8Array> {
      yield Buffer.from('first half');
      throw new Error('connection reset by the CDN');
    };
    const refused = expectRefused(
      await saveInboundMedia(media({ download: async () => failing() })),
    );
    expect(refused).toBe('the download failed: connection reset by the CDN');
    expect(inboxEntries()).toEqual([]);
  });

  it('removes the partial file when a stalled download is aborted', async () => {
    const controller = new AbortController();
    const stalled = async function* (): AsyncGenerator<Uint8Array> {
      yield Buffer.from('some bytes');
      controller.abort();
      await new Promise(() => undefined); // never yields again
    };
    const refused = expectRefused(
      await saveInboundMedia(media({ signal: controller.signal, download: async () => stalled() })),
    );
    expect(refused).toBe('the download was cancelled');
    expect(inboxEntries()).toEqual([]);
  });

  it('refuses a download that does not start, leaving no file', async () => {
    const refused = expectRefused(
      await saveInboundMedia(
        media({
          download: async () => {
            throw new Error('media key missing');
          },
        }),
      ),
    );
    expect(refused).toBe('the download failed: media key missing');
    expect(inboxEntries()).toEqual([]);
  });

  describe.each([
    ['through /proc/self/fd', true],
    ['by path with realpath checks', false],
  ])('an agent-planted inbox (walk %s)', (_label, procFd) => {
    beforeEach(() => {
      walkMode.procFd = procFd && process.platform === 'linux';
    });

    it('writes nothing through an inbox that is a link to another folder', async () => {
      fs.symlinkSync(hostDir, path.join(groupDir, 'inbox'));
      const refused = expectRefused(await saveInboundMedia(media()));
      expect(refused).toMatch(/not a plain folder/);
      expect(hostEntries()).toEqual([]);
      expect(fs.lstatSync(path.join(groupDir, 'inbox')).isSymbolicLink()).toBe(true);
    });

    it('writes nothing when the group folder itself is a link', async () => {
      const linked = path.join(base, 'groups', 'linked');
      fs.symlinkSync(hostDir, linked);
      const refused = expectRefused(await saveInboundMedia(media({ groupDir: linked })));
      expect(refused).toMatch(/not a plain folder/);
      expect(hostEntries()).toEqual([]);
    });

    it('refuses an inbox that is a FIFO without blocking on it', async () => {
      const fifo = path.join(groupDir, 'inbox');
      const made = spawnSync('mkfifo', [fifo]);
      expect(made.status).toBe(0);
      const refused = expectRefused(await saveInboundMedia(media()));
      expect(refused).toMatch(/not a plain folder/);
    });

    it('never writes through a link planted at the file name; the media takes the next name', async () => {
      const first = expectSaved(await saveInboundMedia(media()));
      const firstName = path.basename(first.relativePath);
      fs.rmSync(path.join(groupDir, first.relativePath));
      const victim = path.join(hostDir, 'passwd');
      fs.writeFileSync(victim, 'root:x:0:0\n');
      fs.symlinkSync(victim, path.join(groupDir, 'inbox', firstName));

      const saved = expectSaved(await saveInboundMedia(media()));
      expect(saved.relativePath).toBe(first.relativePath.replace(/\.jpg$/, '-2.jpg'));
      expect(fs.readFileSync(victim, 'utf8')).toBe('root:x:0:0\n');
      expect(fs.lstatSync(path.join(groupDir, 'inbox', firstName)).isSymbolicLink()).toBe(true);
    });
  });

  it('never overwrites: the same message id on the same day gets a suffix', async () => {
    const first = expectSaved(await saveInboundMedia(media({ download: chunks('one') })));
    const second = expectSaved(await saveInboundMedia(media({ download: chunks('two') })));
    const third = expectSaved(await saveInboundMedia(media({ download: chunks('three') })));
    expect(second.relativePath).toBe(first.relativePath.replace(/\.jpg$/, '-2.jpg'));
    expect(third.relativePath).toBe(first.relativePath.replace(/\.jpg$/, '-3.jpg'));
    const read = (r: SavedMedia): string =>
      fs.readFileSync(path.join(groupDir, r.relativePath), 'utf8');
    expect([read(first), read(second), read(third)]).toEqual(['one', 'two', 'three']);
  });

  it('gives up, rather than overwrite, when every name is taken', async () => {
    const first = expectSaved(await saveInboundMedia(media()));
    const stem = first.relativePath.replace(/^inbox\//, '').replace(/\.jpg$/, '');
    for (let n = 2; n <= 20; n++) {
      fs.writeFileSync(path.join(groupDir, 'inbox', `${stem}-${n}.jpg`), 'taken');
    }
    const refused = expectRefused(await saveInboundMedia(media()));
    expect(refused).toMatch(/names for it were already taken/);
    expect(fs.readFileSync(path.join(groupDir, `inbox/${stem}-20.jpg`), 'utf8')).toBe('taken');
  });

  it('names a document from our parts, keeping only a clean stem of its own name', async () => {
    const hostile = [
      ['../../etc/passwd', /^inbox\/2026-11-25-document-[0-9a-f]{8}-passwd\.pdf$/],
      ['a\nb.pdf', /^inbox\/2026-11-25-document-[0-9a-f]{8}-a-b\.pdf$/],
      ['invoice\u202Efdp.exe', /^inbox\/2026-11-25-document-[0-9a-f]{8}-invoice-fdp\.pdf$/],
      ['..', /^inbox\/2026-11-25-document-[0-9a-f]{8}\.pdf$/],
      ['\u0000\u0001', /^inbox\/2026-11-25-document-[0-9a-f]{8}\.pdf$/],
      ['Überweisung März.pdf', /^inbox\/2026-11-25-document-[0-9a-f]{8}-Uberweisung-Marz\.pdf$/],
    ] as const;
    for (const [fileName, expected] of hostile) {
      const saved = expectSaved(
        await saveInboundMedia(
          media({ kind: 'document', mimetype: 'application/pdf', fileName, messageId: fileName }),
        ),
      );
      expect(saved.relativePath, JSON.stringify(fileName)).toMatch(expected);
    }
    // Everything landed in inbox/, nothing anywhere else.
    expect(fs.readdirSync(groupDir)).toEqual(['inbox']);
    expect(inboxEntries()).toHaveLength(hostile.length);
    expect(hostEntries()).toEqual([]);
  });

  it('takes the extension from an allowlist of mimetypes, never from the sender', async () => {
    const saved = expectSaved(
      await saveInboundMedia(
        media({ kind: 'document', mimetype: 'application/x-sh', fileName: 'run.sh' }),
      ),
    );
    expect(saved.relativePath).toMatch(/-run\.bin$/);
    expect(extensionFor('IMAGE/PNG')).toBe('png');
    expect(extensionFor('audio/ogg; codecs=opus')).toBe('ogg');
    expect(extensionFor('text/html')).toBe('bin');
    expect(extensionFor(undefined)).toBe('bin');
  });
});

describe('safeStem', () => {
  it('keeps at most 40 ASCII name characters and never a dot, slash or control character', () => {
    const stem = safeStem(`${'x'.repeat(100)}.pdf`);
    expect(stem).toBe('x'.repeat(40));
    for (const name of ['a/b\\c', '.hidden', 'a..b', 'tab\there', '\u202Ertl', 'zero\u200Bwidth']) {
      expect(safeStem(name)).toMatch(/^[A-Za-z0-9_-]*$/);
    }
    expect(safeStem('中文.pdf')).toBe('');
  });
});

describe('describeMedia', () => {
  it('says what arrived and where, then the caption', () => {
    const image = { relativePath: 'inbox/2026-11-25-image-ab12cd34.jpg', bytes: 10 };
    expect(describeMedia('image', image, 'look at this')).toBe(
      '[image inbox/2026-11-25-image-ab12cd34.jpg] look at this',
    );
    expect(describeMedia('voice', 'inbox/2026-11-25-voice-ab12cd34.ogg')).toBe(
      '[voice note inbox/2026-11-25-voice-ab12cd34.ogg]',
    );
    expect(
      describeMedia('document', 'inbox/2026-11-25-document-ab12cd34-report.pdf', '', 'report.pdf'),
    ).toBe('[document inbox/2026-11-25-document-ab12cd34-report.pdf (report.pdf)]');
    expect(describeMedia('video', { refused: 'larger than 25 MiB, the most saved' }, 'hi')).toBe(
      '[video not saved: larger than 25 MiB, the most saved] hi',
    );
  });

  it("shows a sender's file name without line breaks, direction overrides or brackets", () => {
    const text = describeMedia('document', 'inbox/x.pdf', null, 'a\n[b]\u202Etxt.exe');
    expect(text).toBe('[document inbox/x.pdf (a (b) txt.exe)]');
  });
});

/**
 * The channel's own WhatsApp media download, against real HTTP servers on 127.0.0.1: the fake
 * WhatsApp media host (real encrypted blobs, tampered on request) and small servers of our own
 * for what it does not do (an endless body, a stall, a redirect).
 */
import { proto } from '@whiskeysockets/baileys';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { isSavedMedia, saveInboundMedia } from '../../main/core/channels/whatsapp/media.js';
import {
  type DownloadMessageMediaOptions,
  downloadableMediaOf,
  downloadMessageMedia,
  downloadWhatsAppMedia,
  type DownloadableMedia,
  mediaOriginForWaUrl,
  mediaUrl,
} from '../../main/core/channels/whatsapp/media-download.js';
import {
  encryptMedia,
  type EncryptedMedia,
  type FakeMediaBlobState,
  type FakeMediaHost,
  startMediaHost,
} from '../fakes/whatsapp/media.js';

let host: FakeMediaHost;
const servers: http.Server[] = [];

beforeEach(async () => {
  host = await startMediaHost();
});

afterEach(async () => {
  await host.close();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** Options that allow the fake host. */
function opts(overrides: Partial<DownloadMessageMediaOptions> = {}): DownloadMessageMediaOptions {
  return { allowedOrigins: [host.origin], maxBytes: 1024 * 1024, timeoutMs: 10_000, ...overrides };
}

/** Encrypts `plaintext` as an image, publishes it on the fake host, returns the message fields. */
async function published(
  plaintext: Buffer,
  state: FakeMediaBlobState = 'intact',
): Promise<{ media: proto.Message.IImageMessage; encrypted: EncryptedMedia }> {
  const encrypted = await encryptMedia(plaintext, 'image');
  const { url } = host.publish(encrypted.blob, state);
  return {
    encrypted,
    media: {
      url,
      mediaKey: encrypted.mediaKey,
      fileEncSha256: encrypted.fileEncSha256,
      fileSha256: encrypted.fileSha256,
      fileLength: encrypted.fileLength,
    },
  };
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of source) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

/** Starts an HTTP server on 127.0.0.1 with `handler`; closed after the test. */
async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('downloadWhatsAppMedia', () => {
  it('yields exactly the plaintext of an intact blob, with the WhatsApp Origin header', async () => {
    const plaintext = randomBytes(300_000);
    const { media } = await published(plaintext);

    const bytes = await collect(downloadWhatsAppMedia(media, 'image', opts()));

    expect(bytes.equals(plaintext)).toBe(true);
    expect(host.requests().map((r) => [r.status, r.headers.origin])).toEqual([
      [200, 'https://web.whatsapp.com'],
    ]);
  });

  it('decrypts a plaintext of an exact number of AES blocks and an empty one', async () => {
    for (const plaintext of [randomBytes(4096), Buffer.alloc(0)]) {
      const { media } = await published(plaintext);
      expect((await collect(downloadWhatsAppMedia(media, 'image', opts()))).equals(plaintext)).toBe(
        true,
      );
    }
  });

  it('rejects a blob whose MAC was altered', async () => {
    const { media } = await published(randomBytes(50_000), 'bad-mac');
    await expect(collect(downloadWhatsAppMedia(media, 'image', opts()))).rejects.toThrow(
      /failed its MAC check/,
    );
  });

  it('rejects a blob whose body was altered, though it decrypts without a padding error', async () => {
    const { media } = await published(randomBytes(50_000), 'bad-body');
    await expect(collect(downloadWhatsAppMedia(media, 'image', opts()))).rejects.toThrow(
      /failed its MAC check/,
    );
  });

  it('rejects a blob that does not match the fileEncSha256 or fileSha256 of the message', async () => {
    const { media } = await published(randomBytes(10_000));
    const wrongEnc = { ...media, fileEncSha256: randomBytes(32) };
    await expect(collect(downloadWhatsAppMedia(wrongEnc, 'image', opts()))).rejects.toThrow(
      /fileEncSha256/,
    );
    const wrongPlain = { ...media, fileSha256: randomBytes(32) };
    await expect(collect(downloadWhatsAppMedia(wrongPlain, 'image', opts()))).rejects.toThrow(
      /fileSha256/,
    );
  });

  it('rejects a blob decrypted with the keys of another media type', async () => {
    const { media } = await published(randomBytes(10_000));
    await expect(collect(downloadWhatsAppMedia(media, 'audio', opts()))).rejects.toThrow(
      /failed its MAC check/,
    );
  });

  it('rejects expired media (404) with the status, so a re-upload can be asked for', async () => {
    const { media } = await published(randomBytes(1000), 'missing');
    await expect(collect(downloadWhatsAppMedia(media, 'image', opts()))).rejects.toMatchObject({
      name: 'MediaDownloadError',
      status: 404,
      mediaGone: true,
      message: expect.stringMatching(/answered 404/),
    });
  });

  it('rejects a connection cut halfway, with no uncaught exception or unhandled rejection', async () => {
    const uncaught: unknown[] = [];
    const record = (err: unknown): void => void uncaught.push(err);
    process.on('uncaughtException', record);
    process.on('unhandledRejection', record);
    try {
      const { media } = await published(randomBytes(200_000), 'cut');
      await expect(collect(downloadWhatsAppMedia(media, 'image', opts()))).rejects.toThrow(
        /broke off after \d+ bytes/,
      );
      // Baileys' own download raises its `TypeError: terminated` a few ticks after the cut.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', record);
      process.off('unhandledRejection', record);
    }
  });

  it('stops an endless body at the cap and closes the connection', async () => {
    let connectionClosed!: () => void;
    const closed = new Promise<void>((resolve) => (connectionClosed = resolve));
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = randomBytes(64 * 1024);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', pump);
      res.on('close', connectionClosed);
      pump();
    });
    const { media } = await published(randomBytes(100));
    const endless = { ...media, url: `${origin}/v/endless.enc`, fileLength: null };

    await expect(
      collect(
        downloadWhatsAppMedia(
          endless,
          'image',
          opts({ allowedOrigins: [origin], maxBytes: 100_000 }),
        ),
      ),
    ).rejects.toThrow(/larger than 100000 bytes/);
    await closed;
  });

  it('refuses a body longer than the fileLength the message declares', async () => {
    const { media } = await published(randomBytes(100_000));
    await expect(
      collect(downloadWhatsAppMedia({ ...media, fileLength: 1000 }, 'image', opts())),
    ).rejects.toThrow(/larger than/);
  });

  it('refuses a URL whose origin is not allowed, without making a request', async () => {
    const { media } = await published(randomBytes(1000));
    const refused = [
      downloadWhatsAppMedia(media, 'image', opts({ allowedOrigins: [] })),
      // localhost is the same machine but not the same origin.
      downloadWhatsAppMedia(
        { ...media, url: media.url!.replace('127.0.0.1', 'localhost') },
        'image',
        opts(),
      ),
      downloadWhatsAppMedia({ ...media, url: 'http://mmg.whatsapp.net/v/x.enc' }, 'image', opts()),
    ];
    for (const download of refused) {
      await expect(collect(download)).rejects.toThrow(/is not a WhatsApp media host/);
    }
    expect(host.requests()).toEqual([]);
  });

  it('fetches http://127.0.0.1 only when its exact origin is in allowedOrigins', async () => {
    const plaintext = randomBytes(1000);
    const { media } = await published(plaintext);
    await expect(
      collect(downloadWhatsAppMedia(media, 'image', opts({ allowedOrigins: [] }))),
    ).rejects.toThrow(/not a WhatsApp media host/);
    const bytes = await collect(
      downloadWhatsAppMedia(media, 'image', opts({ allowedOrigins: [`${host.origin}/`] })),
    );
    expect(bytes.equals(plaintext)).toBe(true);
    expect(host.requests()).toHaveLength(1);
  });

  it('refuses a message without its key or hashes before any request', async () => {
    const { media } = await published(randomBytes(1000));
    for (const lacking of [
      { ...media, mediaKey: null },
      { ...media, mediaKey: randomBytes(16) },
      { ...media, fileEncSha256: undefined },
      { ...media, fileSha256: null },
    ]) {
      await expect(collect(downloadWhatsAppMedia(lacking, 'image', opts()))).rejects.toThrow(
        /mediaKey|fileEncSha256 or fileSha256/,
      );
    }
    expect(host.requests()).toEqual([]);
  });

  it('does not follow a redirect, even to an allowed origin', async () => {
    const { media } = await published(randomBytes(1000));
    const origin = await serve((_req, res) => {
      res.writeHead(302, { location: media.url! }).end();
    });
    await expect(
      collect(
        downloadWhatsAppMedia(
          { ...media, url: `${origin}/v/moved.enc` },
          'image',
          opts({ allowedOrigins: [origin, host.origin] }),
        ),
      ),
    ).rejects.toMatchObject({ status: 302, message: expect.stringMatching(/redirect/) });
    expect(host.requests()).toEqual([]);
  });

  it('rejects with the abort reason when the caller aborts mid-body', async () => {
    const { media, encrypted } = await published(randomBytes(1000));
    // Sends half of the blob, then nothing more, never closing.
    const origin = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(encrypted.blob.subarray(0, 512));
    });
    const controller = new AbortController();
    const download = downloadWhatsAppMedia(
      { ...media, url: `${origin}/v/stalled.enc` },
      'image',
      opts({ allowedOrigins: [origin], signal: controller.signal }),
    );
    const first = await download.next();
    expect(first.done).toBe(false);
    const pending = download.next();
    controller.abort(new Error('shutting down'));
    await expect(pending).rejects.toThrow('shutting down');
  });

  it('rejects at the deadline when the host never answers', async () => {
    const origin = await serve(() => {
      // Never answers.
    });
    const { media } = await published(randomBytes(100));
    await expect(
      collect(
        downloadWhatsAppMedia(
          { ...media, url: `${origin}/v/silent.enc` },
          'image',
          opts({ allowedOrigins: [origin], timeoutMs: 100 }),
        ),
      ),
    ).rejects.toThrow(/took longer than 100 ms/);
  });

  it('rejects at once when the signal is already aborted, without a request', async () => {
    const { media } = await published(randomBytes(100));
    await expect(
      collect(downloadWhatsAppMedia(media, 'image', opts({ signal: AbortSignal.abort() }))),
    ).rejects.toThrow();
    expect(host.requests()).toEqual([]);
  });
});

describe('downloadMessageMedia', () => {
  it('asks for a re-upload once when the media expired, and downloads the new copy', async () => {
    const plaintext = randomBytes(5000);
    const { media, encrypted } = await published(plaintext, 'missing');
    const { url } = host.publish(encrypted.blob);
    let asked = 0;
    const bytes = await collect(
      downloadMessageMedia(
        { imageMessage: media },
        opts({
          reupload: async () => {
            asked++;
            return { imageMessage: { ...media, url } };
          },
        }),
      ),
    );
    expect(bytes.equals(plaintext)).toBe(true);
    expect(asked).toBe(1);
    expect(host.requests().map((r) => r.status)).toEqual([404, 200]);
  });

  it('does not ask for a re-upload of a tampered blob', async () => {
    const { media } = await published(randomBytes(5000), 'bad-mac');
    let asked = 0;
    const reupload = async (): Promise<null> => {
      asked++;
      return null;
    };
    await expect(
      collect(downloadMessageMedia({ imageMessage: media }, opts({ reupload }))),
    ).rejects.toThrow(/MAC check/);
    expect(asked).toBe(0);
  });

  it('gives up when the re-upload never comes', async () => {
    const { media } = await published(randomBytes(5000), 'missing');
    await expect(
      collect(
        downloadMessageMedia(
          { imageMessage: media },
          opts({ reupload: () => new Promise(() => undefined), reuploadTimeoutMs: 50 }),
        ),
      ),
    ).rejects.toThrow(/did not upload the media again/);
  });

  it('rejects a message with no media', async () => {
    await expect(collect(downloadMessageMedia({ conversation: 'hi' }, opts()))).rejects.toThrow(
      /no downloadable media/,
    );
  });
});

describe('mediaUrl', () => {
  const base = { mediaKey: randomBytes(32) };

  it('puts the direct path on the host of url, as WhatsApp clients do', () => {
    expect(
      mediaUrl(
        { ...base, url: 'https://mmg.whatsapp.net/old?x=1', directPath: '/v/t62/a.enc?y=2' },
        [],
      ).href,
    ).toBe('https://mmg.whatsapp.net/v/t62/a.enc?y=2');
    expect(mediaUrl({ ...base, directPath: '/v/a.enc' }, []).href).toBe(
      'https://mmg.whatsapp.net/v/a.enc',
    );
  });

  it('refuses direct paths and URLs that lead off WhatsApp media hosts', () => {
    const wa = 'https://mmg.whatsapp.net/x';
    for (const bad of [
      { url: wa, directPath: '.evil.example/x' },
      { url: wa, directPath: '@10.0.0.1/x' },
      { url: wa, directPath: '//10.0.0.1/x' },
      { url: 'https://whatsapp.net.evil.example/x' },
      { url: 'https://mmg.whatsapp.net:8443/x' },
      { url: 'https://user:pw@mmg.whatsapp.net/x' },
      { url: 'http://169.254.169.254/latest/meta-data' },
      { url: 'file:///etc/passwd' },
      { url: 'not a url' },
      {},
    ]) {
      expect(() => mediaUrl({ ...base, ...bad }, [])).toThrow(/MediaDownloadError|media/);
    }
  });
});

describe('mediaOriginForWaUrl', () => {
  it('maps ws to http and wss to https, keeping host and port', () => {
    expect(mediaOriginForWaUrl('ws://127.0.0.1:8123/ws/chat')).toBe('http://127.0.0.1:8123');
    expect(mediaOriginForWaUrl('wss://wa.example.org/ws')).toBe('https://wa.example.org');
    expect(mediaOriginForWaUrl(undefined)).toBeUndefined();
    expect(mediaOriginForWaUrl('http://127.0.0.1:1')).toBeUndefined();
  });
});

describe('downloadableMediaOf', () => {
  it('finds the media under view-once and edit wrappers, with its Baileys media type', () => {
    const audio = { url: 'https://mmg.whatsapp.net/a', ptt: true };
    expect(
      downloadableMediaOf({ viewOnceMessageV2: { message: { audioMessage: audio } } }),
    ).toEqual({
      media: audio,
      mediaType: 'audio',
    });
    expect(downloadableMediaOf({ conversation: 'hi' })).toBeNull();
    expect(downloadableMediaOf(null)).toBeNull();
  });
});

describe('through saveInboundMedia', () => {
  let groupDir: string;
  beforeEach(() => {
    groupDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-media-download-'));
  });
  afterEach(() => fs.rmSync(groupDir, { recursive: true, force: true }));

  function save(media: DownloadableMedia): ReturnType<typeof saveInboundMedia> {
    return saveInboundMedia({
      groupDir,
      kind: 'image',
      mimetype: 'image/jpeg',
      timestamp: Date.UTC(2026, 10, 25, 12),
      messageId: 'ABC',
      download: async () => downloadWhatsAppMedia(media, 'image', opts()),
    });
  }

  it('leaves no file in inbox/ when the MAC is bad', async () => {
    const { media } = await published(randomBytes(200_000), 'bad-mac');
    const result = await save(media);
    expect(result).toMatchObject({ refused: expect.stringMatching(/MAC check/) });
    expect(fs.readdirSync(path.join(groupDir, 'inbox'))).toEqual([]);
  });

  it('saves the exact plaintext of an intact blob', async () => {
    const plaintext = randomBytes(200_000);
    const { media } = await published(plaintext);
    const result = await save(media);
    if (!isSavedMedia(result)) throw new Error(`not saved: ${result.refused}`);
    expect(fs.readFileSync(path.join(groupDir, result.relativePath)).equals(plaintext)).toBe(true);
  });
});

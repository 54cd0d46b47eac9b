/**
 * The agent's send_file host call (issue 10, "files both ways"): path attacks refused on the
 * host with nothing queued, a good file staged, delivered and recorded, the type sniffed from
 * the bytes, the staged copy kept across retries and restarts and removed when settled.
 *
 * Real parts: a real SQLite store, the real local channel and outbox worker, real files, links
 * and FIFOs in a temp dir, and a second process that swaps a file for a link while the host
 * reads it.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostTools, type RunBinding } from '../../main/core/agent/host-tools.js';
import {
  MAX_INLINE_IMAGE_BYTES,
  groupRelativePath,
  sniffFileType,
} from '../../main/core/agent/send-file.js';
import type { OutboundMessage, SentMessage } from '../../main/core/channels/channel.js';
import { LocalChannel } from '../../main/core/channels/local.js';
import { OutboxWorker, type OutboxPolicy } from '../../main/core/outbox.js';
import { formatOutbound } from '../../main/core/router.js';
import { openStore, type NewGroup, type Store } from '../../main/core/store/index.js';
import { buildSystemPrompt } from '../../sandbox-images/agent/runner/system-prompt.js';
import { executeTool, type ToolContext } from '../../sandbox-images/agent/runner/tools/index.js';

const NOW = Date.UTC(2026, 10, 24, 12, 0);
const FAMILY = 'local:family';
const WORK = 'local:work';
const MAIN = 'local:main';

const PNG = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(200, 7)]);
const PDF = Buffer.from('%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n');
const SECRET = 'root:x:0:0:the secret outside the group folder\n';

/** The real local channel; `failures` makes its next sends fail, `attempts` records each try. */
class FlakyLocalChannel extends LocalChannel {
  failures = 0;
  readonly attempts: Array<{ outboxId: number; stagedExists: boolean }> = [];

  constructor() {
    super({ now: () => NOW, chatName: () => 'chat' });
  }

  override async send(message: OutboundMessage): Promise<SentMessage> {
    const staged = message.attachment?.stagedPath;
    this.attempts.push({
      outboxId: message.outboxId,
      stagedExists: staged !== undefined && fs.existsSync(staged),
    });
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('the chat hiccuped');
    }
    return super.send(message);
  }
}

let root: string;
let groupsDir: string;
let filesDir: string;
let store: Store;
let channel: FlakyLocalChannel;
let outbox: OutboxWorker;
let tools: HostTools;
let logLines: Array<Record<string, unknown>>;

const group = (jid: string, folder: string, isMain = false): NewGroup => ({
  jid,
  folder,
  name: folder,
  trigger: '@Andy',
  requiresTrigger: !isMain,
  isMain,
  channel: 'local',
});

const binding = (jid: string, folder: string, isMain: boolean): RunBinding => ({
  groupJid: jid,
  chatJid: jid,
  folder,
  isMain,
  turnId: `turn-${folder}`,
});
const familyRun = binding(FAMILY, 'family', false);

const familyDir = (): string => path.join(groupsDir, 'family');
function writeFamilyFile(rel: string, data: string | Buffer): string {
  const file = path.join(familyDir(), rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
  return file;
}

function stagedFiles(): string[] {
  const dir = path.join(filesDir, 'staged');
  return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
}

function outboxRows(): Array<{ state: string; text: string; file_path: string | null }> {
  return store.db.prepare('SELECT state, text, file_path FROM outbox ORDER BY id').all() as Array<{
    state: string;
    text: string;
    file_path: string | null;
  }>;
}

function makeOutbox(policy: Partial<OutboxPolicy> = {}): OutboxWorker {
  return new OutboxWorker({
    store,
    channels: [channel],
    assistantName: 'Andy',
    log: pino({ level: 'silent' }),
    // The real clock: a retry is due once its (1 ms) backoff has passed.
    now: Date.now,
    policy: { baseDelayMs: 1, maxDelayMs: 2, ...policy },
    random: () => 0.5,
  });
}

function makeTools(opts: { maxBytes?: number; sendConfirmMs?: number } = {}): HostTools {
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  return new HostTools({
    store,
    outbox,
    formatOutbound,
    now: () => NOW,
    log,
    sendConfirmMs: opts.sendConfirmMs ?? 2_000,
    limits: { maxSendsPerTurn: 1_000, maxSendsPerMinute: 1_000 },
    files: {
      groupsDir,
      filesDir,
      ...(opts.maxBytes !== undefined ? { maxBytes: opts.maxBytes } : {}),
    },
  });
}

/** Opens the local channel, so the outbox delivers to it. */
async function openChannel(worker: OutboxWorker = outbox): Promise<void> {
  await channel.connect({
    onMessage: () => undefined,
    onState: (state) => worker.channelState(channel, state),
    onChatMetadata: () => undefined,
  });
}

/** Resolves once the item is sent or failed for good. */
async function settledOutcome(worker: OutboxWorker, id: number): Promise<string> {
  return worker.whenSettled(id, 10_000);
}

beforeEach(() => {
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-send-file-')));
  groupsDir = path.join(root, 'groups');
  filesDir = path.join(root, 'outbox-files');
  for (const folder of ['family', 'work', 'main', 'global']) {
    fs.mkdirSync(path.join(groupsDir, folder), { recursive: true });
  }
  fs.writeFileSync(path.join(groupsDir, 'work', 'secret.txt'), 'work group secret\n');
  fs.writeFileSync(path.join(groupsDir, 'global', 'CLAUDE.md'), 'global memory\n');
  fs.writeFileSync(path.join(root, 'secret.txt'), SECRET);
  store = openStore(path.join(root, 'clawbar.db'));
  store.addGroup(group(FAMILY, 'family'), NOW);
  store.addGroup(group(WORK, 'work'), NOW);
  store.addGroup(group(MAIN, 'main', true), NOW);
  channel = new FlakyLocalChannel();
  outbox = makeOutbox();
  logLines = [];
  tools = makeTools();
});

afterEach(async () => {
  await outbox.stop(0);
  await channel.disconnect();
  store.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('send_file path checks', () => {
  /** Each attack, set up in the group folder, and what the refusal must say. */
  const attacks: Array<{ name: string; path: string; setUp?: () => void; says: RegExp }> = [
    { name: 'a ../ path', path: '../work/secret.txt', says: /"\.\." segment/ },
    {
      name: 'a ../ path under /workspace/group',
      path: '/workspace/group/../../etc/passwd',
      says: /"\.\." segment/,
    },
    {
      name: 'an absolute host path',
      path: '/etc/passwd',
      says: /only files in \/workspace\/group/,
    },
    {
      name: 'the global memory, for a non-main group',
      path: '/workspace/global/CLAUDE.md',
      says: /copy it into \/workspace\/group first/,
    },
    {
      name: "another group's folder by its host path",
      path: '', // set below: it depends on the temp dir
      says: /only files in \/workspace\/group/,
    },
    {
      name: 'a symlink in the group folder pointing out',
      path: 'passwd-link.txt',
      setUp: () =>
        fs.symlinkSync(path.join(root, 'secret.txt'), path.join(familyDir(), 'passwd-link.txt')),
      says: /symbolic link/,
    },
    {
      name: "a linked folder reaching another group's files",
      path: 'work-link/secret.txt',
      setUp: () =>
        fs.symlinkSync(path.join(groupsDir, 'work'), path.join(familyDir(), 'work-link')),
      says: /symbolic link/,
    },
    {
      name: 'a directory',
      path: 'reports',
      setUp: () => fs.mkdirSync(path.join(familyDir(), 'reports')),
      says: /not a regular file/,
    },
    { name: 'the group folder itself', path: '/workspace/group/', says: /is a folder/ },
    {
      name: 'a FIFO',
      path: 'pipe',
      setUp: () => execFileSync('mkfifo', [path.join(familyDir(), 'pipe')]),
      says: /not a regular file/,
    },
    { name: 'a blank path', path: '   ', says: /the path is empty/ },
    { name: 'control characters', path: 'report\n.pdf', says: /control characters/ },
    { name: 'a missing file', path: 'nope.pdf', says: /there is no file at "nope\.pdf"/ },
    {
      name: 'an empty file',
      path: 'empty.txt',
      setUp: () => writeFamilyFile('empty.txt', ''),
      says: /is empty/,
    },
  ];

  for (const attack of attacks) {
    it(`refuses ${attack.name}, queues nothing, stages nothing and logs it`, async () => {
      attack.setUp?.();
      const target = attack.path === '' ? path.join(groupsDir, 'work', 'secret.txt') : attack.path;
      const answer = await tools.call(familyRun, 'send_file', { path: target });
      expect(answer.ok).toBe(false);
      expect(answer.result).toMatch(attack.says);
      // The refusal speaks the container's language, never the host's paths.
      expect(answer.result).not.toContain(groupsDir.replace(/\/groups$/, '/groups/family'));
      expect(outboxRows()).toEqual([]);
      expect(stagedFiles()).toEqual([]);
      expect(logLines.some((l) => l.msg === 'send_file refused' && l.group === FAMILY)).toBe(true);
    });
  }

  it('refuses the empty string at the schema, before any file is touched', async () => {
    const answer = await tools.call(familyRun, 'send_file', { path: '' });
    expect(answer).toEqual({
      ok: false,
      result: expect.stringMatching(/bad arguments for send_file: path/),
    });
    expect(outboxRows()).toEqual([]);
  });

  it('refuses a payload that names another chat: the chat comes from the run only', async () => {
    writeFamilyFile('report.pdf', PDF);
    const answer = await tools.call(familyRun, 'send_file', { path: 'report.pdf', chatJid: WORK });
    expect(answer.ok).toBe(false);
    expect(answer.result).toMatch(/bad arguments for send_file/);
    expect(outboxRows()).toEqual([]);
  });

  it('refuses a file over the size cap, with the cap in the answer', async () => {
    tools = makeTools({ maxBytes: 1024 });
    writeFamilyFile('big.pdf', Buffer.concat([PDF, Buffer.alloc(2048, 1)]));
    const answer = await tools.call(familyRun, 'send_file', { path: 'big.pdf' });
    expect(answer.ok).toBe(false);
    expect(answer.result).toMatch(/more than the 1024 allowed/);
    expect(outboxRows()).toEqual([]);
    expect(stagedFiles()).toEqual([]);
  });

  it('reads the main group from its own folder: another group cannot be reached from main either', async () => {
    const answer = await tools.call(binding(MAIN, 'main', true), 'send_file', {
      path: '../work/secret.txt',
    });
    expect(answer.ok).toBe(false);
    expect(outboxRows()).toEqual([]);
  });

  it('maps container paths to the group folder: relative, ./ and absolute under /workspace/group', () => {
    expect(groupRelativePath('report.pdf')).toBe('report.pdf');
    expect(groupRelativePath('./out//chart.png')).toBe('out/chart.png');
    expect(groupRelativePath('/workspace/group/out/chart.png')).toBe('out/chart.png');
    expect(() => groupRelativePath('/workspace/groupie/x')).toThrow(/only files in/);
  });
});

describe('send_file delivery to the local chat', () => {
  it('stages a good file, delivers it, records it with its kept path, and removes the staged copy', async () => {
    writeFamilyFile('charts/sales.png', PNG);
    // The chat is closed: the item waits, staged.
    const queued = await makeTools({ sendConfirmMs: 50 }).call(familyRun, 'send_file', {
      path: '/workspace/group/charts/sales.png',
      caption: 'Sales this week <internal>made with matplotlib</internal>',
    });
    expect(queued.ok).toBe(true);
    expect(queued.result).toMatch(/^queued sales\.png \(image, image\/png, 208 B\)/);
    const [row] = outboxRows();
    expect(row?.state).toBe('queued');
    expect(row?.text).toBe('Sales this week');
    const staged = row?.file_path as string;
    expect(path.dirname(staged)).toBe(path.join(filesDir, 'staged'));
    expect(fs.readFileSync(staged)).toEqual(PNG);
    expect(fs.statSync(staged).mode & 0o777).toBe(0o600);

    // The agent changes its file after the call: the staged copy is what goes.
    writeFamilyFile('charts/sales.png', 'changed afterwards');

    await openChannel();
    const item = store.queuedOutbox()[0]!;
    expect(await settledOutcome(outbox, item.id)).toBe('sent');
    const history = store.db
      .prepare('SELECT text, from_bot FROM messages WHERE chat_jid = ?')
      .all(FAMILY) as Array<{ text: string; from_bot: number }>;
    expect(history).toHaveLength(1);
    const [line, caption] = history[0]!.text.split('\n');
    const keptAt = /^\[file sales\.png, image\/png, 208 B: (.+)\]$/.exec(line ?? '')?.[1];
    expect(keptAt).toBeDefined();
    expect(path.dirname(keptAt!)).toBe(path.join(filesDir, 'sent'));
    expect(fs.readFileSync(keptAt!)).toEqual(PNG);
    expect(caption).toBe('Sales this week');
    expect(fs.existsSync(staged)).toBe(false);
    expect(stagedFiles()).toEqual([]);
  });

  it('answers "sent" when the chat is open', async () => {
    await openChannel();
    writeFamilyFile('report.pdf', PDF);
    const answer = await tools.call(familyRun, 'send_file', { path: 'report.pdf' });
    expect(answer).toEqual({
      ok: true,
      result: `sent report.pdf (document, application/pdf, ${PDF.length} B)`,
    });
    expect(outboxRows()).toEqual([
      expect.objectContaining({ state: 'sent', text: '', file_path: expect.any(String) }),
    ]);
  });

  it('sends what it read even when the file is swapped for a link after the call', async () => {
    const file = writeFamilyFile('note.txt', 'the real note\n');
    const answer = await makeTools({ sendConfirmMs: 50 }).call(familyRun, 'send_file', {
      path: 'note.txt',
    });
    expect(answer.ok).toBe(true);
    fs.rmSync(file);
    fs.symlinkSync(path.join(root, 'secret.txt'), file);
    await openChannel();
    const item = store.queuedOutbox()[0]!;
    expect(await settledOutcome(outbox, item.id)).toBe('sent');
    const text = (store.db.prepare('SELECT text FROM messages').get() as { text: string }).text;
    const keptAt = /: (.+)\]$/.exec(text)?.[1] as string;
    expect(fs.readFileSync(keptAt, 'utf8')).toBe('the real note\n');
  });

  it('never sends the target of a link swapped in while the host reads (a racing process)', async () => {
    const real = path.join(familyDir(), 'race.txt');
    fs.writeFileSync(path.join(familyDir(), 'real-copy.txt'), 'harmless\n');
    fs.writeFileSync(real, 'harmless\n');
    // Another process swaps race.txt between a real file and a link to the secret, as fast
    // as it can, with atomic renames, while the host reads it over and over.
    const swapper: ChildProcess = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('fs'); const [dir, secret] = process.argv.slice(1);
         const link = dir + '/.link', copy = dir + '/.copy';
         for (;;) {
           try { fs.rmSync(link, { force: true }); fs.symlinkSync(secret, link); fs.renameSync(link, dir + '/race.txt'); } catch {}
           try { fs.copyFileSync(dir + '/real-copy.txt', copy); fs.renameSync(copy, dir + '/race.txt'); } catch {}
         }`,
        familyDir(),
        path.join(root, 'secret.txt'),
      ],
      { stdio: 'ignore' },
    );
    const ATTEMPTS = 60;
    let accepted = 0;
    let refused = 0;
    try {
      for (let i = 0; i < ATTEMPTS; i++) {
        const answer = await tools.call(familyRun, 'send_file', { path: 'race.txt' });
        if (answer.ok) accepted += 1;
        else {
          refused += 1;
          expect(answer.result).toMatch(/symbolic link|no file/);
        }
      }
    } finally {
      swapper.kill('SIGKILL');
    }
    // Whatever was staged is the real file's bytes, never the secret.
    for (const name of stagedFiles()) {
      expect(fs.readFileSync(path.join(filesDir, 'staged', name), 'utf8')).toBe('harmless\n');
    }
    expect(stagedFiles()).toHaveLength(accepted);
    expect(accepted + refused).toBe(ATTEMPTS);
  });
});

describe('send_file and the outbox across failures and restarts', () => {
  it('keeps the staged copy through failed attempts and removes it once sent', async () => {
    writeFamilyFile('report.pdf', PDF);
    channel.failures = 2;
    await openChannel();
    const answer = await tools.call(familyRun, 'send_file', { path: 'report.pdf' });
    expect(answer.ok).toBe(true);
    const id = store.outboxOfTurn('turn-family')[0]!.id;
    expect(await settledOutcome(outbox, id)).toBe('sent');
    // Every attempt, the failed ones and the last, found the staged copy there.
    expect(channel.attempts).toEqual([
      { outboxId: id, stagedExists: true },
      { outboxId: id, stagedExists: true },
      { outboxId: id, stagedExists: true },
    ]);
    expect(stagedFiles()).toEqual([]);
  });

  it('keeps the staged copy across a restart, and the new worker delivers it', async () => {
    writeFamilyFile('report.pdf', PDF);
    // The chat is not open: the item waits in the outbox when Clawbar shuts down.
    const answer = await makeTools({ sendConfirmMs: 50 }).call(familyRun, 'send_file', {
      path: 'report.pdf',
    });
    expect(answer.result).toMatch(/^queued/);
    const id = store.outboxOfTurn('turn-family')[0]!.id;
    await outbox.stop(1_000);
    expect(store.outboxItem(id)?.state).toBe('queued');
    expect(stagedFiles()).toHaveLength(1);

    // The next start: a new worker on the same database delivers it, and then removes it.
    outbox = makeOutbox();
    await openChannel(outbox);
    expect(await settledOutcome(outbox, id)).toBe('sent');
    expect(channel.attempts).toEqual([{ outboxId: id, stagedExists: true }]);
    expect(stagedFiles()).toEqual([]);
  });

  it('removes the staged copy when the item fails for good', async () => {
    await outbox.stop(0);
    outbox = makeOutbox({ maxAttempts: 2 });
    tools = makeTools();
    writeFamilyFile('report.pdf', PDF);
    channel.failures = 10;
    await openChannel();
    const answer = await tools.call(familyRun, 'send_file', { path: 'report.pdf' });
    expect(answer).toEqual({ ok: false, result: expect.stringMatching(/^not delivered/) });
    expect(store.outboxOfTurn('turn-family')[0]?.state).toBe('failed');
    expect(stagedFiles()).toEqual([]);
  });

  it('refuses a half-described file at the database', () => {
    expect(() =>
      store.db
        .prepare(
          `INSERT INTO outbox (chat_jid, text, state, created_at, file_path) VALUES (?, '', 'queued', 0, '/x')`,
        )
        .run(FAMILY),
    ).toThrow(/every file column, or none/);
  });
});

describe('file types are sniffed from the bytes, not the name', () => {
  it('sends a PDF named .png as a document and a JPEG named .txt as an image', () => {
    expect(sniffFileType(PDF, 'photo.png')).toEqual({
      mimetype: 'application/pdf',
      kind: 'document',
    });
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(100)]);
    expect(sniffFileType(jpeg, 'notes.txt')).toEqual({ mimetype: 'image/jpeg', kind: 'image' });
  });

  it('sends an image over the inline limit as a document', () => {
    const big = Buffer.concat([PNG, Buffer.alloc(MAX_INLINE_IMAGE_BYTES)]);
    expect(sniffFileType(big, 'big.png')).toEqual({ mimetype: 'image/png', kind: 'document' });
  });

  it('recognises the audio WhatsApp plays, and leaves the rest as documents', () => {
    const opus = Buffer.alloc(64);
    opus.write('OggS', 0, 'latin1');
    opus.write('OpusHead', 28, 'latin1');
    expect(sniffFileType(opus, 'a.ogg')).toEqual({
      mimetype: 'audio/ogg; codecs=opus',
      kind: 'audio',
    });
    expect(sniffFileType(Buffer.from('ID3\x04\x00rest', 'latin1'), 'a.bin').kind).toBe('audio');
    const m4a = Buffer.alloc(32);
    m4a.write('ftypM4A ', 4, 'latin1');
    expect(sniffFileType(m4a, 'a.m4a')).toEqual({ mimetype: 'audio/mp4', kind: 'audio' });
    const wav = Buffer.from('RIFF\x00\x00\x00\x00WAVEfmt ', 'latin1');
    expect(sniffFileType(wav, 'a.mp3')).toEqual({ mimetype: 'audio/wav', kind: 'document' });
  });

  it('labels text and unknown bytes as documents, whatever the extension claims', () => {
    expect(sniffFileType(Buffer.from('a,b\n1,2\n'), 'data.csv')).toEqual({
      mimetype: 'text/csv',
      kind: 'document',
    });
    expect(sniffFileType(Buffer.from('plain words'), 'fake.jpg')).toEqual({
      mimetype: 'text/plain',
      kind: 'document',
    });
    expect(sniffFileType(Buffer.from([0, 1, 2, 3, 0xfe]), 'x.mp3')).toEqual({
      mimetype: 'application/octet-stream',
      kind: 'document',
    });
  });
});

describe('the runner send_file tool', () => {
  function context(calls: Array<{ name: string; args: unknown }>): ToolContext {
    return {
      groupDir: '/srv/clawbar/groups/family',
      callHost: async (name, args) => {
        calls.push({ name, args });
        return { ok: true, result: 'sent report.pdf' };
      },
    };
  }

  it('forwards the path and caption, an absolute path inside its folder made relative', async () => {
    const calls: Array<{ name: string; args: unknown }> = [];
    const outcome = await executeTool(
      'send_file',
      { path: '/srv/clawbar/groups/family/out/report.pdf', caption: 'here' },
      context(calls),
    );
    expect(outcome).toEqual({ content: 'sent report.pdf', isError: false });
    expect(calls).toEqual([
      { name: 'send_file', args: { path: 'out/report.pdf', caption: 'here' } },
    ]);
  });

  it('passes any other path on unchanged, for the host to judge', async () => {
    const calls: Array<{ name: string; args: unknown }> = [];
    await executeTool('send_file', { path: '/etc/passwd' }, context(calls));
    expect(calls).toEqual([{ name: 'send_file', args: { path: '/etc/passwd' } }]);
  });
});

describe("the agent's prompt about files", () => {
  it('says where files from the chat land and that send_file sends files back', () => {
    const prompt = buildSystemPrompt({
      assistantName: 'Andy',
      groupName: 'Family',
      isMain: false,
      paths: { root: '/workspace', group: '/workspace/group', global: '/workspace/global' },
      globalMemory: null,
      groupMemory: null,
    });
    expect(prompt).toContain('are saved in /workspace/group/inbox');
    expect(prompt).toContain('[image inbox/');
    expect(prompt).toMatch(/send_file tool sends a file from \/workspace\/group/);
  });
});

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';

import Docker from 'dockerode';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  ImageBuildError,
  RUNNER_HASH_LABEL,
  buildAgentImage,
  contextFiles,
  runnerContentHash,
  type ImageBuildProgress,
} from '../../main/core/sandbox/image.js';
import { TEST_BASE_IMAGE, removeTestImage, requireDocker } from '../helpers/docker.js';

/** Writes a build context like sandbox-images/agent: a Dockerfile and the runner bundle. */
function writeContext(dir: string, dockerfile: string): void {
  fs.mkdirSync(path.join(dir, 'dist'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  fs.writeFileSync(path.join(dir, 'dist', 'runner.mjs'), 'process.stdout.write("runner\\n");\n');
}

// The registry default never resolves here: only the BASE_IMAGE build argument makes it build.
const GOOD_DOCKERFILE = `ARG BASE_IMAGE=registry.invalid/node:22-bookworm-slim
FROM \${BASE_IMAGE}
COPY dist/runner.mjs /opt/runner/runner.mjs
RUN node /opt/runner/runner.mjs > /opt/runner/ran
CMD ["node", "/opt/runner/runner.mjs"]
`;

const FAILING_DOCKERFILE = `ARG BASE_IMAGE=registry.invalid/node:22-bookworm-slim
FROM \${BASE_IMAGE}
RUN echo "about to fail" && exit 3
`;

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-image-'));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('contextFiles', () => {
  it('lists the context when the Dockerfile and runner bundle are there', () => {
    writeContext(dir, GOOD_DOCKERFILE);
    expect(contextFiles(dir).sort()).toEqual(['Dockerfile', 'dist']);
  });

  it('asks for `npm run build` when the runner bundle is missing', () => {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), GOOD_DOCKERFILE);
    expect(() => contextFiles(dir)).toThrow(ImageBuildError);
    expect(() => contextFiles(dir)).toThrow(
      /dist\/runner\.mjs is missing; run `npm run build` first/,
    );
  });

  it('says so when there is no Dockerfile', () => {
    expect(() => contextFiles(dir)).toThrow(/no Dockerfile/);
  });
});

describe('runnerContentHash', () => {
  it('is a sha256 that stays the same for the same Dockerfile and runner bundle', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const first = await runnerContentHash(dir);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    // Another copy of the same files elsewhere (another machine's checkout) hashes alike.
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbar-image-copy-'));
    try {
      writeContext(copy, GOOD_DOCKERFILE);
      expect(await runnerContentHash(copy)).toBe(first);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  it('changes when one byte of the runner bundle changes', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const before = await runnerContentHash(dir);
    fs.appendFileSync(path.join(dir, 'dist', 'runner.mjs'), ' ');
    expect(await runnerContentHash(dir)).not.toBe(before);
  });

  it('changes when the Dockerfile changes', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const before = await runnerContentHash(dir);
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `${GOOD_DOCKERFILE}ENV X=1\n`);
    expect(await runnerContentHash(dir)).not.toBe(before);
  });

  it('ignores files outside the Dockerfile and the bundle, and CRLF line ends', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const before = await runnerContentHash(dir);
    fs.writeFileSync(path.join(dir, '.dockerignore'), 'runner\n');
    fs.mkdirSync(path.join(dir, 'runner'));
    fs.writeFileSync(path.join(dir, 'runner', 'index.ts'), 'export {};\n');
    fs.writeFileSync(path.join(dir, 'Dockerfile'), GOOD_DOCKERFILE.replace(/\n/g, '\r\n'));
    expect(await runnerContentHash(dir)).toBe(before);
  });

  it('does not let bytes move between the two files unnoticed', async () => {
    writeContext(dir, 'FROM x\n');
    fs.writeFileSync(path.join(dir, 'dist', 'runner.mjs'), 'ab');
    const before = await runnerContentHash(dir);
    fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM x\na');
    fs.writeFileSync(path.join(dir, 'dist', 'runner.mjs'), 'b');
    expect(await runnerContentHash(dir)).not.toBe(before);
  });

  it('asks for `npm run build` when the bundle is missing', async () => {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), GOOD_DOCKERFILE);
    await expect(runnerContentHash(dir)).rejects.toThrow(/run `npm run build` first/);
  });
});

/**
 * An engine that replays a scripted build stream, for what the offline engine cannot show
 * (registry pulls). The modem is the real one: its followProgress does the line parsing.
 */
function scriptedEngine(
  events: object[],
  labels: (contextDir: string) => Promise<Record<string, string>> = async (contextDir) => ({
    [RUNNER_HASH_LABEL]: await runnerContentHash(contextDir),
  }),
): Docker {
  const modem = new Docker({ socketPath: '/nonexistent/docker.sock' }).modem;
  let context = '';
  return {
    modem,
    buildImage: (src: { context: string }) => {
      context = src.context;
      return Promise.resolve(Readable.from(events.map((e) => `${JSON.stringify(e)}\r\n`)));
    },
    getImage: () => ({
      inspect: async () => ({
        Id: `sha256:${'a'.repeat(64)}`,
        Config: { Labels: await labels(context) },
      }),
    }),
  } as unknown as Docker;
}

describe('buildAgentImage progress (scripted engine)', () => {
  it('reports pull progress, steps and output lines, and returns the image id', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const docker = scriptedEngine([
      { stream: 'Step 1/2 : FROM node:22-bookworm-slim\n' },
      { status: 'Pulling from library/node', id: '22-bookworm-slim' },
      {
        status: 'Downloading',
        progressDetail: { current: 1, total: 10 },
        progress: '[==>   ] 1B/10B',
        id: 'abc123',
      },
      { stream: ' ---> 0123456789ab\n' },
      { stream: 'Step 2/2 : RUN echo hi\n' },
      { stream: 'first\nsecond\n\n' },
      { aux: { ID: `sha256:${'a'.repeat(64)}` } },
      { stream: 'Successfully built 0123456789ab\n' },
    ]);
    const events: ImageBuildProgress[] = [];
    const built = await buildAgentImage({
      docker,
      contextDir: dir,
      onProgress: (e) => events.push(e),
    });
    expect(built).toMatchObject({
      tag: 'clawbar-agent:latest',
      id: `sha256:${'a'.repeat(64)}`,
      runnerHash: await runnerContentHash(dir),
    });
    expect(events).toEqual([
      { kind: 'step', step: 1, total: 2, text: 'Step 1/2 : FROM node:22-bookworm-slim' },
      {
        kind: 'layer',
        id: '22-bookworm-slim',
        status: 'Pulling from library/node',
        progress: undefined,
      },
      { kind: 'layer', id: 'abc123', status: 'Downloading', progress: '[==>   ] 1B/10B' },
      { kind: 'output', text: ' ---> 0123456789ab' },
      { kind: 'step', step: 2, total: 2, text: 'Step 2/2 : RUN echo hi' },
      { kind: 'output', text: 'first' },
      { kind: 'output', text: 'second' },
      { kind: 'output', text: 'Successfully built 0123456789ab' },
    ]);
  });

  it('treats an error event as a failure even though the stream ends normally', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const docker = scriptedEngine([
      { stream: 'Step 1/1 : FROM node:22-bookworm-slim\n' },
      {
        errorDetail: {
          message:
            'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host',
        },
        error: 'Get …',
      },
    ]);
    const err = await buildAgentImage({ docker, contextDir: dir, tag: 'x:y' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as ImageBuildError).daemonMessage).toMatch(/no such host$/);
    expect((err as Error).message).toMatch(
      /^building x:y failed at Step 1\/1 : FROM node:22-bookworm-slim: Get .*no such host; no registry reachable\?/,
    );
  });

  it('refuses an image the engine built without the runner-hash label', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const docker = scriptedEngine([{ stream: 'Step 1/1 : FROM scratch\n' }], async () => ({}));
    const err = await buildAgentImage({ docker, contextDir: dir, tag: 'x:y' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as Error).message).toBe(
      `the engine built x:y without the ${RUNNER_HASH_LABEL} label (found null); it may be too old to label builds: update Docker`,
    );
  });

  it('rejects instead of crashing when the progress handler throws', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const docker = scriptedEngine([{ stream: 'Step 1/1 : FROM scratch\n' }]);
    const boom = new Error('boom');
    const err = await buildAgentImage({
      docker,
      contextDir: dir,
      onProgress: () => {
        throw boom;
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as Error).cause).toBe(boom);
  });
});

requireDocker('buildAgentImage with a real engine', () => {
  const docker = new Docker();
  const tags: string[] = [];
  const newTag = (): string => {
    const tag = `clawbar-test-agent-${randomBytes(4).toString('hex')}:latest`;
    tags.push(tag);
    return tag;
  };

  afterAll(async () => {
    for (const tag of tags) await removeTestImage(docker, tag);
  });

  it('builds from the given base, reporting steps and output as it goes', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const tag = newTag();
    const events: ImageBuildProgress[] = [];

    const built = await buildAgentImage({
      docker,
      contextDir: dir,
      tag,
      baseImage: TEST_BASE_IMAGE,
      onProgress: (e) => events.push(e),
    });

    expect(built.tag).toBe(tag);
    expect(built.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(built.seconds).toBeGreaterThan(0);
    const steps = events.filter((e) => e.kind === 'step');
    const hash = await runnerContentHash(dir);
    expect(steps.map((s) => s.text)).toEqual([
      'Step 1/6 : ARG BASE_IMAGE=registry.invalid/node:22-bookworm-slim',
      // The engine reports the instruction as written; the build argument applies underneath.
      'Step 2/6 : FROM ${BASE_IMAGE}',
      'Step 3/6 : COPY dist/runner.mjs /opt/runner/runner.mjs',
      'Step 4/6 : RUN node /opt/runner/runner.mjs > /opt/runner/ran',
      'Step 5/6 : CMD ["node", "/opt/runner/runner.mjs"]',
      // The runner-hash label: the engine appends it as the last step.
      `Step 6/6 : LABEL ${RUNNER_HASH_LABEL}=${hash}`,
    ]);
    expect(steps.at(-1)).toMatchObject({ kind: 'step', step: 6, total: 6 });
    expect(events).toContainEqual({
      kind: 'output',
      text: expect.stringMatching(/^Successfully tagged /),
    });

    const info = await docker.getImage(tag).inspect();
    expect(info.Id).toBe(built.id);
    expect(info.Config.Cmd).toEqual(['node', '/opt/runner/runner.mjs']);
    expect(info.Config.Labels?.[RUNNER_HASH_LABEL]).toBe(await runnerContentHash(dir));
    expect(built.runnerHash).toBe(await runnerContentHash(dir));
  });

  it('stops the build when the signal aborts, leaving no image behind', async () => {
    writeContext(
      dir,
      `ARG BASE_IMAGE=registry.invalid/node:22-bookworm-slim
FROM \${BASE_IMAGE}
RUN echo "started" && sleep 60
`,
    );
    const tag = newTag();
    const abort = new AbortController();
    const reason = new Error('test abort');
    const err = await buildAgentImage({
      docker,
      contextDir: dir,
      tag,
      baseImage: TEST_BASE_IMAGE,
      signal: abort.signal,
      onProgress: (e) => {
        if (e.kind === 'output' && e.text === 'started') abort.abort(reason);
      },
    }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    await expect(docker.getImage(tag).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('rejects with ImageBuildError carrying the engine message when a RUN step fails', async () => {
    writeContext(dir, FAILING_DOCKERFILE);
    const tag = newTag();
    const output: string[] = [];

    const err = await buildAgentImage({
      docker,
      contextDir: dir,
      tag,
      baseImage: TEST_BASE_IMAGE,
      onProgress: (e) => {
        if (e.kind === 'output') output.push(e.text);
      },
    }).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(ImageBuildError);
    const buildErr = err as ImageBuildError;
    expect(buildErr.daemonMessage).toMatch(/returned a non-zero code: 3/);
    expect(buildErr.step).toBe('Step 3/4 : RUN echo "about to fail" && exit 3');
    expect(buildErr.message).toMatch(
      /^building clawbar-test-agent-.* failed at Step 3\/4 : RUN .*non-zero code: 3$/,
    );
    // The failing command's own output reached the progress stream.
    expect(output).toContain('about to fail');
    await expect(docker.getImage(tag).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('refuses a base image that is not present, saying how to make it', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const err = await buildAgentImage({
      docker,
      contextDir: dir,
      tag: newTag(),
      baseImage: 'clawbar-test-missing-base:never',
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as Error).message).toBe(
      'base image clawbar-test-missing-base:never is not present; build it with sandbox-images/offline-base.sh or pull it (docker pull clawbar-test-missing-base:never)',
    );
  });

  it('explains a base the engine cannot pull, when pulling is allowed', async () => {
    writeContext(dir, GOOD_DOCKERFILE);
    const err = await buildAgentImage({
      docker,
      contextDir: dir,
      tag: newTag(),
      baseImage: 'registry.invalid/clawbar-test-missing-base:never',
      allowPull: true,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as ImageBuildError).step).toBe('Step 2/6 : FROM ${BASE_IMAGE}');
    expect((err as ImageBuildError).daemonMessage).toMatch(/registry\.invalid/);
    expect((err as Error).message).toMatch(
      /sandbox-images\/offline-base\.sh and pass --base clawbar-base:offline$/,
    );
  });
});

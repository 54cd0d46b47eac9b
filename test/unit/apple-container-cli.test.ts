/**
 * The Apple Container runtime's arguments and output parsing, against recorded outputs of the
 * `container` CLI (test/fixtures/apple-container/README.md says where each shape comes from).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  AppleContainerArgumentError,
  AppleContainerOutputError,
  buildArgs,
  classifyFailure,
  cpusArg,
  createArgs,
  firstErrorLine,
  memoryArg,
  oursOnly,
  parseContainerList,
  parseImageInspect,
  parseSystemStatus,
  planMounts,
  versionFrom,
  type PathKind,
} from '../../main/core/sandbox/apple-container-cli.js';
import { DEFAULT_LIMITS, type ContainerSpec, type Mount } from '../../main/core/sandbox/runtime.js';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'apple-container');
const fixture = (name: string): string => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

function spec(over: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name: 'clawbar-family-1751360400000',
    image: 'clawbar-agent:latest',
    mounts: [],
    env: { CLAWBAR_GROUP: 'family' },
    labels: { 'dev.clawbar.group': 'family' },
    limits: DEFAULT_LIMITS,
    network: false,
    ...over,
  };
}

/** The values following each occurrence of `flag`. */
function valuesOf(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] as string] : []));
}

describe('container create arguments', () => {
  it('locks the container down: no network, caps dropped, read-only root, init, removal, limits', () => {
    const args = createArgs(spec(), [], 'aaaaaaaaaaaaaaaa');
    expect(args.slice(0, 5)).toEqual([
      'create',
      '--name',
      'clawbar-family-1751360400000',
      '--rm',
      '--interactive',
    ]);
    expect(valuesOf(args, '--network')).toEqual(['none']);
    expect(valuesOf(args, '--cap-drop')).toEqual(['ALL']);
    expect(args).toContain('--read-only');
    expect(args).toContain('--init');
    expect(valuesOf(args, '--tmpfs')).toEqual(['/tmp']);
    expect(valuesOf(args, '--cpus')).toEqual(['1']);
    expect(valuesOf(args, '--memory')).toEqual(['1024M']);
    expect(valuesOf(args, '--ulimit')).toEqual(['nproc=256:256']);
    expect(args.at(-1)).toBe('clawbar-agent:latest');
    // Never a TTY: the runner speaks JSON lines, which a TTY would mangle.
    expect(args).not.toContain('--tty');
    expect(args).not.toContain('-t');
  });

  it('labels every container as ours, with the scope, next to the spec labels', () => {
    expect(valuesOf(createArgs(spec(), [], 'aaaaaaaaaaaaaaaa'), '--label')).toEqual([
      'dev.clawbar.group=family',
      'dev.clawbar.managed=1',
      'dev.clawbar.scope=aaaaaaaaaaaaaaaa',
    ]);
    expect(valuesOf(createArgs(spec(), [], undefined), '--label')).not.toContain(
      expect.stringContaining('dev.clawbar.scope'),
    );
  });

  it('passes every variable as KEY=VALUE, so a bare key never copies the host value in', () => {
    const args = createArgs(
      spec({ env: { A: '1', EMPTY: '', TZ: 'Europe/Paris' } }),
      [],
      undefined,
    );
    expect(valuesOf(args, '--env')).toEqual(['A=1', 'EMPTY=', 'TZ=Europe/Paris']);
  });

  it('attaches a network only when the group has one, and sets the user when given', () => {
    const args = createArgs(spec({ network: true, user: '501:20' }), [], undefined);
    expect(args).not.toContain('--network');
    expect(valuesOf(args, '--user')).toEqual(['501:20']);
  });

  it('gives each directory mount as --mount, read-only ones marked', () => {
    const mounts: Mount[] = [
      {
        hostPath: '/Users/ann/Clawbar/groups/family',
        containerPath: '/workspace/group',
        readOnly: false,
      },
      {
        hostPath: '/Users/ann/Clawbar/groups/global',
        containerPath: '/workspace/global',
        readOnly: true,
      },
    ];
    expect(valuesOf(createArgs(spec(), mounts, undefined), '--mount')).toEqual([
      'type=bind,source=/Users/ann/Clawbar/groups/family,target=/workspace/group',
      'type=bind,source=/Users/ann/Clawbar/groups/global,target=/workspace/global,readonly',
    ]);
  });

  it('keeps paths with spaces whole: each flag value is one argument, no shell between', () => {
    const mounts: Mount[] = [
      {
        hostPath: '/Users/ann/Library/Application Support/Clawbar/groups/family',
        containerPath: '/workspace/group',
        readOnly: false,
      },
    ];
    expect(valuesOf(createArgs(spec(), mounts, undefined), '--mount')).toEqual([
      'type=bind,source=/Users/ann/Library/Application Support/Clawbar/groups/family,target=/workspace/group',
    ]);
  });

  it.each([
    ['a comma', '/data/a,b'],
    ['an equals sign', '/data/a=b'],
    ['a relative path', 'data/a'],
    ['a newline', '/data/a\nb'],
  ])('refuses a mount path with %s, which --mount would misread', (_what, hostPath) => {
    expect(() =>
      createArgs(spec(), [{ hostPath, containerPath: '/workspace/x', readOnly: true }], undefined),
    ).toThrow(AppleContainerArgumentError);
  });

  it.each(['-leading-dash', 'has space', 'x', 'a'.repeat(64), 'semi;colon'])(
    'refuses the container name %j, which Apple Container would refuse',
    (name) => {
      expect(() => createArgs(spec({ name }), [], undefined)).toThrow(
        /not valid for Apple Container/,
      );
    },
  );

  it('accepts a 63-character name, the longest Apple Container takes', () => {
    expect(() => createArgs(spec({ name: 'a'.repeat(63) }), [], undefined)).not.toThrow();
  });

  it.each([
    ['an empty name', { '': 'x' }],
    ['a name with =', { 'A=B': 'x' }],
    ['a NUL in the value', { A: 'x\0y' }],
  ])('refuses an environment variable with %s', (_what, env) => {
    expect(() => createArgs(spec({ env }), [], undefined)).toThrow(/invalid environment variable/);
  });

  it('refuses a label whose key holds =', () => {
    expect(() => createArgs(spec({ labels: { 'a=b': '1' } }), [], undefined)).toThrow(
      /invalid label/,
    );
  });

  it('rounds limits up to what the CLI takes: whole CPUs, whole MiB', () => {
    expect(cpusArg(500_000_000)).toBe('1');
    expect(cpusArg(1_500_000_000)).toBe('2');
    expect(cpusArg(0)).toBe('1');
    expect(memoryArg(1024 * 1024 * 1024)).toBe('1024M');
    expect(memoryArg(1024 * 1024 + 1)).toBe('2M');
    expect(memoryArg(1)).toBe('1M');
  });
});

describe('mount fallbacks: Apple Container mounts directories only', () => {
  const kinds =
    (map: Record<string, PathKind>) =>
    (p: string): PathKind =>
      map[p] ?? 'missing';

  it('passes directories through unchanged, with nothing to copy', () => {
    const mounts: Mount[] = [
      { hostPath: '/h/group', containerPath: '/workspace/group', readOnly: false },
    ];
    expect(planMounts(mounts, kinds({ '/h/group': 'directory' }), '/stage')).toEqual({
      mounts,
      copies: [],
    });
  });

  it('copies a read-only file into a staging directory mounted read-only at its container directory', () => {
    const plan = planMounts(
      [
        { hostPath: '/h/group', containerPath: '/workspace/group', readOnly: false },
        {
          hostPath: '/Users/ann/notes.txt',
          containerPath: '/workspace/extra/notes.txt',
          readOnly: true,
        },
        {
          hostPath: '/Users/ann/docs/plan.md',
          containerPath: '/workspace/extra/plan.md',
          readOnly: true,
        },
        {
          hostPath: '/Users/ann/todo.txt',
          containerPath: '/workspace/more/todo.txt',
          readOnly: true,
        },
      ],
      kinds({
        '/h/group': 'directory',
        '/Users/ann/notes.txt': 'file',
        '/Users/ann/docs/plan.md': 'file',
        '/Users/ann/todo.txt': 'file',
      }),
      '/stage/run1',
    );
    expect(plan.mounts).toEqual([
      { hostPath: '/h/group', containerPath: '/workspace/group', readOnly: false },
      { hostPath: '/stage/run1/1', containerPath: '/workspace/extra', readOnly: true },
      { hostPath: '/stage/run1/2', containerPath: '/workspace/more', readOnly: true },
    ]);
    expect(plan.copies).toEqual([
      { from: '/Users/ann/notes.txt', to: '/stage/run1/1/notes.txt' },
      { from: '/Users/ann/docs/plan.md', to: '/stage/run1/1/plan.md' },
      { from: '/Users/ann/todo.txt', to: '/stage/run1/2/todo.txt' },
    ]);
    // Never the file's own parent: its neighbours must stay out of the container.
    expect(plan.mounts.map((m) => m.hostPath)).not.toContain('/Users/ann');
  });

  it('names the file in the container after its container path, not its host name', () => {
    const plan = planMounts(
      [
        {
          hostPath: '/Users/ann/.config/x.json',
          containerPath: '/workspace/extra/settings.json',
          readOnly: true,
        },
      ],
      kinds({ '/Users/ann/.config/x.json': 'file' }),
      '/stage',
    );
    expect(plan.copies).toEqual([
      { from: '/Users/ann/.config/x.json', to: '/stage/1/settings.json' },
    ]);
  });

  it('refuses a read-write file: a copy would drop the agent’s writes', () => {
    expect(() =>
      planMounts(
        [
          {
            hostPath: '/Users/ann/notes.txt',
            containerPath: '/workspace/extra/notes.txt',
            readOnly: false,
          },
        ],
        kinds({ '/Users/ann/notes.txt': 'file' }),
        '/stage',
      ),
    ).toThrow(
      /read-write file \(\/Users\/ann\/notes.txt\).*allow its directory \/Users\/ann instead/,
    );
  });

  it('refuses a file inside another mount, whose staging directory would shadow it', () => {
    expect(() =>
      planMounts(
        [
          { hostPath: '/h/group', containerPath: '/workspace/group', readOnly: false },
          {
            hostPath: '/Users/ann/notes.txt',
            containerPath: '/workspace/group/notes.txt',
            readOnly: true,
          },
        ],
        kinds({ '/h/group': 'directory', '/Users/ann/notes.txt': 'file' }),
        '/stage',
      ),
    ).toThrow(/would shadow the mount of \/h\/group/);
  });

  it('refuses a file whose staging directory would cover a directory mount below it', () => {
    expect(() =>
      planMounts(
        [
          { hostPath: '/h/group', containerPath: '/workspace/group', readOnly: false },
          {
            hostPath: '/Users/ann/notes.txt',
            containerPath: '/workspace/notes.txt',
            readOnly: true,
          },
        ],
        kinds({ '/h/group': 'directory', '/Users/ann/notes.txt': 'file' }),
        '/stage',
      ),
    ).toThrow(/would cover the mount of \/h\/group/);
  });

  it('refuses a file at the root, and two files at one container path', () => {
    const k = kinds({ '/a': 'file', '/b': 'file' });
    expect(() =>
      planMounts([{ hostPath: '/a', containerPath: '/a', readOnly: true }], k, '/s'),
    ).toThrow(/over \//);
    expect(() =>
      planMounts(
        [
          { hostPath: '/a', containerPath: '/x/f', readOnly: true },
          { hostPath: '/b', containerPath: '/x/f', readOnly: true },
        ],
        k,
        '/s',
      ),
    ).toThrow(/two mounts target \/x\/f/);
  });

  it('refuses a missing source and a source that is neither file nor directory', () => {
    expect(() =>
      planMounts([{ hostPath: '/gone', containerPath: '/x', readOnly: true }], kinds({}), '/s'),
    ).toThrow(/does not exist/);
    expect(() =>
      planMounts(
        [{ hostPath: '/dev/null', containerPath: '/x/n', readOnly: true }],
        kinds({ '/dev/null': 'other' }),
        '/s',
      ),
    ).toThrow(/neither a directory nor a regular file/);
  });
});

describe('container list output', () => {
  it('reads the 1.x shape (ManagedContainer): id, state and labels', () => {
    const list = parseContainerList(fixture('list-1.x.json'));
    expect(list.map((c) => [c.id, c.state])).toEqual([
      ['clawbar-family-1751360400000', 'running'],
      ['clawbar-work-1751321400000', 'stopped'],
      ['clawbar-other-home-1', 'running'],
      ['web', 'running'],
    ]);
    expect(list[0]?.labels).toEqual({
      'dev.clawbar.managed': '1',
      'dev.clawbar.scope': 'aaaaaaaaaaaaaaaa',
      'dev.clawbar.group': 'family',
    });
    expect(list[0]?.name).toBe(list[0]?.id);
  });

  it('reads the 0.12 shape (PrintableContainer), where status is a plain string', () => {
    expect(parseContainerList(fixture('list-0.12.json')).map((c) => [c.id, c.state])).toEqual([
      ['clawbar-family-1751360400000', 'running'],
      ['buildkit', 'stopped'],
    ]);
  });

  it('keeps only our containers of this scope, or all of ours without a scope', () => {
    const list = parseContainerList(fixture('list-1.x.json'));
    expect(oursOnly(list, 'aaaaaaaaaaaaaaaa').map((c) => c.id)).toEqual([
      'clawbar-family-1751360400000',
      'clawbar-work-1751321400000',
    ]);
    expect(oursOnly(list, undefined).map((c) => c.id)).toEqual([
      'clawbar-family-1751360400000',
      'clawbar-work-1751321400000',
      'clawbar-other-home-1',
    ]);
  });

  it('reads an empty list and empty output as no containers', () => {
    expect(parseContainerList('[]')).toEqual([]);
    expect(parseContainerList('\n')).toEqual([]);
  });

  it('skips entries of unknown shape, and refuses output that is not a JSON array', () => {
    expect(parseContainerList('[{"what":1}, 3, null]')).toEqual([]);
    expect(() => parseContainerList('ID IMAGE OS\n')).toThrow(AppleContainerOutputError);
    expect(() => parseContainerList('{"id":"x"}')).toThrow(/JSON array/);
  });

  it('treats labels of the wrong type as none instead of failing the whole list', () => {
    const out = parseContainerList(
      '[{"id":"a","configuration":{"id":"a","labels":["x"]},"status":{"state":"running"}}]',
    );
    expect(out).toEqual([{ id: 'a', name: 'a', state: 'running', labels: {} }]);
  });
});

describe('system status output', () => {
  it('reads a running service and its version number', () => {
    expect(parseSystemStatus(0, fixture('status-running.json'), '')).toEqual({
      state: 'running',
      version: '1.2.2',
    });
  });

  it('reads not running and unregistered, whatever the exit code', () => {
    expect(parseSystemStatus(1, fixture('status-not-running.json'), '')).toEqual({
      state: 'not-running',
    });
    expect(parseSystemStatus(1, fixture('status-unregistered.json'), '')).toEqual({
      state: 'unregistered',
    });
  });

  it('reads the plain-text answers and XPC errors', () => {
    expect(parseSystemStatus(1, fixture('status-table-not-running.txt'), '')).toEqual({
      state: 'unregistered',
    });
    expect(parseSystemStatus(1, 'apiserver is not running\n', '')).toEqual({
      state: 'not-running',
    });
    expect(parseSystemStatus(1, '', fixture('stderr-xpc.txt'))).toEqual({ state: 'not-running' });
  });

  it('says what it saw when it cannot tell', () => {
    expect(parseSystemStatus(64, '', fixture('stderr-unknown-option.txt'))).toEqual({
      state: 'unknown',
      detail: "Unknown option '--format'",
    });
    expect(parseSystemStatus(0, '{"status":"booting"}', '')).toEqual({
      state: 'unknown',
      detail: 'status "booting"',
    });
    expect(parseSystemStatus(3, '', '')).toEqual({ state: 'unknown', detail: 'exit code 3' });
  });

  it('takes the version number out of the server version string', () => {
    expect(versionFrom('container-apiserver version 1.2.3 (build: release, commit: 1234abc)')).toBe(
      '1.2.3',
    );
    expect(versionFrom('0.12.3')).toBe('0.12.3');
    expect(versionFrom('dev build')).toBe('dev build');
    expect(versionFrom('')).toBe('unknown');
  });
});

describe('image inspect output', () => {
  it('reads the 1.x shape: index digest, creation date, and labels from the variant that has them', () => {
    expect(parseImageInspect(fixture('image-inspect-1.x.json'))).toEqual({
      id: 'sha256:9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a39c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3',
      createdAt: '2026-07-01T08:55:12Z',
      labels: { 'dev.clawbar.runner-hash': 'HASH_PLACEHOLDER' },
    });
  });

  it('reads the 0.12 shape', () => {
    expect(parseImageInspect(fixture('image-inspect-0.12.json'))).toEqual({
      id: 'sha256:0ld1ndex',
      createdAt: '2026-05-01T10:00:00Z',
      labels: { 'dev.clawbar.runner-hash': '0ldhash' },
    });
  });

  it('reads an image without labels as having none', () => {
    const raw =
      '[{"id":"ab","configuration":{"name":"x","creationDate":"2026-01-01T00:00:00Z"},"variants":[{"config":{"config":{"Labels":null}}}]}]';
    expect(parseImageInspect(raw)).toEqual({
      id: 'sha256:ab',
      createdAt: '2026-01-01T00:00:00Z',
      labels: {},
    });
  });

  it('refuses output that is neither shape', () => {
    expect(() => parseImageInspect('[]')).toThrow(AppleContainerOutputError);
    expect(() => parseImageInspect('not json')).toThrow(/did not print JSON/);
  });
});

describe('error output', () => {
  it.each([
    ['stderr-xpc.txt', 'unavailable'],
    ['stderr-not-found.txt', 'not-found'],
    ['stderr-exists.txt', 'exists'],
    ['stderr-unknown-option.txt', 'too-old'],
  ])('classifies %s as %s', (file, kind) => {
    expect(classifyFailure(fixture(file))).toBe(kind);
  });

  it('classifies anything else as other, and keeps the first line without the Error: prefix', () => {
    expect(classifyFailure('Error: internalError: "disk full"')).toBe('other');
    expect(firstErrorLine('\n  Error: internalError: "disk full"\nmore')).toBe(
      'internalError: "disk full"',
    );
    expect(firstErrorLine('')).toBeUndefined();
  });
});

describe('container build arguments', () => {
  it('tags, labels, passes the base and names the Dockerfile in the context', () => {
    expect(
      buildArgs({
        contextDir: '/pkg/sandbox-images/agent',
        tag: 'clawbar-agent:latest',
        labels: { 'dev.clawbar.runner-hash': 'abc' },
        baseImage: 'node:22',
      }),
    ).toEqual([
      'build',
      '--tag',
      'clawbar-agent:latest',
      '--progress',
      'plain',
      '--build-arg',
      'BASE_IMAGE=node:22',
      '--label',
      'dev.clawbar.runner-hash=abc',
      '--file',
      '/pkg/sandbox-images/agent/Dockerfile',
      '/pkg/sandbox-images/agent',
    ]);
  });
});

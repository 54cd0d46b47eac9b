/**
 * The `clawbar` command (DESIGN.md §6). Every command prints human-readable output, or one
 * JSON document with `--json`. Errors go to stderr with a non-zero exit.
 *
 * Commands that act on the running core reach `serve` over its control socket. When `serve`
 * is not running, they open the database directly with dispatch off: groups can be managed
 * and messages stored, and the next `serve` answers them.
 *
 * Start-up cost matters here: `--help` and every command that `serve` answers load only the
 * CLI's own small modules. Anything heavy (the database, Docker, the SDK, pino, zod) is
 * behind a dynamic `import()` in the command that needs it; keep new imports here and in
 * control.ts and output.ts light, or type-only. `npm run bench` measures it (bench/cli-start.ts).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { withControl } from './control.js';
import { CliError, type Output, output } from './output.js';
import type { GroupStopView, GroupView, MessageView } from '../core/control/handlers.js';
import type { CoreStatus } from '../core/core.js';

const HELP = `clawbar: a private Claude assistant, each chat's agent in its own container

Usage: clawbar <command> [options]   (every command takes --json)

  serve [--http HOST:PORT]          run the core in the foreground until SIGTERM/SIGINT
  status                            serve, runtime, image and queue state
  groups list
  groups add --name N [--jid J] [--main] [--trigger T] [--no-trigger]
  groups remove|pause|resume G      G is a group's name, folder or jid
  groups stop G                     end the group's busy run now, without retry
  send --group G [--from NAME] [--wait] TEXT
  messages --group G [--limit N]
  image build [--base IMAGE]        build the agent image, with progress

Environment: CLAWBAR_HOME, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, CLAWBAR_MODEL,
CLAWBAR_RUNTIME, CLAWBAR_IMAGE, CLAWBAR_MAX_CONCURRENCY, CLAWBAR_ASSISTANT_NAME,
CLAWBAR_WA_URL, CLAWBAR_IDLE_TIMEOUT_MS, TZ (see README.md).
`;

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses one command's arguments strictly: an unknown option is an error, not ignored. */
function parse(
  args: string[],
  options: Options,
  positionals: { min: number; max: number; usage: string },
) {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args,
      options: { json: { type: 'boolean' }, ...options },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\nusage: ${positionals.usage}`);
  }
  const count = parsed.positionals.length;
  if (count < positionals.min || count > positionals.max) {
    throw new CliError(`usage: ${positionals.usage}`);
  }
  return {
    values: parsed.values as Record<string, string | boolean | undefined>,
    positionals: parsed.positionals,
  };
}

function positiveInt(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1)
    throw new CliError(`${name} must be a whole number of at least 1, got "${raw}"`);
  return Number(raw);
}

function groupLine(g: GroupView): string {
  const paused = g.pausedReason ? `paused: ${g.pausedReason}` : 'paused';
  const flags = [g.main ? 'main' : null, g.paused ? paused : null].filter(Boolean).join(', ');
  const trigger = g.trigger ?? 'every message';
  return `${g.name.padEnd(20)} ${g.folder.padEnd(20)} ${g.channel.padEnd(9)} ${trigger}${flags ? `  (${flags})` : ''}`;
}

function messageLine(m: MessageView): string {
  const who = m.fromAssistant ? `${m.from} (assistant)` : m.from;
  const delivery =
    m.delivery === 'failed'
      ? ` [not delivered: ${m.error ?? 'failed'}]`
      : m.delivery === 'queued'
        ? ' [waiting to be delivered]'
        : '';
  return `[${m.time}] ${who}: ${m.text}${delivery}`;
}

async function groups(args: string[], out: Output): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'list': {
      const { values } = parse(rest, {}, { min: 0, max: 0, usage: 'clawbar groups list' });
      out.json = Boolean(values.json);
      const list = (await withControl((c) => c.request('groups.list', {}))) as GroupView[];
      out.print(list, () =>
        list.length === 0
          ? 'no groups yet; add one with `clawbar groups add --name N`'
          : list.map(groupLine).join('\n'),
      );
      return;
    }
    case 'add': {
      const usage = 'clawbar groups add --name N [--jid J] [--main] [--trigger T] [--no-trigger]';
      const { values } = parse(
        rest,
        {
          name: { type: 'string' },
          jid: { type: 'string' },
          main: { type: 'boolean' },
          trigger: { type: 'string' },
          'no-trigger': { type: 'boolean' },
        },
        { min: 0, max: 0, usage },
      );
      out.json = Boolean(values.json);
      if (!values.name) throw new CliError(`--name is required\nusage: ${usage}`);
      if (values['no-trigger'] && values.trigger)
        throw new CliError('--trigger and --no-trigger contradict each other');
      const group = (await withControl((c) =>
        c.request('groups.add', {
          name: values.name as string,
          ...(values.jid ? { jid: values.jid as string } : {}),
          ...(values.main ? { main: true } : {}),
          ...(values.trigger ? { trigger: values.trigger as string } : {}),
          ...(values['no-trigger'] ? { requiresTrigger: false } : {}),
        }),
      )) as GroupView;
      out.print(
        group,
        () => `added group ${group.name} (folder ${group.folder}, jid ${group.jid})`,
      );
      return;
    }
    case 'remove':
    case 'pause':
    case 'resume': {
      const { values, positionals } = parse(
        rest,
        {},
        { min: 1, max: 1, usage: `clawbar groups ${sub} G` },
      );
      out.json = Boolean(values.json);
      const method = `groups.${sub}` as const;
      const group = (await withControl((c) =>
        c.request(method, { group: positionals[0] as string }),
      )) as GroupView;
      const verb = { remove: 'removed', pause: 'paused', resume: 'resumed' }[sub];
      const note = sub === 'remove' ? ` (its folder ${group.folder} and history are kept)` : '';
      out.print(group, () => `${verb} group ${group.name}${note}`);
      return;
    }
    case 'stop': {
      // Unlike pause, which lets a busy run finish: the run ends now and is not retried.
      const { values, positionals } = parse(
        rest,
        {},
        { min: 1, max: 1, usage: 'clawbar groups stop G' },
      );
      out.json = Boolean(values.json);
      const result = (await withControl((c) =>
        c.request('groups.stop', { group: positionals[0] as string }),
      )) as GroupStopView;
      const name = result.group.name;
      out.print(result, () =>
        result.stopped
          ? `Stopped the run of ${name}; its messages stay stored.`
          : result.cancelledRetry
            ? `${name} had no run; its retry is cancelled and its messages stay stored.`
            : `${name} has no run to stop.`,
      );
      return;
    }
    default:
      throw new CliError(
        'usage: clawbar groups list | add | remove G | pause G | resume G | stop G',
      );
  }
}

async function send(args: string[], out: Output): Promise<void> {
  const usage = 'clawbar send --group G [--from NAME] [--wait] TEXT';
  const { values, positionals } = parse(
    args,
    {
      group: { type: 'string' },
      from: { type: 'string' },
      wait: { type: 'boolean' },
      timeout: { type: 'string' },
    },
    { min: 1, max: 1, usage },
  );
  out.json = Boolean(values.json);
  if (!values.group) throw new CliError(`--group is required\nusage: ${usage}`);
  const text = positionals[0] as string;
  if (text.trim() === '') throw new CliError('the message is empty; nothing was sent');
  const timeoutSeconds = positiveInt(values.timeout as string | undefined, '--timeout');
  const result = (await withControl((c) =>
    c.request('send', {
      group: values.group as string,
      text,
      ...(values.from ? { from: values.from as string } : {}),
      ...(values.wait ? { wait: true } : {}),
      ...(timeoutSeconds ? { timeoutMs: timeoutSeconds * 1000 } : {}),
    }),
  )) as {
    stored: MessageView;
    triggered: boolean;
    dispatched: boolean;
    paused?: boolean;
    replies: MessageView[];
  };
  out.print(result, () => {
    if (values.wait) {
      if (!result.triggered) return 'stored; it has no trigger, so the assistant was not asked';
      if (result.paused)
        return 'stored; the group is paused, so it waits for `clawbar groups resume`';
      return result.replies.length
        ? result.replies.map(messageLine).join('\n')
        : '(the assistant sent nothing)';
    }
    // A message with no trigger is never answered, whether or not serve runs.
    if (!result.triggered) return 'stored (no trigger, so the assistant was not asked)';
    if (result.paused)
      return 'stored; the group is paused, so it waits for `clawbar groups resume`';
    if (!result.dispatched)
      return 'stored; `clawbar serve` is not running, so it will be answered when it starts';
    return 'sent';
  });
}

async function messages(args: string[], out: Output): Promise<void> {
  const usage = 'clawbar messages --group G [--limit N]';
  const { values } = parse(
    args,
    { group: { type: 'string' }, limit: { type: 'string' } },
    { min: 0, max: 0, usage },
  );
  out.json = Boolean(values.json);
  if (!values.group) throw new CliError(`--group is required\nusage: ${usage}`);
  const limit = positiveInt(values.limit as string | undefined, '--limit');
  const list = (await withControl((c) =>
    c.request('messages', { group: values.group as string, ...(limit ? { limit } : {}) }),
  )) as MessageView[];
  out.print(list, () => (list.length === 0 ? '(no messages)' : list.map(messageLine).join('\n')));
}

function channelLine(state: CoreStatus['channels'][number]['state']): string {
  switch (state.state) {
    case 'open':
      return 'open';
    case 'connecting':
      return 'connecting';
    case 'qr':
      return 'waiting for a QR scan';
    case 'pairing-code':
      return `waiting for pairing code ${state.code}`;
    case 'closed':
      return `closed (${state.reason}${state.code === undefined ? '' : `, ${state.code}`})`;
    default: {
      const unreachable: never = state;
      return String(unreachable);
    }
  }
}

async function status(args: string[], out: Output): Promise<void> {
  const { values } = parse(args, {}, { min: 0, max: 0, usage: 'clawbar status' });
  out.json = Boolean(values.json);
  const s = (await withControl((c) => c.request('status', {}))) as CoreStatus & {
    serving: boolean;
  };
  out.print(s, () => {
    const runtime = s.runtime.ok
      ? `${s.runtime.kind} ${s.runtime.version}`
      : `${s.runtime.kind} unavailable: ${s.runtime.reason} (${s.runtime.fix})`;
    const running =
      s.queue.running
        .map((r) => `${r.groupJid}${r.work === 'task' ? ' (task)' : ''}${r.idle ? ' (idle)' : ''}`)
        .join(', ') || 'none';
    const held = s.queue.waitingForRuntime.length;
    const channels = s.channels.map((c) => `${c.name} ${channelLine(c.state)}`).join(', ');
    const failures = s.outbox.recentFailures.map(
      (f) => `            failed for good: #${f.id} to ${f.chatJid}: ${f.error ?? 'unknown error'}`,
    );
    return [
      `serve:      ${s.serving ? 'running' : 'not running'}`,
      `whatsapp:   not connected (not paired)`,
      `channels:   ${channels || 'none'}`,
      `runtime:    ${runtime}`,
      `image:      ${s.image.image} ${s.image.present ? 'present' : 'missing; run `clawbar image build`'}`,
      `api key:    ${s.keyConfigured ? 'set' : 'missing; set ANTHROPIC_API_KEY'}`,
      `groups:     ${s.groups}`,
      `queue:      ${s.queue.waiting.length} waiting, ${s.queue.retrying.length} retrying, ` +
        `${held} waiting for the container engine, cap ${s.queue.maxConcurrency}`,
      `containers: ${running}`,
      `outbox:     ${s.outbox.queued} to deliver, ${s.outbox.failed} failed`,
      `disk:       ${s.disk.summary}` +
        (s.disk.waiting.length > 0 ? `; ${s.disk.waiting.length} group(s) waiting for it` : ''),
      ...s.disk.overBudget.map((g) => `            ${g.name} is paused: its ${g.reason}`),
      ...failures,
    ].join('\n');
  });
}

async function image(args: string[], out: Output): Promise<void> {
  const [sub, ...rest] = args;
  if (sub !== 'build') throw new CliError('usage: clawbar image build [--base IMAGE]');
  const { values } = parse(
    rest,
    { base: { type: 'string' } },
    { min: 0, max: 0, usage: 'clawbar image build [--base IMAGE]' },
  );
  out.json = Boolean(values.json);
  const { imageBuildCommand } = await import('./image.js');
  await imageBuildCommand({ base: values.base as string | undefined }, out);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  const out = output();
  // Set before parsing, so that a bad option is reported as JSON too (`--` ends the options).
  const optionArgs = args.includes('--') ? args.slice(0, args.indexOf('--')) : args;
  out.json = optionArgs.includes('--json');
  try {
    switch (command) {
      case 'serve': {
        const { values } = parse(
          args,
          { http: { type: 'string' } },
          { min: 0, max: 0, usage: 'clawbar serve [--http HOST:PORT]' },
        );
        if (values.http)
          throw new CliError('--http: the browser dashboard is not available in this version yet');
        const { serveCommand } = await import('./serve.js');
        return await serveCommand({ json: Boolean(values.json) });
      }
      case 'status':
        await status(args, out);
        return 0;
      case 'groups':
        await groups(args, out);
        return 0;
      case 'send':
        await send(args, out);
        return 0;
      case 'messages':
        await messages(args, out);
        return 0;
      case 'image':
        await image(args, out);
        return 0;
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        return 0;
      case undefined:
        // Asked for nothing: that is a usage error, so the usage goes to stderr.
        throw new CliError(`no command given\n\n${HELP}`);
      default:
        throw new CliError(`unknown command "${command}"\n\n${HELP}`);
    }
  } catch (err) {
    return out.fail(err);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`clawbar: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);

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
import {
  type CommandSpec,
  commandHelp,
  optionPart,
  packageVersion,
  parseCommand,
  readMessageFromStdin,
  usageLine,
  wantsHelp,
} from './args.js';
import { parseArgs } from 'node:util';
import { withControl } from './control.js';
import { CliError, type Output, output } from './output.js';
import { groupSettingsCommands } from './groups.js';
import { taskCommands } from './tasks.js';
import type { WhatsAppDisconnect } from '../core/channels/whatsapp-control.js';
import type {
  GroupStopView,
  GroupView,
  MessageView,
  SenderPolicyView,
  WhatsAppStatusView,
} from '../core/control/handlers.js';
import type { GroupMountsView } from '../core/sandbox/mount-allowlist.js';
import type { CoreStatus } from '../core/core.js';
import { formatUsageToday } from '../core/budget.js';

function positiveInt(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1)
    throw new CliError(`${name} must be a whole number of at least 1, got "${raw}"`);
  return Number(raw);
}

function groupLine(g: GroupView): string {
  const paused = g.pausedReason ? `paused: ${g.pausedReason}` : 'paused';
  const senders = g.allowedSenders ? `senders: ${g.allowedSenders.length} allowed` : null;
  // The network is shown either way: whether a container can reach out is what an engineer
  // checks first. Web fetch is off by default, so only a group that turned it on says so.
  const network = g.network ? 'network: on' : 'network: off';
  const webFetch = g.webFetch ? 'web fetch: on' : null;
  const today = g.usageToday ? `today: ${formatUsageToday(g.usageToday)}` : null;
  const flags = [
    g.main ? 'main' : null,
    g.paused ? paused : null,
    senders,
    network,
    webFetch,
    today,
  ]
    .filter(Boolean)
    .join(', ');
  const trigger = g.trigger ?? 'every message';
  return `${g.name.padEnd(20)} ${g.folder.padEnd(20)} ${g.channel.padEnd(9)} ${trigger}${flags ? `  (${flags})` : ''}`;
}

/** `groups senders`: who may wake the group's agent, in words. */
function senderPolicyText(view: SenderPolicyView): string {
  const { group, allowedSenders } = view;
  if (allowedSenders === null) return `${group.name}: anyone in the chat may wake the assistant`;
  // The account owner's own messages always may (router.ts senderMayTrigger); the local chat has no owner.
  const owner = group.channel === 'whatsapp' ? ' (and you, from your own phone)' : '';
  if (allowedSenders.length === 0) return `${group.name}: no one may wake the assistant${owner}`;
  return [
    `${group.name}: only these senders may wake the assistant${owner}:`,
    ...allowedSenders.map((sender) => `  ${sender}`),
  ].join('\n');
}

/**
 * Every value of `--allow` and `--deny`, each split at commas: `--allow a --allow b,c`.
 * The shared parser keeps only the last value, so the command's raw arguments are read again
 * here (they already passed the strict parse).
 */
function senderOptions(argv: string[]): { allow: string[]; deny: string[] } {
  const { values } = parseArgs({
    args: argv,
    options: {
      allow: { type: 'string', multiple: true },
      deny: { type: 'string', multiple: true },
      everyone: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  const split = (given: string[] | undefined): string[] =>
    (given ?? [])
      .flatMap((value) => value.split(','))
      .map((value) => value.trim())
      .filter((value) => value !== '');
  return { allow: split(values.allow), deny: split(values.deny) };
}

/** `groups mounts`: each extra mount and what the allowlist makes of it now. */
function groupMountsText(view: GroupMountsView): string {
  const lines: string[] = [];
  if (view.changed && 'added' in view.changed) lines.push(`added ${view.changed.added}`);
  if (view.changed && 'removed' in view.changed) lines.push(`removed ${view.changed.removed}`);
  if (view.mounts.length === 0) {
    lines.push(`${view.group} has no extra mounts; add one with --add PATH[:CONTAINER_PATH][:rw]`);
  } else {
    lines.push(`${view.group}'s extra mounts (checked against ${view.allowlist.file}):`);
    for (const m of view.mounts) {
      if (m.mount) {
        const mode = m.mount.readOnly ? 'read-only' : 'read-write';
        lines.push(`  ${m.hostPath} -> ${m.mount.containerPath} (${mode})`);
        for (const note of m.notes) lines.push(`    note: ${note}`);
      } else {
        lines.push(`  ${m.hostPath}: REFUSED, not mounted: ${m.reason ?? 'refused'}`);
      }
    }
  }
  if (view.allowlist.state === 'invalid') lines.push(`allowlist: ${view.allowlist.reason ?? ''}`);
  return lines.join('\n');
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

/** Commands named by two words; the first word alone prints the family's help. */
const FAMILIES: Record<string, string> = {
  groups: 'manage the chat groups',
  tasks: 'scheduled tasks: cron, interval and one-off prompts',
  image: 'the agent image',
};

/**
 * Every command, in the order `clawbar --help` lists them. A function of `out`, because the
 * handlers print through it; building the list is cheap (no imports happen here).
 */
function commandList(out: Output): CommandSpec[] {
  const groupRef = { min: 1, max: 1 };
  const byRef = (verb: 'remove' | 'pause' | 'resume', summary: string): CommandSpec => ({
    name: `groups ${verb}`,
    synopsis: 'G',
    summary,
    details: "G is the group's name, folder or jid.",
    options: {},
    positionals: groupRef,
    async run({ positionals }) {
      const method = `groups.${verb}` as const;
      const group = (await withControl((c) =>
        c.request(method, { group: positionals[0] as string }),
      )) as GroupView;
      const done = { remove: 'removed', pause: 'paused', resume: 'resumed' }[verb];
      const note = verb === 'remove' ? ` (its folder ${group.folder} and history are kept)` : '';
      out.print(group, () => `${done} group ${group.name}${note}`);
    },
  });
  return [
    {
      name: 'serve',
      synopsis: '[--http HOST:PORT]',
      summary: 'run the core in the foreground until SIGTERM/SIGINT',
      options: {
        http: {
          type: 'string',
          value: 'HOST:PORT',
          help: 'also serve the dashboard there (127.0.0.1:8765; port 0 picks one); its URL with the token is printed',
        },
      },
      positionals: { min: 0, max: 0 },
      async run({ values }) {
        const { serveCommand } = await import('./serve.js');
        return serveCommand({
          json: Boolean(values.json),
          ...(typeof values.http === 'string' ? { http: values.http } : {}),
        });
      },
    },
    {
      name: 'status',
      synopsis: '',
      summary: 'serve, runtime, image and queue state',
      options: {},
      positionals: { min: 0, max: 0 },
      async run() {
        await status(out);
      },
    },
    {
      name: 'doctor',
      synopsis: '',
      summary: 'check runtime, image, key, database, clock and time zone',
      details:
        'One line a check, with the fix under each failure. Works without serve and starts\n' +
        'nothing. Exit code 0 when every check passes, 1 otherwise.',
      options: {},
      positionals: { min: 0, max: 0 },
      async run() {
        const { doctorCommand } = await import('./doctor.js');
        return doctorCommand(out);
      },
    },
    {
      name: 'groups list',
      synopsis: '',
      summary: 'the groups, with their folder, channel and trigger',
      options: {},
      positionals: { min: 0, max: 0 },
      async run() {
        const list = (await withControl((c) => c.request('groups.list', {}))) as GroupView[];
        out.print(list, () =>
          list.length === 0
            ? 'no groups yet; add one with `clawbar groups add --name N`'
            : list.map(groupLine).join('\n'),
        );
      },
    },
    {
      name: 'groups add',
      synopsis: '--name N [--jid J] [--main] [--trigger T] [--no-trigger]',
      summary: 'add a group; without --jid it is a local-chat group',
      options: {
        name: { type: 'string', value: 'N', help: "the group's name (its folder is made from it)" },
        jid: { type: 'string', value: 'J', help: 'the chat jid of a WhatsApp group' },
        main: { type: 'boolean', help: 'make it the main group' },
        trigger: {
          type: 'string',
          value: 'T',
          help: 'the word that asks the assistant (default @Andy)',
        },
        'no-trigger': { type: 'boolean', help: 'answer every message, with no trigger' },
      },
      positionals: { min: 0, max: 0 },
      async run({ values }) {
        if (!values.name)
          throw new CliError(`--name is required\nusage: clawbar groups add ${this.synopsis}`);
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
      },
    },
    byRef('remove', 'remove a group; its folder and history are kept'),
    byRef('pause', 'stop answering a group; its messages are still stored'),
    byRef('resume', 'answer a paused group again'),
    {
      name: 'groups stop',
      synopsis: 'G',
      summary: "end the group's busy run now, without retry",
      // Unlike pause, which lets a busy run finish: the run ends now and is not retried.
      details: "G is the group's name, folder or jid. Its messages stay stored.",
      options: {},
      positionals: groupRef,
      async run({ positionals }) {
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
      },
    },
    {
      name: 'groups senders',
      synopsis: 'G [--allow S]... [--deny S]... [--everyone]',
      summary: 'show or set who may wake the assistant in a group',
      details: [
        "G is the group's name, folder or jid. Without options, shows the group's policy.",
        'S is a phone number with its country code (+1 555 123 4567) or a WhatsApp jid',
        '(15551234567@s.whatsapp.net); in a local-chat group, a name as given to `send --from`',
        '(any case). --allow and --deny repeat, or take a comma-separated list.',
        'Messages from others are still stored, as context, but never wake the assistant;',
        'in WhatsApp, your own messages (from your phone) always may.',
      ].join('\n'),
      options: {
        allow: { type: 'string', value: 'S', help: 'add S to the senders who may wake it' },
        deny: { type: 'string', value: 'S', help: 'take S off the list' },
        everyone: { type: 'boolean', help: 'drop the list: anyone in the chat may wake it' },
      },
      positionals: groupRef,
      async run({ values, positionals }, argv) {
        const { allow, deny } = senderOptions(argv);
        if (values.everyone && (allow.length > 0 || deny.length > 0))
          throw new CliError('--everyone drops the whole list; give it without --allow or --deny');
        if (
          (values.allow !== undefined || values.deny !== undefined) &&
          allow.length + deny.length === 0
        )
          throw new CliError('--allow and --deny need a sender, like +15551234567');
        const view = (await withControl((c) =>
          c.request('groups.senders', {
            group: positionals[0] as string,
            ...(allow.length > 0 ? { allow } : {}),
            ...(deny.length > 0 ? { deny } : {}),
            ...(values.everyone ? { everyone: true } : {}),
          }),
        )) as SenderPolicyView;
        out.print(view, () => senderPolicyText(view));
      },
    },
    ...groupSettingsCommands(out),
    {
      name: 'groups mounts',
      synopsis: 'G [--add PATH[:CONTAINER_PATH][:rw] | --remove PATH | --list]',
      summary: "list, add or remove host folders mounted in a group's container",
      details: [
        "G is the group's name, folder or jid. A mount appears at /workspace/extra/CONTAINER_PATH",
        "(default: the folder's name), read-only unless :rw is given and the allowlist allows it.",
        'Each folder must be inside a root of $CLAWBAR_HOME/mount-allowlist.json; secret-bearing',
        'folders (.ssh, .aws, .env, keys, ...) and folders holding them are refused. --add checks',
        'at once and says why a mount is refused; every run checks again.',
      ].join('\n'),
      options: {
        add: { type: 'string', value: 'SPEC', help: 'mount PATH[:CONTAINER_PATH][:rw]' },
        remove: { type: 'string', value: 'PATH', help: 'stop mounting PATH' },
        list: { type: 'boolean', help: 'show the mounts and their state (the default)' },
      },
      positionals: groupRef,
      async run({ values, positionals }) {
        if (values.add !== undefined && values.remove !== undefined)
          throw new CliError('give --add or --remove, not both');
        const view = (await withControl((c) =>
          c.request('groups.mounts', {
            group: positionals[0] as string,
            ...(values.add !== undefined ? { add: values.add as string } : {}),
            ...(values.remove !== undefined ? { remove: values.remove as string } : {}),
          }),
        )) as GroupMountsView;
        out.print(view, () => groupMountsText(view));
      },
    },
    {
      name: 'send',
      synopsis: '--group G [--from NAME] [--wait [--timeout SECONDS]] TEXT|-',
      summary: 'put one message into a local-chat group',
      details: [
        'TEXT is the message. `-` reads it from stdin, so long text and files can be piped:',
        '  cat notes.txt | clawbar send --group family -',
        'Text that starts with `-` goes after `--`, which ends the options:',
        '  clawbar send --group family -- -5 degrees',
      ].join('\n'),
      options: {
        group: { type: 'string', value: 'G', help: "the group's name, folder or jid" },
        from: { type: 'string', value: 'NAME', help: "the sender's name (default: you)" },
        wait: {
          type: 'boolean',
          help: 'wait for the run the message triggers and print its replies (needs serve)',
        },
        timeout: { type: 'string', value: 'SECONDS', help: 'how long --wait waits (default 600)' },
      },
      positionals: { min: 1, max: Number.MAX_SAFE_INTEGER },
      dashHint:
        'to send text that starts with -, put -- before it: clawbar send --group G -- -5 degrees',
      async run({ values, positionals }, args) {
        await send(values, positionals, args, out);
      },
    },
    {
      name: 'messages',
      synopsis: '--group G [--limit N]',
      summary: 'the chat history, both directions, oldest first',
      options: {
        group: { type: 'string', value: 'G', help: "the group's name, folder or jid" },
        limit: { type: 'string', value: 'N', help: 'only the last N messages' },
      },
      positionals: { min: 0, max: 0 },
      async run({ values }) {
        if (!values.group)
          throw new CliError(`--group is required\nusage: clawbar messages ${this.synopsis}`);
        const limit = positiveInt(values.limit as string | undefined, '--limit');
        const list = (await withControl((c) =>
          c.request('messages', { group: values.group as string, ...(limit ? { limit } : {}) }),
        )) as MessageView[];
        out.print(list, () =>
          list.length === 0 ? '(no messages)' : list.map(messageLine).join('\n'),
        );
      },
    },
    ...taskCommands(out),
    {
      name: 'chats',
      synopsis: '',
      summary: 'the chats WhatsApp knows; which are enabled',
      options: {},
      positionals: { min: 0, max: 0 },
      async run() {
        const { chatsCommand } = await import('./whatsapp.js');
        await chatsCommand(out);
      },
    },
    {
      name: 'pair',
      synopsis: '[--phone NUMBER]',
      summary: 'link WhatsApp by QR or pairing code (needs serve)',
      details:
        'Shows a QR code to scan with WhatsApp (Settings → Linked devices → Link a device); it\n' +
        'refreshes until scanned. With --phone, shows a code to type on that phone instead.\n' +
        'Ends once the phone is linked, or on Ctrl-C. With --json: one JSON object a line.',
      options: {
        phone: {
          type: 'string',
          value: 'NUMBER',
          help: 'pair by code for this number, with its country code (like +15551234567)',
        },
      },
      positionals: { min: 0, max: 0 },
      async run({ values }) {
        const { pairCommand } = await import('./whatsapp.js');
        return pairCommand(
          values.phone === undefined ? {} : { phone: values.phone as string },
          out,
        );
      },
    },
    {
      name: 'unlink',
      synopsis: '',
      summary: 'log WhatsApp out, wipe its keys (needs serve)',
      options: {},
      positionals: { min: 0, max: 0 },
      async run() {
        const { unlinkCommand } = await import('./whatsapp.js');
        await unlinkCommand(out);
      },
    },
    {
      name: 'image build',
      synopsis: '[--base IMAGE] [--force]',
      summary: 'build the agent image, with progress',
      details:
        'Without --base: nothing to do when the image matches this runner; otherwise it builds\n' +
        'on node:22-bookworm-slim (present or pulled), else a local clawbar-base:offline, else\n' +
        'that base made with sandbox-images/offline-base.sh (needs root and debootstrap).',
      options: {
        base: {
          type: 'string',
          value: 'IMAGE',
          help: "build on IMAGE, always (replaces the Dockerfile's BASE_IMAGE)",
        },
        force: { type: 'boolean', help: 'rebuild even when the image is up to date' },
      },
      positionals: { min: 0, max: 0 },
      async run({ values }) {
        const { imageBuildCommand } = await import('./image.js');
        await imageBuildCommand(
          { base: values.base as string | undefined, force: Boolean(values.force) },
          out,
        );
      },
    },
  ];
}

/** Two columns: a synopsis, then its summary (on the next line when the synopsis is long). */
function listing(specs: CommandSpec[]): string {
  const width = 44;
  return specs
    .map((spec) => {
      const left = `  ${usageLine(spec).slice('clawbar '.length)}`;
      return left.length < width
        ? `${left.padEnd(width)}${spec.summary}`
        : `${left}\n${' '.repeat(width)}${spec.summary}`;
    })
    .join('\n');
}

function mainHelp(specs: CommandSpec[]): string {
  return `clawbar: a private Claude assistant, each chat's agent in its own container

Usage: clawbar <command> [options]   (every command takes --json and --help)

${listing(specs)}

\`clawbar <command> --help\` shows a command's options; \`clawbar --version\` prints the version.

Environment: CLAWBAR_HOME, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, CLAWBAR_MODEL,
CLAWBAR_RUNTIME, CLAWBAR_IMAGE, CLAWBAR_MAX_CONCURRENCY, CLAWBAR_ASSISTANT_NAME,
CLAWBAR_WA_URL, CLAWBAR_IDLE_TIMEOUT_MS, TZ (see README.md).
`;
}

function familyHelp(family: string, specs: CommandSpec[]): string {
  const members = specs.filter((s) => s.name.startsWith(`${family} `));
  return `Usage: clawbar ${family} <command> [options]\n\n${FAMILIES[family]}:\n\n${listing(members)}\n\n\`clawbar ${family} <command> --help\` shows a command's options.\n`;
}

async function send(
  values: Record<string, string | boolean | undefined>,
  positionals: string[],
  args: string[],
  out: Output,
): Promise<void> {
  if (!values.group)
    throw new CliError(
      '--group is required\nusage: clawbar send --group G [--from NAME] [--wait] TEXT|-',
    );
  // `-` among the options means stdin; after `--` it is the text "-" itself.
  const fromStdin = optionPart(args).includes('-');
  if (fromStdin && positionals.length > 1)
    throw new CliError(
      '`-` reads the message from stdin, so it takes no TEXT as well; put text that contains a lone - after --',
    );
  let text: string;
  if (fromStdin) {
    // Loaded only here, so that the limit has one source and `--help` stays light.
    const { MAX_CHAT_MESSAGE_CHARS } = await import('../core/agent/run-limits.js');
    text = await readMessageFromStdin(MAX_CHAT_MESSAGE_CHARS);
  } else {
    // Unquoted words after `--` arrive as several arguments: they are one message.
    text = positionals.join(' ');
  }
  if (text.trim() === '') throw new CliError('the message is empty; nothing was sent');
  const timeoutSeconds = positiveInt(values.timeout as string | undefined, '--timeout');
  const progress = waitProgress(Boolean(values.wait) && !out.json);
  const result = (await withControl((c) =>
    c.request(
      'send',
      {
        group: values.group as string,
        text,
        ...(values.from ? { from: values.from as string } : {}),
        ...(values.wait ? { wait: true } : {}),
        ...(timeoutSeconds ? { timeoutMs: timeoutSeconds * 1000 } : {}),
      },
      { onProgress: progress.show },
    ),
  ).then(
    (answer) => {
      progress.done();
      return answer;
    },
    (err: unknown) => {
      progress.done(false);
      // Serve went away mid-wait: the message it stored is safe, and the next serve answers it.
      if (err instanceof Error && err.name === 'ServeClosedError' && progress.stored)
        throw new CliError(
          'clawbar serve stopped before answering; the message is stored and will be answered when serve starts again',
          1,
        );
      throw err;
    },
  )) as {
    stored: MessageView;
    triggered: boolean;
    senderNotAllowed?: boolean;
    dispatched: boolean;
    paused?: boolean;
    replies: MessageView[];
  };
  out.print(result, () => {
    if (result.senderNotAllowed)
      return `stored; ${result.stored.from} may not wake the assistant in this group (see \`clawbar groups senders\`)`;
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

/**
 * A channel's part of the `channels:` line. For WhatsApp, the last disconnect (code and text,
 * and when) is added while the state itself does not show it: a link that is open again after
 * a drop still says what happened.
 */
function channelStatus(
  channel: CoreStatus['channels'][number],
  lastDisconnect: WhatsAppDisconnect | null | undefined,
): string {
  const line = `${channel.name} ${channelLine(channel.state)}`;
  if (channel.name !== 'whatsapp' || !lastDisconnect) return line;
  if (channel.state.state === 'closed' || channel.state.state === 'needs-pairing') return line;
  const code = lastDisconnect.code === undefined ? '' : ` (${lastDisconnect.code})`;
  const at = new Date(lastDisconnect.at).toISOString().replace('T', ' ').slice(0, 19);
  return `${line}; last disconnect: ${lastDisconnect.reason}${code} at ${at} UTC`;
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
    case 'needs-pairing':
      return (
        `needs pairing (${state.reason}${state.code === undefined ? '' : `, ${state.code}`})` +
        // The channel's reason usually says it already.
        (state.reason.includes('clawbar pair') ? '' : '; run `clawbar pair`')
      );
    default: {
      const unreachable: never = state;
      return String(unreachable);
    }
  }
}

async function status(out: Output): Promise<void> {
  const s = (await withControl((c) => c.request('status', {}))) as CoreStatus &
    WhatsAppStatusView & { serving: boolean };
  out.print(s, () => {
    const runtime = s.runtime.ok
      ? `${s.runtime.kind} ${s.runtime.version}`
      : `${s.runtime.kind} unavailable: ${s.runtime.reason} (${s.runtime.fix})`;
    const running =
      s.queue.running
        .map((r) => `${r.groupJid}${r.work === 'task' ? ' (task)' : ''}${r.idle ? ' (idle)' : ''}`)
        .join(', ') || 'none';
    const held = s.queue.waitingForSetup.length;
    const channels = s.channels.map((c) => channelStatus(c, s.whatsappLastDisconnect)).join(', ');
    const failures = s.outbox.recentFailures.map(
      (f) => `            failed for good: #${f.id} to ${f.chatJid}: ${f.error ?? 'unknown error'}`,
    );
    // Only a serving core has looked at its set-up; the offline CLI does not guess.
    const setup = s.serving
      ? s.setup.ready
        ? ['ready:      yes']
        : s.setup.problems.map(
            (p, i) =>
              `${i === 0 ? 'ready:      no: ' : '            '}${p.message}` +
              (p.fix ? ` (fix: ${p.fix})` : p.progress ? ` (${p.progress})` : ''),
          )
      : [];
    return [
      `serve:      ${s.serving ? 'running' : 'not running'}`,
      ...setup,
      `channels:   ${channels || 'none'}`,
      `runtime:    ${runtime}`,
      `image:      ${s.image.image} ${imageLine(s.image.present)}`,
      `api key:    ${s.keyConfigured ? 'set' : 'missing; set ANTHROPIC_API_KEY'}`,
      `groups:     ${s.groups}`,
      `queue:      ${s.queue.waiting.length} waiting, ${s.queue.retrying.length} retrying, ` +
        `${held} held until the set-up is ready, cap ${s.queue.maxConcurrency}`,
      `containers: ${running}`,
      `outbox:     ${s.outbox.queued} to deliver, ${s.outbox.failed} failed`,
      `disk:       ${s.disk.summary}` +
        (s.disk.waiting.length > 0 ? `; ${s.disk.waiting.length} group(s) waiting for it` : ''),
      ...s.disk.overBudget.map((g) => `            ${g.name} is paused: its ${g.reason}`),
      // An older serve may not report usage.
      ...(s.usageToday ? [`today:      ${formatUsageToday(s.usageToday)}`] : []),
      ...(s.budgetHeld?.length
        ? [`budget:     waiting for midnight (daily budget reached): ${s.budgetHeld.join(', ')}`]
        : []),
      ...failures,
    ].join('\n');
  });
}

/** Whether the agent image is there; "unknown" when the engine could not be asked. */
function imageLine(present: boolean | null): string {
  if (present === null) return 'unknown (the container engine is not reachable)';
  return present ? 'present' : 'missing; run `clawbar image build`';
}

/** Finds the command `argv` names, and the arguments that are its own. */
function select(
  argv: string[],
  specs: CommandSpec[],
): { spec: CommandSpec; args: string[] } | { help: string } {
  const [first, ...rest] = argv;
  if (first === undefined) throw new CliError(`no command given\n\n${mainHelp(specs)}`);
  if (first in FAMILIES) {
    const [sub, ...args] = rest;
    if (sub === '--help' || sub === '-h') return { help: familyHelp(first, specs) };
    const usage = familyHelp(first, specs);
    if (sub === undefined) throw new CliError(`\`${first}\` needs a command\n\n${usage}`);
    const spec = specs.find((s) => s.name === `${first} ${sub}`);
    if (!spec) throw new CliError(`unknown ${first} command "${sub}"\n\n${usage}`);
    return { spec, args };
  }
  const spec = specs.find((s) => s.name === first);
  if (!spec) throw new CliError(`unknown command "${first}"\n\n${mainHelp(specs)}`);
  return { spec, args: rest };
}

async function main(argv: string[]): Promise<number> {
  const out = output();
  // Set before parsing, so that a bad option is reported as JSON too (`--` ends the options).
  out.json = optionPart(argv).includes('--json');
  const specs = commandList(out);
  try {
    const [first, ...rest] = argv;
    if (first === '--version' || first === '-V') {
      const version = packageVersion();
      out.print({ version }, () => version);
      return 0;
    }
    if (first === '--help' || first === '-h' || first === 'help') {
      // `clawbar help send` is `clawbar send --help`.
      const chosen = rest.length > 0 ? select(rest, specs) : { help: mainHelp(specs) };
      process.stdout.write('help' in chosen ? chosen.help : commandHelp(chosen.spec));
      return 0;
    }
    const chosen = select(argv, specs);
    if ('help' in chosen) {
      process.stdout.write(chosen.help);
      return 0;
    }
    const { spec, args } = chosen;
    if (wantsHelp(args)) {
      process.stdout.write(commandHelp(spec));
      return 0;
    }
    return (await spec.run(parseCommand(spec, args), args)) ?? 0;
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

/**
 * `send --wait`'s progress on stderr, when stderr is a terminal: one line per stage (stored,
 * queued, building, starting, thinking, running a tool, done), with the seconds since the send.
 * Off the terminal (a script, --json), nothing is shown, but whether the message was stored is
 * still tracked, for the error when serve stops mid-wait.
 */
function waitProgress(enabled: boolean): {
  show(update: { stage: string; text: string }): void;
  done(ok?: boolean): void;
  readonly stored: boolean;
} {
  const started = Date.now();
  const shown = enabled && process.stderr.isTTY === true;
  let stored = false;
  let any = false;
  const line = (text: string): void => {
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    // The text comes from serve; a terminal gets printable characters only.
    // eslint-disable-next-line no-control-regex
    const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
    process.stderr.write(`  ${seconds.padStart(5)} s  ${clean}\n`);
  };
  return {
    show(update) {
      if (update.stage === 'stored') stored = true;
      if (!shown) return;
      any = true;
      line(update.text);
    },
    done(ok = true) {
      if (shown && any && ok) line('done');
    },
    get stored() {
      return stored;
    },
  };
}

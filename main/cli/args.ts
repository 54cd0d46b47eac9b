/**
 * Argument handling shared by every CLI command: strict option parsing with errors that name
 * the valid options, per-command `--help`, the version, and message text read from stdin.
 *
 * Loaded by `clawbar --help`, so it uses Node built-ins only (see the note in index.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CliError } from './output.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** The value's placeholder in help, like `G` for `--group G`. Only for string options. */
  value?: string;
  /** One line for the command's help. */
  help: string;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export interface CommandSpec {
  /** The words that select it, like `send` or `groups add`. */
  name: string;
  /** What follows the name in the usage line: `--group G [--from NAME] TEXT|-`. */
  synopsis: string;
  /** One line for the command list in `clawbar --help`. */
  summary: string;
  /** More lines for the command's own help, after the usage line. */
  details?: string;
  options: Record<string, OptionSpec>;
  positionals: { min: number; max: number };
  /** What a positional argument starting with `-` needs, for the unknown-option hint. */
  dashHint?: string;
  /**
   * Options the design names but this version does not have, each with the error to give.
   * They are not in the help, and are refused by name rather than as unknown.
   */
  unavailable?: Record<string, string>;
  /** Runs the command; `argv` is its raw arguments, for what parsing cannot tell apart. */
  run(args: ParsedArgs, argv: string[]): Promise<number | void>;
}

/** Options every command takes; listed last in help and in "valid:" lists. */
export const COMMON_OPTIONS: Record<string, OptionSpec & { short?: string }> = {
  json: { type: 'boolean', help: 'print one JSON document on stdout (errors as JSON on stderr)' },
  help: { type: 'boolean', short: 'h', help: 'print this help and exit' },
};

/** The arguments before a `--`, the only ones that can be options. */
export function optionPart(args: string[]): string[] {
  const end = args.indexOf('--');
  return end === -1 ? args : args.slice(0, end);
}

/** True when the arguments ask for help (`--help` or `-h` before any `--`). */
export function wantsHelp(args: string[]): boolean {
  return optionPart(args).some((a) => a === '--help' || a === '-h');
}

export function usageLine(spec: CommandSpec): string {
  return `clawbar ${spec.name}${spec.synopsis ? ` ${spec.synopsis}` : ''}`;
}

function optionLabel(name: string, spec: OptionSpec & { short?: string }): string {
  const long = `--${name}${spec.type === 'string' ? ` ${spec.value ?? 'VALUE'}` : ''}`;
  return spec.short ? `-${spec.short}, ${long}` : long;
}

/** The command's own help: usage, details, and every option it takes. */
export function commandHelp(spec: CommandSpec): string {
  const options = { ...spec.options, ...COMMON_OPTIONS };
  const labels = Object.entries(options).map(([name, o]) => [optionLabel(name, o), o.help]);
  const width = Math.max(...labels.map(([label]) => (label as string).length)) + 2;
  return [
    `Usage: ${usageLine(spec)}`,
    '',
    spec.summary,
    ...(spec.details ? ['', spec.details] : []),
    '',
    'Options:',
    ...labels.map(([label, help]) => `  ${(label as string).padEnd(width)}${help}`),
    '',
  ].join('\n');
}

/**
 * Parses one command's arguments strictly. An unknown option is an error that lists the
 * valid ones; Node's own message suggested sending the option as text, which is never what
 * a user who mistyped an option wants.
 */
export function parseCommand(spec: CommandSpec, args: string[]): ParsedArgs {
  for (const [name, message] of Object.entries(spec.unavailable ?? {})) {
    if (optionPart(args).some((a) => a === `--${name}` || a.startsWith(`--${name}=`)))
      throw new CliError(message);
  }
  const options = { ...spec.options, ...COMMON_OPTIONS };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args,
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          'short' in o && o.short ? { type: o.type, short: o.short } : { type: o.type },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const given = /'([^']+)'/.exec((err as Error).message)?.[1] ?? 'given';
      const valid = Object.keys(options)
        .map((name) => `--${name}`)
        .join(', ');
      const hint = spec.dashHint ? `\n${spec.dashHint}` : '';
      throw new CliError(
        `unknown option ${given} for \`${spec.name}\`; valid: ${valid}${hint}\nusage: ${usageLine(spec)}`,
      );
    }
    throw new CliError(`${(err as Error).message}\nusage: ${usageLine(spec)}`);
  }
  const count = parsed.positionals.length;
  if (count < spec.positionals.min || count > spec.positionals.max) {
    throw new CliError(`usage: ${usageLine(spec)}`);
  }
  return {
    values: parsed.values as Record<string, string | boolean | undefined>,
    positionals: parsed.positionals,
  };
}

/**
 * The version in the package.json of this installation. Searched upwards from this module,
 * because the compiled file sits deeper (dist/main/cli) than the source (main/cli).
 */
export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (pkg.name === 'clawbar' && typeof pkg.version === 'string') return pkg.version;
    }
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error(`no package.json of clawbar above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/**
 * Reads a message's text from stdin, for `clawbar send --group G -`. It stops reading once the
 * input cannot fit in `maxChars` characters, so piping a huge file in fails fast instead of
 * filling memory. The text is trimmed, as the core trims a message anyway.
 */
export async function readMessageFromStdin(
  maxChars: number,
  stdin: NodeJS.ReadStream = process.stdin,
): Promise<string> {
  if (stdin.isTTY)
    process.stderr.write('clawbar: reading the message from stdin; end it with Ctrl-D\n');
  // One UTF-16 code unit (what a message's length counts) is at most 3 bytes of UTF-8.
  const maxBytes = maxChars * 3;
  const tooLong = () =>
    new CliError(
      `the message on stdin is longer than ${maxChars} characters, the most one message may hold; nothing was sent`,
    );
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stdin) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    bytes += buffer.length;
    // Leaving the loop destroys the stream, so the writer gets EPIPE instead of blocking.
    if (bytes > maxBytes + 2) throw tooLong();
    chunks.push(buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') {
    throw new CliError(
      'stdin was empty, so there is no message to send; nothing was sent (pipe the text in: `echo hi | clawbar send --group G -`)',
    );
  }
  if (text.length > maxChars) throw tooLong();
  return text;
}

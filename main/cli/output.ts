/** Printing for the CLI: human text or one JSON document on stdout; errors on stderr. */
import { ControlRequestError } from '../core/control/client.js';

/** An error whose message is the whole story for the user (no stack). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface Output {
  json: boolean;
  /** Prints `value` as JSON with --json, else the human text. */
  print(value: unknown, human: () => string): void;
  /** Human progress lines (stderr with --json, so stdout stays one document). */
  progress(line: string): void;
  /** Reports an error and returns the exit code. */
  fail(err: unknown): number;
}

export function output(): Output {
  const out: Output = {
    json: false,
    print(value, human) {
      process.stdout.write(out.json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
    },
    progress(line) {
      (out.json ? process.stderr : process.stdout).write(`${line}\n`);
    },
    fail(err) {
      const known =
        err instanceof CliError ||
        err instanceof ControlRequestError ||
        (err instanceof Error && knownNames.has(err.name));
      const message =
        err instanceof Error ? (known ? err.message : (err.stack ?? err.message)) : String(err);
      if (out.json)
        process.stderr.write(
          `${JSON.stringify({ error: err instanceof Error ? err.message : String(err) })}\n`,
        );
      else process.stderr.write(`clawbar: ${message}\n`);
      return err instanceof CliError ? err.exitCode : 1;
    },
  };
  return out;
}

/** Errors with messages written for users; their stacks are noise. */
const knownNames = new Set([
  'ConfigError',
  'CoreInputError',
  'UnknownGroupError',
  'DatabaseFromTheFutureError',
  'ServeAlreadyRunningError',
  'ImageBuildError',
  'ContainerStartError',
  'RuntimeUnavailableError',
  'ImageMissingError',
  'ReplyWaitError',
  'ServeClosedError',
  'InvalidFolderNameError',
]);

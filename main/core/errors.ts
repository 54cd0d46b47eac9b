/** Errors whose message is meant for the person who gave the input. */

/** Bad input from a person or a client (CLI, tray, control socket). */
export class CoreInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CoreInputError';
  }
}

/** A command named a group that does not exist. */
export class UnknownGroupError extends CoreInputError {
  constructor(ref: string) {
    super(`no group named "${ref}" (by name, folder or jid); see \`clawbar groups list\``);
    this.name = 'UnknownGroupError';
  }
}

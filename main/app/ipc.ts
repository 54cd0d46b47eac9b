/**
 * The one IPC registrar. Every channel of the contract gets exactly one handler here, and every
 * call goes through the same gate: the sender must be Clawbar's own window, and the argument
 * is parsed from `unknown` with the channel's schema before the core sees it. There is no
 * catch-all channel and no way to call a core method by name.
 *
 * Electron is injected (`ipcMain`, the window check), so this runs under test with the
 * hand-written fake in `test/fakes/electron.ts`.
 */
import { groupView } from '../core/control/handlers.js';
import type { Core } from '../core/core.js';
import { CoreInputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  IPC,
  ipcChannels,
  ipcContract,
  type IpcArgs,
  type IpcChannel,
  type IpcResult,
} from '../../preload/ipc-contract.js';

/** A call came from a web page that is not Clawbar's own window. */
export class IpcForbiddenError extends Error {
  constructor(channel: IpcChannel) {
    super(`${channel} refused: the caller is not Clawbar's own window`);
    this.name = 'IpcForbiddenError';
  }
}

/** A call's argument did not match the channel's schema. */
export class IpcInputError extends Error {
  constructor(channel: IpcChannel, detail: string) {
    super(`${channel}: ${detail}`);
    this.name = 'IpcInputError';
  }
}

/** The part of Electron's `IpcMainInvokeEvent` the registrar reads. */
export interface IpcInvokeEvent<Sender> {
  readonly sender: Sender;
}

/** The part of Electron's `ipcMain` the registrar uses. */
export interface IpcMainLike<Sender> {
  handle(
    channel: string,
    listener: (event: IpcInvokeEvent<Sender>, ...args: unknown[]) => Promise<unknown>,
  ): void;
  removeHandler(channel: string): void;
}

/** The parts of the core the window may use. */
export type IpcCore = Pick<Core, 'groups' | 'pauseGroup' | 'resumeGroup' | 'status'>;

export interface IpcDeps<Sender> {
  ipcMain: IpcMainLike<Sender>;
  /** True only for the web contents of Clawbar's own window (`BrowserWindow.fromWebContents`). */
  isOwnWindow(sender: Sender): boolean;
  core: IpcCore;
  log: Logger;
}

type IpcHandlers = { [C in IpcChannel]: (args: IpcArgs<C>) => Promise<IpcResult<C>> };

/** What each channel does. Results are plain data: they cross the process boundary by structured clone. */
function ipcHandlers(core: IpcCore): IpcHandlers {
  return {
    [IPC.groupsList]: async () => core.groups.list().map(groupView),
    [IPC.groupsPause]: async ({ group }) => groupView(core.pauseGroup(group)),
    [IPC.groupsResume]: async ({ group }) => groupView(core.resumeGroup(group)),
    [IPC.statusGet]: async () => core.status(),
  };
}

/**
 * Registers one handler per contract channel. Returns a function that removes them again.
 *
 * A refused or invalid call rejects in the renderer with a message saying why; Electron passes
 * only the message across, so the messages are written for a person to read.
 */
export function registerIpc<Sender>(deps: IpcDeps<Sender>): () => void {
  const log = deps.log.child({ mod: 'ipc' });
  const handlers = ipcHandlers(deps.core);
  for (const channel of ipcChannels) {
    deps.ipcMain.handle(channel, async (event, ...rawArgs) => {
      if (!deps.isOwnWindow(event.sender)) {
        log.warn({ channel }, 'refused IPC from a sender that is not our window');
        throw new IpcForbiddenError(channel);
      }
      if (rawArgs.length > 1)
        throw new IpcInputError(channel, `takes at most one argument, got ${rawArgs.length}`);
      const parsed = ipcContract[channel].args.safeParse(rawArgs[0]);
      if (!parsed.success) throw new IpcInputError(channel, describeIssue(parsed.error.issues));
      // The handler table is keyed by channel, and the argument was parsed with that channel's schema.
      const handler = handlers[channel] as (args: unknown) => Promise<unknown>;
      try {
        return await handler(parsed.data);
      } catch (err) {
        if (!(err instanceof CoreInputError)) log.error({ channel, err }, 'IPC call failed');
        throw err;
      }
    });
  }
  return () => {
    for (const channel of ipcChannels) deps.ipcMain.removeHandler(channel);
  };
}

function describeIssue(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  const issue = issues[0];
  if (!issue) return 'invalid argument';
  return issue.path.length > 0
    ? `${issue.path.map(String).join('.')}: ${issue.message}`
    : issue.message;
}

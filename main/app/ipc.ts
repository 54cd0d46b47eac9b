/**
 * The one IPC registrar. Every channel of the contract gets exactly one handler here, and every
 * call goes through the same gate: the sender must be Clawbar's own window, and the argument
 * is parsed from `unknown` with the channel's schema before the core sees it. There is no
 * catch-all channel and no way to call a core method by name.
 *
 * What a channel does lives in `main/core/control/ui-api.ts`, shared with the headless HTTP
 * bridge, so the window and the browser dashboard are validated and answered alike.
 *
 * Electron is injected (`ipcMain`, the window check), so this runs under test with the
 * hand-written fake in `test/fakes/electron.ts`.
 */
import {
  createUiApi,
  IpcInputError,
  type UiApiKeyAccess,
  type UiSettingsAccess,
} from '../core/control/ui-api.js';
import type { Core } from '../core/core.js';
import type { Logger } from '../core/logger.js';
import { ipcChannels, type IpcChannel } from '../../preload/ipc-contract.js';

export { IpcInputError };

/** A call came from a web page that is not Clawbar's own window. */
export class IpcForbiddenError extends Error {
  constructor(channel: IpcChannel) {
    super(`${channel} refused: the caller is not Clawbar's own window`);
    this.name = 'IpcForbiddenError';
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

export interface IpcDeps<Sender> {
  ipcMain: IpcMainLike<Sender>;
  /** True only for the web contents of Clawbar's own window (`BrowserWindow.fromWebContents`). */
  isOwnWindow(sender: Sender): boolean;
  core: Core;
  /** The settings store (electron-store). @default none: `settings:*` calls are refused */
  settings?: UiSettingsAccess;
  /** The API key in safeStorage. @default none: changing the key is refused */
  apiKey?: UiApiKeyAccess;
  log: Logger;
}

/**
 * Registers one handler per contract channel. Returns a function that removes them again.
 *
 * A refused or invalid call rejects in the renderer with a message saying why; Electron passes
 * only the message across, so the messages are written for a person to read.
 */
export function registerIpc<Sender>(deps: IpcDeps<Sender>): () => void {
  const log = deps.log.child({ mod: 'ipc' });
  // The desktop app runs the agents itself, as `clawbar serve` does.
  const api = createUiApi({
    core: deps.core,
    serving: true,
    log: deps.log,
    ...(deps.settings ? { settings: deps.settings } : {}),
    ...(deps.apiKey ? { apiKey: deps.apiKey } : {}),
  });
  for (const channel of ipcChannels) {
    deps.ipcMain.handle(channel, async (event, ...rawArgs) => {
      if (!deps.isOwnWindow(event.sender)) {
        log.warn({ channel }, 'refused IPC from a sender that is not our window');
        throw new IpcForbiddenError(channel);
      }
      return api.call(channel, rawArgs);
    });
  }
  return () => {
    for (const channel of ipcChannels) deps.ipcMain.removeHandler(channel);
  };
}

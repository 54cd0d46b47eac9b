/**
 * What each channel of the tray window's contract (`preload/ipc-contract.ts`) does, and the one
 * dispatch both transports use: the Electron IPC registrar (`main/app/ipc.ts`) and the headless
 * HTTP bridge (`http-server.ts`). Both parse with the contract's schemas here, so a call is
 * checked the same way whichever way it came.
 *
 * The handlers are a thin mapping onto the control handlers the CLI uses (`handlers.ts`): the
 * window pauses a group, adds a task or reads a chat exactly as `clawbar` does. Only pairing
 * differs: the CLI waits until the phone is linked, the window starts pairing and follows the
 * QR codes through live events.
 *
 * Electron-free: `clawbar serve --http` runs it under plain Node.
 */
import { InvalidPhoneNumberError, normalizePhoneNumber } from '../channels/whatsapp-control.js';
import type { Core } from '../core.js';
import { CoreInputError } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  ipcChannels,
  ipcContract,
  IPC,
  type IpcArgs,
  type IpcChannel,
  type IpcResult,
  type ApiKeyView,
  type PairingStateView,
  type UiSettings,
} from '../../../preload/ipc-contract.js';
import { controlHandlers, type RequestContext } from './handlers.js';

/** A call's argument did not match the channel's schema; the message names the channel. */
export class IpcInputError extends CoreInputError {
  constructor(channel: IpcChannel, detail: string) {
    super(`${channel}: ${detail}`);
    this.name = 'IpcInputError';
  }
}

/** A call named a channel the contract does not have. */
export class UnknownChannelError extends Error {
  constructor(channel: string) {
    super(`unknown channel ${JSON.stringify(channel.slice(0, 64))}`);
    this.name = 'UnknownChannelError';
  }
}

/** Where the window's settings are kept (electron-store in the app); absent in headless serve. */
export interface UiSettingsAccess {
  get(): UiSettings | Promise<UiSettings>;
  /** Changes the keys given, checks them against the store's own schema, returns all settings. */
  set(patch: UiSettings): UiSettings | Promise<UiSettings>;
}

/**
 * Where the API key is kept (safeStorage in the app); absent in headless serve, whose key comes
 * from its environment. A key goes in and never comes back out.
 */
export interface UiApiKeyAccess {
  status(): ApiKeyView | Promise<ApiKeyView>;
  /** Checks, saves and starts using the key; answers the new status. */
  set(key: string): Promise<ApiKeyView>;
  /** Forgets the saved key and stops using it. */
  clear(): Promise<ApiKeyView>;
}

export interface UiApiDeps {
  core: Core;
  /** True when this process runs the agents (serve, or the desktop app). */
  serving: boolean;
  /** @default none: `settings:*` answer that the settings live in the desktop app */
  settings?: UiSettingsAccess;
  /** @default none: the status says where the key comes from, and changing it is refused */
  apiKey?: UiApiKeyAccess;
  log: Logger;
}

export type UiHandlers = { [C in IpcChannel]: (args: IpcArgs<C>) => Promise<IpcResult<C>> };

/** The contract's channels, for transports that take a channel name from outside. */
export function isUiChannel(name: string): name is IpcChannel {
  return (ipcChannels as readonly string[]).includes(name);
}

/**
 * Parses one call's arguments (as received: zero or one) with its channel's schema.
 * @throws IpcInputError with a message written for a person
 */
export function parseUiArgs<C extends IpcChannel>(
  channel: C,
  rawArgs: readonly unknown[],
): IpcArgs<C> {
  if (rawArgs.length > 1)
    throw new IpcInputError(channel, `takes at most one argument, got ${rawArgs.length}`);
  const parsed = ipcContract[channel].args.safeParse(rawArgs[0]);
  if (!parsed.success) throw new IpcInputError(channel, describeIssue(parsed.error.issues));
  return parsed.data as IpcArgs<C>;
}

/** The handlers' request context: the window never waits on a long call, so nothing aborts. */
const WINDOW_REQUEST: RequestContext = {
  signal: new AbortController().signal,
  progress: () => undefined,
};

/** What each channel does, over the control handlers. Results are plain, JSON-safe data. */
export function uiHandlers(deps: UiApiDeps): UiHandlers {
  const { core, serving } = deps;
  const control = controlHandlers({ core, serving });
  const ctx = WINDOW_REQUEST;
  const settings = (): UiSettingsAccess => {
    if (!deps.settings)
      throw new CoreInputError(
        'settings are kept by the desktop app; with `clawbar serve`, set them in the environment or the config file and restart serve',
      );
    return deps.settings;
  };
  const apiKey = (): UiApiKeyAccess => {
    if (!deps.apiKey)
      throw new CoreInputError(
        'the API key of `clawbar serve` comes from ANTHROPIC_API_KEY in its environment; set it there and restart serve',
      );
    return deps.apiKey;
  };
  return {
    [IPC.statusGet]: () => control.status({}, ctx),
    [IPC.groupsList]: () => control['groups.list']({}, ctx),
    [IPC.groupsPause]: ({ group }) => control['groups.pause']({ group }, ctx),
    [IPC.groupsResume]: ({ group }) => control['groups.resume']({ group }, ctx),
    [IPC.groupsPauseAll]: () => setAllPaused(deps, true),
    [IPC.groupsResumeAll]: () => setAllPaused(deps, false),
    [IPC.groupsStop]: ({ group }) => control['groups.stop']({ group }, ctx),
    [IPC.chatsList]: () => control.chats({}, ctx),
    [IPC.chatsEnable]: ({ jid, name, requiresTrigger }) => {
      const chat = core.chats().find((c) => c.jid === jid);
      if (!chat)
        throw new CoreInputError(
          `no chat with jid ${JSON.stringify(jid)} is known; see \`clawbar chats\` for the chats Clawbar has seen`,
        );
      return control['groups.add'](
        {
          name: name ?? chat.name,
          jid,
          ...(requiresTrigger !== undefined ? { requiresTrigger } : {}),
        },
        ctx,
      );
    },
    [IPC.tasksList]: (args) => control['tasks.list'](args ?? {}, ctx),
    [IPC.tasksRuns]: (args) => control['tasks.runs'](args, ctx),
    [IPC.tasksCreate]: (args) => control['tasks.add'](args, ctx),
    [IPC.tasksPause]: ({ id }) => control['tasks.pause']({ id }, ctx),
    [IPC.tasksResume]: ({ id }) => control['tasks.resume']({ id }, ctx),
    [IPC.tasksRunNow]: ({ id }) => control['tasks.run']({ id }, ctx),
    [IPC.tasksDelete]: ({ id }) => control['tasks.remove']({ id }, ctx),
    [IPC.whatsappState]: async () => pairingState(core),
    [IPC.whatsappPair]: (args) => startPairing(core, serving, args?.phone),
    [IPC.whatsappUnlink]: () => control['whatsapp.unlink']({}, ctx),
    [IPC.messagesList]: (args) => control.messages(args, ctx),
    [IPC.messagesSend]: ({ group, text }) => control.send({ group, text, from: 'you' }, ctx),
    [IPC.settingsGet]: async () => settings().get(),
    [IPC.settingsSet]: async (patch) => settings().set(patch),
    [IPC.apiKeyStatus]: async () => (deps.apiKey ? deps.apiKey.status() : environmentKey(core)),
    [IPC.apiKeySet]: ({ key }) => apiKey().set(key),
    [IPC.apiKeyClear]: () => apiKey().clear(),
    [IPC.activityRecent]: async () => core.activity.list(),
  };
}

/** The one entry point of both transports: parse, run, report unexpected failures. */
export interface UiApi {
  /**
   * Calls `channel` with its raw arguments (zero or one).
   * @throws UnknownChannelError, IpcInputError, or the core's own error
   */
  call(channel: string, rawArgs: readonly unknown[]): Promise<unknown>;
}

export function createUiApi(deps: UiApiDeps): UiApi {
  const log = deps.log.child({ mod: 'ui-api' });
  const handlers = uiHandlers(deps);
  return {
    async call(channel, rawArgs) {
      if (!isUiChannel(channel)) throw new UnknownChannelError(channel);
      const args = parseUiArgs(channel, rawArgs);
      // The table is keyed by channel, and the argument was parsed with that channel's schema.
      const handler = handlers[channel] as (args: unknown) => Promise<unknown>;
      try {
        return await handler(args);
      } catch (err) {
        if (!(err instanceof CoreInputError)) log.error({ channel, err }, 'UI call failed');
        throw err;
      }
    },
  };
}

/** Pauses (or resumes) every group not already so; returns the groups it changed. */
async function setAllPaused(
  deps: UiApiDeps,
  paused: boolean,
): Promise<IpcResult<'groups:pause'>[]> {
  const control = controlHandlers({ core: deps.core, serving: deps.serving });
  const changed = [];
  for (const group of deps.core.groups.list()) {
    if (group.paused === paused) continue;
    const method = paused ? 'groups.pause' : 'groups.resume';
    changed.push(await control[method]({ group: group.jid }, WINDOW_REQUEST));
  }
  return changed;
}

/** Headless serve: the key is whatever its environment gave it, and only there can it change. */
function environmentKey(core: Core): ApiKeyView {
  return {
    source: core.keyConfigured() ? 'environment' : 'none',
    editable: false,
    app: 'serve',
    protection: 'unavailable',
  };
}

function pairingState(core: Core): PairingStateView {
  const whatsapp = core.whatsapp;
  if (!whatsapp) return { enabled: false, state: null, lastDisconnect: null };
  return { enabled: true, state: whatsapp.state(), lastDisconnect: whatsapp.lastDisconnect() };
}

/**
 * Starts linking a phone and answers at once with the state; each QR code (or the pairing
 * code) then reaches the window as a `channel:state` event, until the state is `open`.
 */
async function startPairing(
  core: Core,
  serving: boolean,
  phone: string | undefined,
): Promise<PairingStateView> {
  const whatsapp = core.whatsapp;
  if (!serving || !whatsapp)
    throw new CoreInputError(
      'this Clawbar has no WhatsApp channel; enable WhatsApp in the settings and restart it',
    );
  if (whatsapp.state().state === 'open')
    throw new CoreInputError(
      'WhatsApp is already linked to a phone; unlink it first to link another',
    );
  let digits: string | undefined;
  try {
    digits = phone === undefined ? undefined : normalizePhoneNumber(phone);
  } catch (err) {
    if (err instanceof InvalidPhoneNumberError) throw new CoreInputError(err.message);
    throw err;
  }
  await whatsapp.startPairing(digits === undefined ? {} : { phone: digits });
  return pairingState(core);
}

function describeIssue(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  const issue = issues[0];
  if (!issue) return 'invalid argument';
  return issue.path.length > 0
    ? `${issue.path.map(String).join('.')}: ${issue.message}`
    : issue.message;
}

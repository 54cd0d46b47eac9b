/**
 * The runtime half of the IPC contract that both bridges share: the channel names, the live
 * event channel and the function that builds `window.clawbar` from a transport. It imports no
 * zod (the schemas live in `ipc-contract.ts`, which only the main process and the preload
 * bundle), so the browser bridge (`renderer/bridge.ts`) carries a few hundred bytes of it and
 * nothing else.
 */
import type { ClawbarApiShape, UiEvent } from './ipc-contract.js';

/** Every IPC channel name. Use these constants; never spell a channel as a string elsewhere. */
export const IPC = {
  statusGet: 'status:get',
  groupsList: 'groups:list',
  groupsPause: 'groups:pause',
  groupsResume: 'groups:resume',
  groupsPauseAll: 'groups:pauseAll',
  groupsResumeAll: 'groups:resumeAll',
  groupsStop: 'groups:stop',
  chatsList: 'chats:list',
  chatsEnable: 'chats:enable',
  tasksList: 'tasks:list',
  tasksRuns: 'tasks:runs',
  tasksCreate: 'tasks:create',
  tasksPause: 'tasks:pause',
  tasksResume: 'tasks:resume',
  tasksRunNow: 'tasks:runNow',
  tasksDelete: 'tasks:delete',
  whatsappState: 'whatsapp:state',
  whatsappPair: 'whatsapp:pair',
  whatsappUnlink: 'whatsapp:unlink',
  messagesList: 'messages:list',
  messagesSend: 'messages:send',
  settingsGet: 'settings:get',
  settingsSet: 'settings:set',
  apiKeyStatus: 'apiKey:status',
  apiKeySet: 'apiKey:set',
  apiKeyClear: 'apiKey:clear',
  activityRecent: 'activity:recent',
} as const;

export type IpcChannel = (typeof IPC)[keyof typeof IPC];

/** The channels in the contract, in declaration order. */
export const ipcChannels: readonly IpcChannel[] = Object.values(IPC);

/**
 * The one main → renderer channel: each message is one {@link UiEvent}. Electron sends it with
 * `webContents.send`; the headless bridge carries the same objects as Server-Sent Events.
 */
export const UI_EVENT_CHANNEL = 'clawbar:event';

/** Sends one call; the preload passes `ipcRenderer.invoke`, the browser bridge a `fetch`. */
export type IpcInvoke = (channel: IpcChannel, args: unknown) => Promise<unknown>;

/** Subscribes to live events; returns the function that unsubscribes. */
export type UiSubscribe = (listener: (event: UiEvent) => void) => () => void;

/**
 * Builds the renderer-facing API from the channel list: one function per channel, grouped by
 * domain (`groups:pause` becomes `clawbar.groups.pause(args)`), plus `onEvent`. Each function
 * forwards its single argument and nothing else.
 */
export function createClawbarApi(invoke: IpcInvoke, subscribe: UiSubscribe): ClawbarApiShape {
  const api: Record<string, unknown> = {};
  for (const channel of ipcChannels) {
    const [domain, action] = channel.split(':') as [string, string];
    const calls = (api[domain] ??= {}) as Record<string, (args?: unknown) => Promise<unknown>>;
    calls[action] = (args?: unknown) => invoke(channel, args);
  }
  api.onEvent = (listener: (event: UiEvent) => void) => subscribe(listener);
  // The loop above builds exactly the mapped type: one entry per channel, split at ':'.
  return api as unknown as ClawbarApiShape;
}

/**
 * The tray window's preload: exposes `window.clawbar`, built from the IPC contract, through
 * contextBridge. The page never sees `ipcRenderer` itself, only one function per channel and
 * `onEvent`, whose listener gets each live event's payload and not Electron's event object.
 *
 * The window is sandboxed, and a sandboxed preload cannot load ES modules, so this file and
 * the contract are bundled into one CommonJS file at build time (`dist/preload/index.cjs`).
 */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import { createClawbarApi, UI_EVENT_CHANNEL, type UiEvent } from './ipc-contract.js';

const api = createClawbarApi(
  (channel, args) => ipcRenderer.invoke(channel, args),
  (listener) => {
    const forward = (_event: IpcRendererEvent, payload: UiEvent): void => listener(payload);
    ipcRenderer.on(UI_EVENT_CHANNEL, forward);
    return () => {
      ipcRenderer.removeListener(UI_EVENT_CHANNEL, forward);
    };
  },
);

contextBridge.exposeInMainWorld('clawbar', api);

/** The type of `window.clawbar`, for the renderer (`import type` only). */
export type ClawbarApi = typeof api;

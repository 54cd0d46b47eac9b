/**
 * The tray window's preload: exposes `window.clawbar`, built from the IPC contract, through
 * contextBridge. The page never sees `ipcRenderer` itself, only one function per channel.
 *
 * The window is sandboxed, and a sandboxed preload cannot load ES modules, so this file and
 * the contract are bundled into one CommonJS file at build time (`dist/preload/index.cjs`).
 */
import { contextBridge, ipcRenderer } from 'electron';
import { createClawbarApi } from './ipc-contract.js';

const api = createClawbarApi((channel, args) => ipcRenderer.invoke(channel, args));

contextBridge.exposeInMainWorld('clawbar', api);

/** The type of `window.clawbar`, for the renderer (`import type` only). */
export type ClawbarApi = typeof api;

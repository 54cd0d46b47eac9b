/** What every panel of the tray window is given, and what it gives back. */
import type { ClawbarApiShape, UiEvent } from '../../preload/ipc-contract.js';
import type { PanelId, Route } from '../view-model.js';

export interface PanelContext {
  /** `window.clawbar`: the preload's API in Electron, the HTTP bridge's in a browser. */
  api: ClawbarApiShape;
  /** Shows an error in the window's alert line. */
  showError(err: unknown): void;
}

export interface Panel {
  /** The id suffix of its tab and section: `groups` → `#tab-groups`, `#panel-groups`. */
  readonly id: PanelId;
  readonly title: string;
  /** The panel's content, placed in its section once. */
  readonly element: HTMLElement;
  /** Fetches what the panel shows; called on start, on focus and after relevant events. */
  refresh(): Promise<void>;
  /** Each live event; the panel updates or refetches what it concerns. */
  onEvent(event: UiEvent): void;
  /** Shows what a route names inside the panel (Schedules: one task); called once it is shown. */
  show?(route: Route): void;
}

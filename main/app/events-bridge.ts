/**
 * Live events, main → renderer: the core's events the window shows ({@link subscribeUiEvents}),
 * sent to the tray window's web contents on {@link UI_EVENT_CHANNEL}. The page gets them through
 * `window.clawbar.onEvent`, so the QR code, group states and run results update without polling.
 *
 * One forwarder per window: it sends only while that web contents is Clawbar's own window, and
 * removes its listeners from the core's bus when the web contents is destroyed (a closed tray
 * window is created anew next time, so a forwarder that outlived it would leak one set of
 * listeners per opening).
 */
import { subscribeUiEvents } from '../core/control/ui-events.js';
import type { CoreEventBus } from '../core/events.js';
import type { Logger } from '../core/logger.js';
import { UI_EVENT_CHANNEL, type UiEvent } from '../../preload/ipc-contract.js';

/** The part of Electron's `WebContents` the forwarder uses. */
export interface EventTarget {
  send(channel: string, payload: UiEvent): void;
  isDestroyed(): boolean;
  once(event: 'destroyed', listener: () => void): unknown;
}

export interface ForwardEventsDeps<Target extends EventTarget> {
  events: CoreEventBus;
  target: Target;
  /** The IPC gate's check: events go only to Clawbar's own window. */
  isOwnWindow(target: Target): boolean;
  log: Logger;
}

/**
 * Sends each UI event to `target` until it is destroyed or the returned function is called;
 * either removes every listener this added.
 */
export function forwardEvents<Target extends EventTarget>(
  deps: ForwardEventsDeps<Target>,
): () => void {
  const { target } = deps;
  const log = deps.log.child({ mod: 'events-bridge' });
  let stopped = false;
  const unsubscribe = subscribeUiEvents(deps.events, (event) => {
    if (target.isDestroyed()) {
      stop();
      return;
    }
    // A window created by something else (there is none today) never gets the core's events.
    if (!deps.isOwnWindow(target)) return;
    try {
      target.send(UI_EVENT_CHANNEL, event);
    } catch (err) {
      // A window torn down mid-send: its 'destroyed' follows and stops the forwarder.
      log.debug({ err, type: event.type }, 'could not send an event to the window');
    }
  });
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    unsubscribe();
  };
  target.once('destroyed', stop);
  return stop;
}

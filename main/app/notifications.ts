/**
 * Desktop notifications. When a group's runs are given up after every retry (DESIGN.md §5),
 * the chat is told by the core, and the person at the computer is told here.
 * Electron's `Notification` is injected, so this is tested with `test/fakes/electron.ts`.
 */
import type { Core } from '../core/core.js';
import type { Logger } from '../core/logger.js';

/** The part of Electron's `Notification` used here. */
export interface NotificationLike {
  show(): void;
}

export interface NotificationClass {
  new (options: { title: string; body: string }): NotificationLike;
  isSupported(): boolean;
}

export interface NotificationDeps {
  Notification: NotificationClass;
  core: Pick<Core, 'events' | 'groups'>;
  log: Logger;
}

const MAX_BODY = 240;

/** Shows a notification for every given-up run. Returns the function that stops listening. */
export function notifyGiveUps(deps: NotificationDeps): () => void {
  const log = deps.log.child({ mod: 'notifications' });
  return deps.core.events.on('run:gave-up', ({ groupJid, error, attempts }) => {
    if (!deps.Notification.isSupported()) {
      log.info({ groupJid }, 'desktop notifications are not supported here; the chat was told');
      return;
    }
    // The group may have been removed while its runs were retrying; then name its jid.
    const name = deps.core.groups.list().find((group) => group.jid === groupJid)?.name ?? groupJid;
    const body = `The agent failed ${attempts} times: ${error}`;
    new deps.Notification({
      title: `Clawbar: ${name} could not be answered`,
      body: body.length <= MAX_BODY ? body : `${body.slice(0, MAX_BODY - 1)}…`,
    }).show();
  });
}

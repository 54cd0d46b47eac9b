/**
 * The core's events the tray window shows, mapped to the contract's small, plain
 * {@link UiEvent}s. Both transports use it: Electron sends each to the window
 * (`main/app/events-bridge.ts`), the headless bridge writes each as a Server-Sent Event.
 * Only what the window needs crosses: no stored-message internals, no outbox items.
 */
import { LOCAL_JID_PREFIX } from '../channels/local.js';
import type { CoreEventBus } from '../events.js';
import type { UiEvent } from '../../../preload/ipc-contract.js';
import { messageView } from './handlers.js';

/**
 * Calls `listener` with each UI event until the returned function is called, which removes
 * every listener this added to the bus.
 */
export function subscribeUiEvents(
  events: CoreEventBus,
  listener: (event: UiEvent) => void,
): () => void {
  const unsubscribe = [
    events.on('group:changed', (e) => listener({ type: 'group:changed', ...e })),
    events.on('run:started', (e) =>
      listener({ type: 'run:started', groupJid: e.groupJid, runId: e.runId }),
    ),
    events.on('run:finished', (e) => listener({ type: 'run:finished', ...e })),
    events.on('run:gave-up', (e) => listener({ type: 'run:gave-up', ...e })),
    events.on('channel:state', (e) => listener({ type: 'channel:state', ...e })),
    events.on('task:finished', (e) => listener({ type: 'task:finished', ...e })),
    events.on('task:changed', (e) => listener({ type: 'task:changed', ...e })),
    events.on('chat:seen', (e) => listener({ type: 'chat:seen', ...e })),
    events.on('budget:reached', (e) => listener({ type: 'budget:reached', ...e })),
    events.on('setup:changed', (e) => listener({ type: 'setup:changed', ...e })),
    events.on('outbox:settled', ({ item, outcome }) => {
      // A reply is written into the history when it is delivered, which has no event of its own.
      if (!item.chatJid.startsWith(LOCAL_JID_PREFIX)) return;
      listener({ type: 'outbox:settled', chatJid: item.chatJid, outcome });
    }),
    events.on('message:stored', (e) => {
      // WhatsApp chats stay on the phone; the window has a chat panel for local groups only.
      if (e.groupJid === null || !e.groupJid.startsWith(LOCAL_JID_PREFIX)) return;
      listener({ type: 'message:stored', groupJid: e.groupJid, message: messageView(e.message) });
    }),
  ];
  return () => {
    for (const off of unsubscribe) off();
  };
}

/**
 * Chat with a local group: the group's recent messages and a box to send one, as `clawbar
 * send` does. New messages (the user's and the assistant's replies) arrive as
 * `message:stored` events; the list is refetched then, so it never shows one twice.
 */
import type { MessageView } from '../../preload/ipc-contract.js';
import { h } from '../dom.js';
import { coalesce, formatLocalTime } from '../view-model.js';
import type { Panel, PanelContext } from './panel.js';

/** How many messages the panel shows. @default 50 */
export const CHAT_HISTORY_LIMIT = 50;

export function createChatPanel({ api, showError }: PanelContext): Panel {
  const group = h('select', { id: 'chat-group', 'aria-label': 'Local group' });
  const messages = h('ol', { class: 'messages', 'aria-label': 'Messages', 'aria-live': 'polite' });
  const text = h('textarea', { id: 'chat-text', rows: 2, required: true, placeholder: 'Message' });
  const send = h('button', { type: 'submit' }, 'Send');
  const form = h('form', { class: 'row', 'aria-label': 'Send a message' }, text, send);
  const element = h(
    'div',
    {},
    h('div', { class: 'row spread' }, h('h2', {}, 'Chat'), group),
    messages,
    form,
  );

  const loadMessages = coalesce(async () => {
    if (!group.value) {
      messages.replaceChildren(
        h('li', { class: 'empty' }, 'No local group: add one with clawbar groups add --name NAME'),
      );
      form.hidden = true;
      return;
    }
    form.hidden = false;
    const list = await api.messages.list({ group: group.value, limit: CHAT_HISTORY_LIMIT });
    messages.replaceChildren(...list.map(messageItem));
    if (list.length === 0) messages.append(h('li', { class: 'empty' }, 'No messages yet.'));
    messages.lastElementChild?.scrollIntoView({ block: 'end' });
  }, showError);

  function messageItem(message: MessageView): HTMLLIElement {
    return h(
      'li',
      { class: message.fromAssistant ? 'assistant' : 'user' },
      h('span', { class: 'muted' }, `${message.from} · ${formatLocalTime(message.time)}`),
      h('p', {}, message.text),
      message.delivery
        ? h(
            'span',
            { class: 'warn' },
            message.delivery === 'failed' ? `not delivered: ${message.error ?? ''}` : 'sending…',
          )
        : null,
    );
  }

  group.addEventListener('change', () => void loadMessages());
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    send.disabled = true;
    api.messages
      .send({ group: group.value, text: text.value })
      .then(() => {
        text.value = '';
        return loadMessages();
      })
      .catch(showError)
      .finally(() => (send.disabled = false));
  });
  // Enter sends, Shift+Enter makes a new line, as in chat apps.
  text.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  return {
    id: 'chat',
    title: 'Chat',
    element,
    async refresh() {
      const locals = (await api.groups.list()).filter((g) => g.channel === 'local');
      const chosen = group.value;
      group.replaceChildren(...locals.map((g) => h('option', { value: g.jid }, g.name)));
      if (locals.some((g) => g.jid === chosen)) group.value = chosen;
      await loadMessages();
    },
    onEvent(event) {
      // A reply is stored when the outbox delivers it (`outbox:settled`); a run's or a task's
      // end refetches too.
      const forShown =
        ((event.type === 'message:stored' ||
          event.type === 'run:finished' ||
          event.type === 'task:finished') &&
          event.groupJid === group.value) ||
        (event.type === 'outbox:settled' && event.chatJid === group.value);
      if (forShown) void loadMessages();
      if (event.type === 'group:changed') void this.refresh().catch(showError);
    },
  };
}

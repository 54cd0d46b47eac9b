/**
 * Groups: each group's state chip (idle, queued, running, paused, error), a pause/resume
 * toggle, Stop for a busy run, the last activity, and today's tokens and cost against the
 * daily budget. Below, the WhatsApp chats that are not groups yet, each with Enable.
 *
 * The chip comes from the queue's snapshot (`status:get`) and from the run events: a run that
 * gave up marks its group until one succeeds.
 */
import type { ChatView, GroupView, UiEvent } from '../../preload/ipc-contract.js';
import { actionButton, h, replaceItems } from '../dom.js';
import {
  canStop,
  coalesce,
  formatLocalTime,
  groupChip,
  usageLine,
  type QueueView,
} from '../view-model.js';
import type { Panel, PanelContext } from './panel.js';

/** The events after which the groups, their chips or their usage may read differently. */
const GROUP_EVENTS = new Set<UiEvent['type']>([
  'group:changed',
  'run:started',
  'run:finished',
  'run:gave-up',
  'budget:reached',
  'setup:changed',
  'message:stored',
  // A WhatsApp chat seen for the first time (or renamed): it may be enabled as a group.
  'chat:seen',
]);

export function createGroupsPanel({ api, showError }: PanelContext): Panel {
  /** Groups whose last run gave up, until a run of theirs succeeds. */
  const failing = new Set<string>();
  const list = h('ul', { class: 'cards', 'aria-label': 'Groups' });
  const chats = h('ul', { class: 'cards', 'aria-label': 'Chats that are not groups yet' });
  const pauseAll = actionButton('Pause all', () => api.groups.pauseAll(), showError);
  const resumeAll = actionButton('Resume all', () => api.groups.resumeAll(), showError);
  const element = h(
    'div',
    {},
    h(
      'div',
      { class: 'row spread' },
      h('h2', {}, 'Groups'),
      h('span', { class: 'row' }, pauseAll, resumeAll),
    ),
    list,
    h('h3', {}, 'WhatsApp chats'),
    chats,
  );

  const refresh = coalesce(async () => {
    const [groups, status, chatList] = await Promise.all([
      api.groups.list(),
      api.status.get(),
      api.chats.list(),
    ]);
    const lastActivity = new Map(chatList.map((chat) => [chat.jid, chat.lastActivity]));
    const cards: HTMLLIElement[] = groups.map((group) =>
      groupCard(group, status.queue, lastActivity.get(group.jid) ?? null),
    );
    if (groups.length === 0)
      cards.push(
        h(
          'li',
          { class: 'empty' },
          'No groups yet. Enable a chat below, or run: clawbar groups add --name NAME',
        ),
      );
    // Live updates come often here (every run starts and ends): keep the keyboard's place.
    replaceItems(list, cards, 'data-group');
    const candidates = chatList.filter((chat) => !chat.enabled && chat.channel === 'whatsapp');
    chats.replaceChildren(...candidates.map(chatCard));
    if (candidates.length === 0)
      chats.append(h('li', { class: 'empty' }, 'No other WhatsApp chats seen yet.'));
  }, showError);

  function groupCard(
    group: GroupView,
    queue: QueueView,
    lastActivity: string | null,
  ): HTMLLIElement {
    const chip = groupChip(group, queue, failing);
    const toggle = actionButton(
      group.paused ? 'Resume' : 'Pause',
      () =>
        group.paused
          ? api.groups.resume({ group: group.jid })
          : api.groups.pause({ group: group.jid }),
      showError,
      {
        'aria-pressed': group.paused ? 'true' : 'false',
        'data-control': 'toggle',
        'aria-label': `${group.paused ? 'Resume' : 'Pause'} ${group.name}`,
      },
    );
    const stop = canStop(chip)
      ? actionButton('Stop', () => api.groups.stop({ group: group.jid }), showError, {
          class: 'danger',
          'aria-label': `Stop ${group.name}'s run`,
        })
      : null;
    return h(
      'li',
      { class: 'card', 'data-group': group.folder },
      h(
        'div',
        { class: 'row spread' },
        h('strong', {}, group.name),
        h('span', { class: `chip chip-${chip}`, 'data-chip': chip }, chip),
      ),
      h(
        'p',
        { class: 'muted' },
        `${group.channel === 'local' ? 'Local chat' : 'WhatsApp'} · last activity ${formatLocalTime(lastActivity)}`,
      ),
      h('p', { class: 'usage' }, usageLine(group)),
      group.pausedReason ? h('p', { class: 'warn' }, group.pausedReason) : null,
      h('div', { class: 'row' }, toggle, stop),
    );
  }

  function chatCard(chat: ChatView): HTMLLIElement {
    const enable = actionButton(
      'Enable as group',
      () => api.chats.enable({ jid: chat.jid }),
      showError,
      {
        'aria-label': `Enable ${chat.name} as a group`,
      },
    );
    return h(
      'li',
      { class: 'card row spread' },
      h(
        'span',
        {},
        h('strong', {}, chat.name),
        h('span', { class: 'muted' }, ` · ${chat.kind} · ${formatLocalTime(chat.lastActivity)}`),
      ),
      enable,
    );
  }

  return {
    id: 'groups',
    title: 'Groups',
    element,
    refresh,
    onEvent(event) {
      if (event.type === 'run:gave-up') failing.add(event.groupJid);
      if (event.type === 'run:finished' && event.ok) failing.delete(event.groupJid);
      if (GROUP_EVENTS.has(event.type)) void refresh();
    },
  };
}

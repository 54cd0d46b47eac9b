/**
 * Schedules: each task's schedule, its next run in the viewer's local time, its last result,
 * and its actions (pause or resume, run now, delete). A run's result shows as soon as its
 * `task:finished` event arrives. Below, a form creates a task.
 */
import type { GroupView, TaskView, UiEvent } from '../../preload/ipc-contract.js';
import { actionButton, h, itemByKey, replaceItems } from '../dom.js';
import { coalesce, formatLocalTime, lastResult, type ScheduleKind } from '../view-model.js';
import type { Panel, PanelContext } from './panel.js';

type Finished = Extract<UiEvent, { type: 'task:finished' }>;

/** What the schedule field expects, by kind: the same forms as `clawbar tasks add`. */
const SCHEDULE_HINTS: Record<ScheduleKind, string> = {
  cron: '0 8 * * 1-5',
  every: '15m',
  at: '2026-12-24T18:00',
};

export function createSchedulesPanel({ api, showError }: PanelContext): Panel {
  /** The latest finished run of each task heard this session, shown until the list says more. */
  const latest = new Map<string, Finished>();
  /** The task a route asked for (a notification's click): marked until another is asked for. */
  let marked: string | null = null;
  /** Whether the marked task's card still needs focus, once the list has it. */
  let focusMarked = false;
  const list = h('ul', { class: 'cards', 'aria-label': 'Scheduled tasks' });
  const form = createForm();
  const element = h(
    'div',
    {},
    h('h2', {}, 'Schedules'),
    list,
    h('h3', {}, 'New task'),
    form.element,
  );

  const refresh = coalesce(async () => {
    const [listing, groups] = await Promise.all([api.tasks.list(), api.groups.list()]);
    form.setGroups(groups);
    const cards: HTMLLIElement[] = listing.tasks.map(taskCard);
    for (const bad of listing.unreadable) {
      cards.push(
        h(
          'li',
          { class: 'card' },
          h('p', { class: 'warn' }, `Task ${bad.id} cannot be read: ${bad.error}`),
          deleteControl(bad.id),
        ),
      );
    }
    if (cards.length === 0) cards.push(h('li', { class: 'empty' }, 'No scheduled tasks.'));
    replaceItems(list, cards, 'data-task');
    if (focusMarked) showMarked();
  }, showError);

  /** Focuses and scrolls to the marked task's card; says so if that task is gone. */
  function showMarked(): void {
    focusMarked = false;
    const card = marked === null ? undefined : itemByKey(list, 'data-task', marked);
    if (!card) {
      showError(new Error(`Task ${marked} is no longer scheduled.`));
      marked = null;
      return;
    }
    card.tabIndex = -1;
    card.focus();
    card.scrollIntoView({ block: 'nearest' });
  }

  function taskCard(task: TaskView): HTMLLIElement {
    const finished = latest.get(task.id);
    const toggle =
      task.status === 'done'
        ? null
        : actionButton(
            task.status === 'paused' ? 'Resume' : 'Pause',
            () =>
              task.status === 'paused'
                ? api.tasks.resume({ id: task.id })
                : api.tasks.pause({ id: task.id }),
            showError,
            { 'data-control': 'toggle' },
          );
    const runNow = actionButton('Run now', () => api.tasks.runNow({ id: task.id }), showError);
    return h(
      'li',
      { class: 'card', 'data-task': task.id, 'data-focused': task.id === marked },
      h(
        'div',
        { class: 'row spread' },
        h('strong', { class: 'clip' }, task.prompt),
        h(
          'span',
          { class: `chip chip-${task.status === 'active' ? 'idle' : 'paused'}` },
          task.status,
        ),
      ),
      h('p', { class: 'muted' }, `${task.group.name ?? task.group.jid} · ${task.schedule}`),
      h(
        'p',
        {},
        'Next run: ',
        h('time', { datetime: task.nextRun ?? '' }, formatLocalTime(task.nextRun)),
      ),
      h('p', { class: 'muted' }, `Last result: ${lastResult(task)}`),
      finished
        ? h(
            'p',
            {
              class: finished.status === 'success' ? 'result' : 'warn',
              'data-result': finished.status,
              'aria-live': 'polite',
            },
            `Latest run (${finished.status}): ${finished.summary}`,
          )
        : null,
      task.pausedReason ? h('p', { class: 'warn' }, task.pausedReason) : null,
      h('div', { class: 'row' }, toggle, runNow, deleteControl(task.id)),
    );
  }

  /** Delete asks once more: a deleted task and its run log are gone. */
  function deleteControl(id: string): HTMLElement {
    const ask = h('button', { type: 'button', class: 'danger' }, 'Delete…');
    const confirm = actionButton('Yes, delete', () => api.tasks.delete({ id }), showError, {
      class: 'danger',
    });
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const row = h('span', { class: 'row', hidden: true }, confirm, cancel);
    ask.addEventListener('click', () => {
      ask.hidden = true;
      row.hidden = false;
      confirm.focus();
    });
    cancel.addEventListener('click', () => {
      row.hidden = true;
      ask.hidden = false;
      ask.focus();
    });
    return h('span', {}, ask, row);
  }

  function createForm(): { element: HTMLFormElement; setGroups(groups: GroupView[]): void } {
    const group = h('select', { id: 'task-group', required: true });
    const prompt = h('textarea', { id: 'task-prompt', rows: 2, required: true, maxlength: 10_000 });
    const kind = h(
      'select',
      { id: 'task-kind' },
      h('option', { value: 'every' }, 'every'),
      h('option', { value: 'cron' }, 'cron'),
      h('option', { value: 'at' }, 'once at'),
    );
    const when = h('input', { id: 'task-when', required: true, placeholder: SCHEDULE_HINTS.every });
    kind.addEventListener('change', () => {
      when.placeholder = SCHEDULE_HINTS[kind.value as ScheduleKind];
    });
    const element = h(
      'form',
      { class: 'stack', 'aria-label': 'New task' },
      h('label', { for: 'task-group' }, 'Group'),
      group,
      h('label', { for: 'task-prompt' }, 'What to do'),
      prompt,
      h('label', { for: 'task-kind' }, 'Schedule'),
      h('div', { class: 'row' }, kind, when),
      h('button', { type: 'submit' }, 'Create task'),
    );
    element.addEventListener('submit', (event) => {
      event.preventDefault();
      const schedule = kind.value as ScheduleKind;
      api.tasks
        .create({ group: group.value, prompt: prompt.value, [schedule]: when.value })
        .then(() => {
          prompt.value = '';
          when.value = '';
          return refresh();
        })
        .catch(showError);
    });
    return {
      element,
      setGroups(groups) {
        const chosen = group.value;
        group.replaceChildren(...groups.map((g) => h('option', { value: g.jid }, g.name)));
        if (groups.some((g) => g.jid === chosen)) group.value = chosen;
      },
    };
  }

  return {
    id: 'schedules',
    title: 'Schedules',
    element,
    refresh,
    onEvent(event) {
      if (event.type === 'task:finished') latest.set(event.taskId, event);
      if (
        event.type === 'task:finished' ||
        event.type === 'task:changed' ||
        event.type === 'group:changed'
      )
        void refresh();
    },
    show(route) {
      if (!route.taskId) return;
      // After the next fetch: the task may be newer than the list on screen.
      marked = route.taskId;
      focusMarked = true;
      void refresh();
    },
  };
}

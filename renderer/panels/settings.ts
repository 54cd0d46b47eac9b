/**
 * Settings: the Anthropic API key (api-key.ts), then the desktop app's settings
 * (`settings:get`/`settings:set`), which its own store checks. Under `clawbar serve --http` there is no such store: the call answers where the
 * settings live instead, and the panel shows that answer.
 */
import type { UiSettings } from '../../preload/ipc-contract.js';
import { h } from '../dom.js';
import { errorText } from '../view-model.js';
import { createApiKeySection } from './api-key.js';
import type { Panel, PanelContext } from './panel.js';

type Field = {
  key: keyof UiSettings;
  label: string;
  kind: 'text' | 'number' | 'checkbox' | 'runtime';
  /** A number shown in another unit than the store's: seconds for milliseconds. */
  scale?: number;
};

const FIELDS: Field[] = [
  { key: 'assistantName', label: 'Assistant name', kind: 'text' },
  { key: 'trigger', label: 'Trigger word', kind: 'text' },
  { key: 'runtime', label: 'Container runtime', kind: 'runtime' },
  { key: 'maxConcurrency', label: 'Agents at once', kind: 'number' },
  { key: 'idleTimeoutMs', label: 'Idle timeout (seconds)', kind: 'number', scale: 1000 },
  { key: 'taskGraceMs', label: 'Late task grace (seconds)', kind: 'number', scale: 1000 },
  { key: 'launchAtLogin', label: 'Launch at login', kind: 'checkbox' },
  { key: 'notifications', label: 'Notifications', kind: 'checkbox' },
];

export function createSettingsPanel({ api, showError }: PanelContext): Panel {
  const note = h('p', { class: 'muted', role: 'status' });
  const form = h('form', {
    id: 'settings-form',
    class: 'stack',
    'aria-label': 'Settings',
    hidden: true,
  });
  const inputs = new Map<keyof UiSettings, HTMLInputElement | HTMLSelectElement>();
  for (const field of FIELDS) {
    const id = `setting-${field.key}`;
    const input =
      field.kind === 'runtime'
        ? h(
            'select',
            { id },
            h('option', { value: 'docker' }, 'Docker'),
            h('option', { value: 'apple' }, 'Apple container'),
          )
        : h('input', {
            id,
            type: field.kind === 'number' ? 'number' : field.kind,
            min: field.kind === 'number' ? 0 : undefined,
          });
    inputs.set(field.key, input);
    form.append(
      field.kind === 'checkbox'
        ? h('label', { class: 'row' }, input, field.label)
        : h('div', { class: 'stack' }, h('label', { for: id }, field.label), input),
    );
  }
  form.append(h('button', { type: 'submit' }, 'Save'));
  const apiKey = createApiKeySection({ api, showError });
  const element = h(
    'div',
    {},
    h('h2', {}, 'Settings'),
    apiKey.element,
    h('h3', {}, 'App'),
    note,
    form,
  );

  /**
   * Each field as last shown, so Save sends only what the user changed: a setting never chosen
   * (a blank trigger, the runtime's first option) is not sent back as if it had been.
   */
  let shownValues = new Map<keyof UiSettings, string>();
  function formValue(field: Field): string {
    const input = inputs.get(field.key);
    if (input instanceof HTMLInputElement && field.kind === 'checkbox')
      return String(input.checked);
    return input?.value ?? '';
  }

  function show(settings: UiSettings): void {
    for (const field of FIELDS) {
      const input = inputs.get(field.key);
      const value = settings[field.key];
      if (!input || value === undefined) continue;
      if (input instanceof HTMLInputElement && field.kind === 'checkbox')
        input.checked = value === true;
      else
        input.value = String(
          typeof value === 'number' && field.scale ? value / field.scale : value,
        );
    }
    shownValues = new Map(FIELDS.map((field) => [field.key, formValue(field)]));
  }

  function patch(): UiSettings {
    const out: Record<string, unknown> = {};
    for (const field of FIELDS) {
      const input = inputs.get(field.key);
      if (!input || formValue(field) === shownValues.get(field.key)) continue;
      if (input instanceof HTMLInputElement && field.kind === 'checkbox')
        out[field.key] = input.checked;
      else if (field.kind === 'number')
        out[field.key] = Math.round(Number(input.value) * (field.scale ?? 1));
      else out[field.key] = input.value;
    }
    return out as UiSettings;
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    // A failed save must not leave an earlier "Saved." standing beside its error.
    note.textContent = 'Saving…';
    api.settings
      .set(patch())
      .then((saved) => {
        show(saved);
        note.textContent = 'Saved.';
      })
      .catch((err: unknown) => {
        note.textContent = 'Not saved: see the error above.';
        showError(err);
      });
  });

  return {
    id: 'settings',
    title: 'Settings',
    element,
    async refresh() {
      await apiKey.refresh();
      try {
        show(await api.settings.get());
        form.hidden = false;
        note.textContent = '';
      } catch (err) {
        // Headless serve has no settings store: its answer says where the settings live.
        form.hidden = true;
        note.textContent = errorText(err);
      }
    },
    onEvent(event) {
      // A key saved or removed elsewhere (another window) changes what agents can do.
      if (event.type === 'setup:changed') apiKey.refresh().catch(showError);
    },
  };
}

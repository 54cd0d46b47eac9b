/**
 * The Settings panel's API key section: where the key comes from, a field to paste a new one,
 * and a way to remove it. The key goes one way: `apiKey:set` takes it, no call ever returns it,
 * and the field is emptied once it is saved. Under `clawbar serve --http` the key comes from
 * serve's environment, and the section only says so.
 */
import type { ApiKeyView } from '../../preload/ipc-contract.js';
import { actionButton, h } from '../dom.js';
import { apiKeyText } from '../view-model.js';
import type { PanelContext } from './panel.js';

export interface ApiKeySection {
  readonly element: HTMLElement;
  refresh(): Promise<void>;
}

export function createApiKeySection({ api, showError }: PanelContext): ApiKeySection {
  const statusLine = h('p', { id: 'api-key-status', 'aria-live': 'polite' }, 'Checking…');
  const input = h('input', {
    id: 'api-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'sk-ant-…',
    required: true,
  });
  const form = h(
    'form',
    { class: 'stack', 'aria-label': 'Anthropic API key', hidden: true },
    h('label', { for: 'api-key' }, 'New key'),
    input,
    h('button', { type: 'submit' }, 'Save key'),
  );
  const remove = actionButton('Remove key', () => api.apiKey.clear().then(show), showError, {
    class: 'danger',
  });
  remove.hidden = true;
  const element = h(
    'div',
    { class: 'stack' },
    h('h3', {}, 'Anthropic API key'),
    statusLine,
    form,
    remove,
  );

  function show(view: ApiKeyView): void {
    statusLine.textContent = apiKeyText(view);
    statusLine.dataset.source = view.source;
    const fine =
      view.source === 'environment' || (view.source === 'saved' && view.protection !== 'weak');
    statusLine.className = fine ? '' : 'warn';
    form.hidden = !view.editable;
    remove.hidden = !(
      view.app === 'desktop' &&
      (view.source === 'saved' || view.source === 'unreadable')
    );
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    api.apiKey
      .set({ key: input.value })
      .then((view) => {
        // Saved: the key leaves the page. On an error it stays, so a typo can be fixed.
        input.value = '';
        show(view);
      })
      .catch(showError);
  });

  return {
    element,
    async refresh() {
      show(await api.apiKey.status());
    },
  };
}

/**
 * Small DOM helpers for the tray window. Text from the core (group names, messages, errors) is
 * only ever set with `textContent`: nothing the core or a chat sends is parsed as HTML.
 */

/** Attributes for {@link h}: strings set as attributes, `false`/`undefined` left out. */
export type Attributes = Record<string, string | number | boolean | undefined>;

/** A child for {@link h}: an element, or text (set as a text node, never parsed). */
export type Child = Node | string | null | undefined | false;

/** Makes an element with attributes and children: `h('button', { type: 'button' }, 'Pause')`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

/** Appends children, turning strings into text nodes. */
export function append(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/** A button that runs `action` on click; disabled while it runs, errors go to `onError`. */
export function actionButton(
  label: string,
  action: () => Promise<unknown>,
  onError: (err: unknown) => void,
  attributes: Attributes = {},
): HTMLButtonElement {
  const button = h('button', { type: 'button', ...attributes }, label);
  button.addEventListener('click', () => {
    button.disabled = true;
    action().then(
      () => {
        button.disabled = false;
      },
      (err: unknown) => {
        button.disabled = false;
        onError(err);
      },
    );
  });
  return button;
}

/** The element with this id, or a clear error naming it (the page and the script disagree). */
export function byId<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

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

/**
 * Replaces a list's items and keeps the keyboard's place: when focus was inside an item (one
 * with `keyAttribute`, e.g. `data-task`), it goes to the same item's new version, on the same
 * control (the same `data-control`, which a toggle keeps when its label flips, else the same
 * label) if it still has one, else on the item itself. Without this, each live
 * update would drop a keyboard user's focus back to the top of the page.
 */
export function replaceItems(
  list: HTMLElement,
  items: readonly Child[],
  keyAttribute: string,
): void {
  const active = document.activeElement;
  const item =
    active instanceof HTMLElement && list.contains(active)
      ? active.closest<HTMLElement>(`[${keyAttribute}]`)
      : null;
  const key = item?.getAttribute(keyAttribute) ?? null;
  const control = active !== item ? active?.getAttribute('data-control') : null;
  const label = active !== item ? active?.textContent : null;
  list.replaceChildren();
  append(list, items);
  if (key === null) return;
  const again = itemByKey(list, keyAttribute, key);
  if (!again) return;
  const same = Array.from(
    again.querySelectorAll<HTMLElement>('button, input, select, textarea'),
  ).find(
    (el) =>
      el.offsetParent !== null &&
      (control ? el.getAttribute('data-control') === control : el.textContent === label),
  );
  if (same) same.focus();
  else {
    again.tabIndex = -1;
    again.focus();
  }
}

/** The list's item whose `keyAttribute` is `key`, compared as text (never put in a selector). */
export function itemByKey(
  list: HTMLElement,
  keyAttribute: string,
  key: string,
): HTMLElement | undefined {
  return Array.from(list.querySelectorAll<HTMLElement>(`[${keyAttribute}]`)).find(
    (el) => el.getAttribute(keyAttribute) === key,
  );
}

/**
 * A button that runs `action` on click, once at a time: while it runs the button says it is busy
 * (`aria-disabled`, `aria-busy`) and ignores clicks; errors go to `onError`. It is not made
 * `disabled`, because a disabled button loses focus, and a keyboard user's place with it.
 */
export function actionButton(
  label: string,
  action: () => Promise<unknown>,
  onError: (err: unknown) => void,
  attributes: Attributes = {},
): HTMLButtonElement {
  const button = h('button', { type: 'button', ...attributes }, label);
  let busy = false;
  const setBusy = (value: boolean): void => {
    busy = value;
    button.setAttribute('aria-disabled', String(value));
    button.setAttribute('aria-busy', String(value));
  };
  button.addEventListener('click', () => {
    if (busy) return;
    setBusy(true);
    action().then(
      () => setBusy(false),
      (err: unknown) => {
        setBusy(false);
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

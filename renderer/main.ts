/**
 * The tray window: the status line and the groups, each with Pause or Resume. It talks to the
 * core only through `window.clawbar` (the preload's API, or later the headless dashboard's
 * bridge) and never uses Node. Text from the core is set with `textContent`, never as HTML.
 */
import type { ClawbarApi } from '../preload/index.js';
import { installHttpBridge } from './bridge.js';

declare global {
  interface Window {
    readonly clawbar: ClawbarApi;
  }
}

// In a browser under `clawbar serve --http` there is no preload: the same API over HTTP.
installHttpBridge();

type GroupView = Awaited<ReturnType<ClawbarApi['groups']['list']>>[number];
type CoreStatus = Awaited<ReturnType<ClawbarApi['status']['get']>>;

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

const statusLine = element<HTMLParagraphElement>('status');
const groupList = element<HTMLUListElement>('groups');
const errorLine = element<HTMLParagraphElement>('error');

function describeStatus(status: CoreStatus): string {
  if (!status.runtime.ok)
    return `Container runtime unavailable: ${status.runtime.reason}. ${status.runtime.fix}`;
  if (status.image.present === false)
    return `Agent image ${status.image.image} is missing: run clawbar image build.`;
  if (!status.keyConfigured) return 'No Anthropic API key: set ANTHROPIC_API_KEY.';
  const running = status.queue.running.filter((run) => !run.idle).length;
  return `Ready. ${running} running, ${status.queue.waiting.length} waiting.`;
}

function groupRow(group: GroupView): HTMLLIElement {
  const row = document.createElement('li');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = group.name;
  const state = document.createElement('span');
  state.className = 'state';
  state.textContent = group.paused ? 'paused' : group.channel;
  const button = document.createElement('button');
  button.type = 'button';
  button.textContent = group.paused ? 'Resume' : 'Pause';
  button.addEventListener('click', () => {
    button.disabled = true;
    const change = group.paused
      ? window.clawbar.groups.resume({ group: group.jid })
      : window.clawbar.groups.pause({ group: group.jid });
    void change.then(refresh, showError);
  });
  row.append(name, state, button);
  return row;
}

function showError(err: unknown): void {
  // Electron prefixes the main process's message with "Error invoking remote method '…': ".
  errorLine.textContent = (err instanceof Error ? err.message : String(err)).replace(
    /^Error invoking remote method '[^']*': (Error: )?/,
    '',
  );
  errorLine.hidden = false;
}

async function refresh(): Promise<void> {
  errorLine.hidden = true;
  const groups = await window.clawbar.groups.list();
  groupList.replaceChildren(...groups.map(groupRow));
  if (groups.length === 0) {
    const empty = document.createElement('li');
    empty.textContent = 'No groups yet. Add one with: clawbar groups add --name NAME';
    groupList.append(empty);
  }
  statusLine.textContent = describeStatus(await window.clawbar.status.get());
}

window.addEventListener('focus', () => void refresh().catch(showError));
void refresh().catch(showError);

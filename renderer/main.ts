/**
 * The tray window: a status line, then six panels behind tabs (Connection, Groups, Schedules,
 * Activity, Chat, Settings). It talks to the core only through `window.clawbar` (the preload's
 * API in Electron, the HTTP bridge's in a browser) and never uses Node. Live events update the
 * panels; nothing polls. Text from the core is set with `textContent`, never as HTML.
 */
import type { ClawbarApiShape, UiEvent } from '../preload/ipc-contract.js';
import { installHttpBridge } from './bridge.js';
import { byId, h } from './dom.js';
import { createActivityPanel } from './panels/activity.js';
import { createChatPanel } from './panels/chat.js';
import { createConnectionPanel } from './panels/connection.js';
import { createGroupsPanel } from './panels/groups.js';
import type { Panel, PanelContext } from './panels/panel.js';
import { createSchedulesPanel } from './panels/schedules.js';
import { createSettingsPanel } from './panels/settings.js';
import {
  coalesce,
  errorText,
  parseRoute,
  statusText,
  type PanelId,
  type Route,
} from './view-model.js';

declare global {
  interface Window {
    readonly clawbar: ClawbarApiShape;
  }
}

// In a browser under `clawbar serve --http` there is no preload: the same API over HTTP.
installHttpBridge();

const statusLine = byId<HTMLParagraphElement>('status');
const errorLine = byId<HTMLParagraphElement>('error');
const tabList = byId<HTMLElement>('tabs');
const panelHost = byId<HTMLElement>('panels');

function showError(err: unknown): void {
  errorLine.textContent = errorText(err);
  errorLine.hidden = false;
}

function start(): void {
  if (!('clawbar' in window)) {
    statusLine.textContent =
      'No connection to Clawbar: open the URL that `clawbar serve --http` printed (it carries the token).';
    return;
  }
  const api = window.clawbar;
  const context: PanelContext = { api, showError };
  const panels: Panel[] = [
    createConnectionPanel(context),
    createGroupsPanel(context),
    createSchedulesPanel(context),
    createActivityPanel(context),
    createChatPanel(context),
    createSettingsPanel(context),
  ];
  const tabs = mountTabs(panels);

  const refreshStatus = coalesce(async () => {
    statusLine.textContent = statusText(await api.status.get());
  }, showError);
  const refreshAll = (): void => {
    errorLine.hidden = true;
    void refreshStatus();
    for (const panel of panels) panel.refresh().catch(showError);
  };

  /** Shows the panel a route names, and what it names inside it (a task). */
  const navigate = (route: Route): void => {
    tabs.select(route.panel, false);
    panels.find((panel) => panel.id === route.panel)?.show?.(route);
  };

  // An error concerns the last thing the user did: the next thing they do clears it.
  const clearError = (event: Event): void => {
    if (event.type === 'submit' || (event.target as Element | null)?.closest('button'))
      errorLine.hidden = true;
  };
  panelHost.addEventListener('click', clearError, { capture: true });
  panelHost.addEventListener('submit', clearError, { capture: true });

  api.onEvent((event: UiEvent) => {
    if (event.type === 'window:navigate') {
      const route = parseRoute(event.route);
      if (route) navigate(route);
      return;
    }
    if (event.type === 'events:resumed') {
      // Whatever happened while the stream was down is fetched again.
      refreshAll();
      return;
    }
    for (const panel of panels) panel.onEvent(event);
    if (event.type === 'setup:changed' || event.type.startsWith('run:')) void refreshStatus();
  });
  window.addEventListener('focus', refreshAll);
  refreshAll();
  // Where to start: the desktop shell's route in the hash (`#tasks/<id>`, from a notification),
  // or `?panel=groups` (a bookmark); else the first panel. In a browser the bridge has already
  // taken the token out of the hash.
  navigate(
    parseRoute(window.location.hash) ??
      parseRoute(new URLSearchParams(window.location.search).get('panel')) ?? {
        panel: panels[0]!.id,
      },
  );
}

/**
 * Tabs as the WAI-ARIA tabs pattern has them: one tab in the tab order, arrow keys move
 * between tabs (Home and End to the ends), the chosen tab shows its panel.
 */
function mountTabs(panels: Panel[]): { select(id: PanelId, focus: boolean): void } {
  const tabs = panels.map((panel) =>
    h(
      'button',
      {
        type: 'button',
        role: 'tab',
        id: `tab-${panel.id}`,
        'aria-controls': `panel-${panel.id}`,
        'aria-selected': 'false',
        tabindex: -1,
      },
      panel.title,
    ),
  );
  const sections = panels.map((panel) =>
    h(
      'section',
      {
        role: 'tabpanel',
        id: `panel-${panel.id}`,
        'aria-labelledby': `tab-${panel.id}`,
        tabindex: 0,
        hidden: true,
      },
      panel.element,
    ),
  );
  tabList.replaceChildren(...tabs);
  panelHost.replaceChildren(...sections);

  const select = (id: PanelId, focus: boolean): void => {
    panels.forEach((panel, index) => {
      const chosen = panel.id === id;
      tabs[index]!.setAttribute('aria-selected', String(chosen));
      tabs[index]!.tabIndex = chosen ? 0 : -1;
      sections[index]!.hidden = !chosen;
      if (chosen && focus) tabs[index]!.focus();
    });
  };
  tabs.forEach((tab, index) => {
    tab.addEventListener('click', () => select(panels[index]!.id, false));
    tab.addEventListener('keydown', (event) => {
      const last = panels.length - 1;
      const next =
        event.key === 'ArrowRight'
          ? index === last
            ? 0
            : index + 1
          : event.key === 'ArrowLeft'
            ? index === 0
              ? last
              : index - 1
            : event.key === 'Home'
              ? 0
              : event.key === 'End'
                ? last
                : null;
      if (next === null) return;
      event.preventDefault();
      select(panels[next]!.id, true);
    });
  });
  return { select };
}

start();

/**
 * The tray window's page in Chromium, for the end-to-end tests: the bridge that serves it over
 * a core in this process, what counts as the page breaking, and waits that explain themselves
 * when they time out.
 */
import path from 'node:path';
import type { ConsoleMessage, Page } from 'playwright-core';
import { expect } from 'vitest';
import {
  loadDashboardToken,
  parseHttpAddress,
  startHttpBridge,
  type HttpBridge,
} from '../../main/core/control/http-server.js';
import { createUiApi, type UiApi, type UiApiDeps } from '../../main/core/control/ui-api.js';
import { silentLogger } from '../../main/core/logger.js';
import type { PanelId } from '../../renderer/view-model.js';
import { ROOT } from './clawbar.js';
import type { ProcessCore } from './unit-core.js';

/** A wait for the page on a loaded 2-core machine (a browser, a core, child runners). */
export const PAGE_DEADLINE_MS = 60_000;

/**
 * Collects what would mean the page is broken: script errors, console errors, and API answers
 * that are errors (but for `ignorePaths`, answers that are errors on every load by design). A
 * test that provokes an error answer on purpose takes it out with {@link takeExpected}, so each
 * one is accounted for.
 */
export function watchPage(page: Page, ignorePaths: readonly string[] = []): string[] {
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (message: ConsoleMessage) => {
    // The failed answers themselves are recorded below, with their URL and status.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource'))
      problems.push(`console error: ${message.text()}`);
  });
  page.on('response', (response) => {
    const { pathname } = new URL(response.url());
    if (response.status() >= 400 && !ignorePaths.includes(pathname))
      problems.push(`HTTP ${response.status()} for ${pathname}`);
  });
  return problems;
}

/** Removes `expected` problems (each exactly once) from the list, failing if one is missing. */
export function takeExpected(problems: string[], expected: string[]): void {
  for (const problem of expected) {
    const at = problems.indexOf(problem);
    expect(at, `expected "${problem}" among ${JSON.stringify(problems)}`).toBeGreaterThanOrEqual(0);
    problems.splice(at, 1);
  }
}

/** What the page says, for a failure message that explains itself. */
export async function pageText(page: Page): Promise<string> {
  return page
    .locator('body')
    .innerText()
    .catch(() => '(no page)');
}

/** Waits for `selector` to show; on timeout the error carries the page's text. */
export async function shown(
  page: Page,
  selector: string,
  timeout = PAGE_DEADLINE_MS,
): Promise<void> {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible', timeout });
  } catch (err) {
    throw new Error(
      `${selector} did not show within ${timeout} ms; the page says:\n${await pageText(page)}`,
      { cause: err },
    );
  }
}

export async function openPanel(page: Page, id: PanelId): Promise<void> {
  await page.click(`#tab-${id}`);
  await page.locator(`#panel-${id}`).waitFor({ state: 'visible' });
}

/** The error line's text once it shows (it is `role=alert`, hidden until an error). */
export async function errorLine(page: Page): Promise<string> {
  await shown(page, '#error');
  return (await page.textContent('#error')) ?? '';
}

/** The HTTP bridge `clawbar serve --http` runs, here over a core in this process. */
export interface PageBridge {
  bridge: HttpBridge;
  /** The dispatch behind it, to read the core as the window's API sees it. */
  api: UiApi;
  /** The page's address with its token, as serve prints it. */
  pageUrl: string;
}

/**
 * Starts the bridge over `made`'s core on a free loopback port, serving the built renderer;
 * `extra` gives it what the desktop app has and serve has not (settings, the key's store).
 * The caller closes `bridge`.
 */
export async function startPageBridge(
  made: ProcessCore,
  extra: Pick<UiApiDeps, 'settings' | 'apiKey'> = {},
): Promise<PageBridge> {
  const token = loadDashboardToken(made.config.home);
  const api = createUiApi({ core: made.core, serving: true, ...extra, log: silentLogger() });
  const bridge = await startHttpBridge({
    address: parseHttpAddress('127.0.0.1:0'),
    token,
    api,
    events: made.core.events,
    rendererDir: path.join(ROOT, 'dist', 'renderer'),
    log: silentLogger(),
  });
  return { bridge, api, pageUrl: `${bridge.url}#token=${token}` };
}

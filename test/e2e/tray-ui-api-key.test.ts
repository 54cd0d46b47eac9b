/**
 * The API key from the tray window's Settings panel, in real Chromium against a real core in
 * this process behind the HTTP bridge, as a user of the desktop app meets it on first run:
 *
 * - The core starts with no key. The page says so (status line and Settings), and a message
 *   sent meanwhile is held, not failed.
 * - A malformed key is refused on the page and stored nowhere.
 * - A good key is encrypted into the store (the same `createApiKeyVault` and `apiKeyAccess`
 *   the app uses, over the hand-written `safeStorage` of test/fakes/electron.ts), goes into use
 *   with no restart, and the held message is answered through the real SDK with that key.
 * - Removing it puts the core back to "no key", with the app's fix.
 *
 * The runner is a child process (no Docker); the model is the fake Messages API, which only
 * answers the right key.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  API_KEY_ENTRY,
  apiKeyAccess,
  createApiKeyVault,
  type SecretBox,
} from '../../main/app/secrets.js';
import type { HttpBridge } from '../../main/core/control/http-server.js';
import { silentLogger } from '../../main/core/logger.js';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
import { resetElectronFake, safeStorage } from '../fakes/electron.js';
import { launchChromium, requireChromium, screenshotPath } from '../helpers/chromium.js';
import { requireBuild } from '../helpers/clawbar.js';
import {
  errorLine,
  openPanel,
  PAGE_DEADLINE_MS,
  takeExpected,
  watchPage,
  startPageBridge,
} from '../helpers/tray-page.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-api03-tray-ui-api-key-test';
const KEY_FIX = 'add your Anthropic API key in Clawbar’s Settings (open the tray window)';
const REPLY = 'Thanks for the key: hello!';

requireChromium('the API key in the Settings panel', () => {
  let anthropic: FakeAnthropic;
  let made: ProcessCore;
  let bridge: HttpBridge;
  let browser: Browser;
  let page: Page;
  let problems: string[];
  /** The electron-store stand-in: only the ciphertext lands here. */
  const box = new Map<string, unknown>();

  beforeAll(async () => {
    requireBuild();
    resetElectronFake();
    anthropic = await startFakeAnthropic({ apiKey: API_KEY, fallback: textTurn(REPLY) });
    made = processCore({
      prefix: 'clawbar-tray-key-',
      // No key: as a fresh install of the app starts.
      api: { url: anthropic.url, apiKey: '' },
      deps: { keyFix: KEY_FIX },
    });
    await made.core.start();
    made.core.addGroup({ name: 'Family' });
    const vault = createApiKeyVault({
      safeStorage,
      box: box as unknown as SecretBox,
      log: silentLogger(),
      platform: 'darwin',
      warn: () => undefined,
    });
    let pageUrl: string;
    ({ bridge, pageUrl } = await startPageBridge(made, {
      apiKey: apiKeyAccess({
        vault,
        safeStorage,
        environmentKey: undefined,
        core: made.core,
        platform: 'darwin',
      }),
    }));
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 420, height: 720 } });
    // No settings store here (only the key is under test): settings:get answers 400 by design.
    problems = watchPage(page, ['/api/settings:get']);
    await page.goto(pageUrl);
  }, 120_000);

  afterAll(async () => {
    await page?.close();
    await browser?.close();
    await bridge?.close();
    await made?.close();
    await anthropic?.close();
  });

  it('holds work without a key, refuses a bad one, and answers once a good one is saved', async () => {
    // No key: the status line says what to do, and Settings offers the field.
    await expect
      .poll(() => page.textContent('#status'), { timeout: PAGE_DEADLINE_MS })
      .toContain(`no Anthropic API key is set: ${KEY_FIX}`);
    await openPanel(page, 'settings');
    await expect
      .poll(() => page.getAttribute('#api-key-status', 'data-source'), {
        timeout: PAGE_DEADLINE_MS,
      })
      .toBe('none');
    expect(await page.isVisible('#api-key')).toBe(true);
    expect(await page.getAttribute('#api-key', 'type')).toBe('password');

    // A message sent now is kept, not failed: the chat is told why.
    await openPanel(page, 'chat');
    await page.locator('#chat-group option', { hasText: 'Family' }).waitFor({ state: 'attached' });
    await page.fill('#chat-text', '@Andy are you there?');
    await page.click('#panel-chat form button[type=submit]');
    await expect
      .poll(() => page.textContent('#panel-chat .messages'), { timeout: PAGE_DEADLINE_MS })
      .toContain('I cannot answer yet: no Anthropic API key is set');
    expect(anthropic.requests).toHaveLength(0);

    // A malformed key: refused with the reason, nothing stored, and the field keeps it.
    await openPanel(page, 'settings');
    await page.fill('#api-key', 'my-password');
    await page.getByRole('button', { name: 'Save key' }).click();
    await expect
      .poll(() => errorLine(page), { timeout: PAGE_DEADLINE_MS })
      .toContain('does not look like an Anthropic API key');
    takeExpected(problems, ['HTTP 400 for /api/apiKey:set']);
    expect(box.size).toBe(0);
    expect(await page.inputValue('#api-key')).toBe('my-password');
    await page.screenshot({ path: screenshotPath('settings-api-key-refused'), fullPage: true });

    // The real key: encrypted into the store, in use at once, and the field emptied.
    await page.fill('#api-key', API_KEY);
    await page.getByRole('button', { name: 'Save key' }).click();
    await expect
      .poll(() => page.getAttribute('#api-key-status', 'data-source'), {
        timeout: PAGE_DEADLINE_MS,
      })
      .toBe('saved');
    expect(await page.inputValue('#api-key')).toBe('');
    expect(await page.isHidden('#error')).toBe(true);
    const stored = box.get(API_KEY_ENTRY);
    expect(stored).toEqual(expect.any(String));
    expect(Buffer.from(String(stored), 'base64').toString()).not.toContain(API_KEY);
    await page.screenshot({ path: screenshotPath('settings-api-key-saved'), fullPage: true });

    // The held message is answered with no restart, through the SDK, with the saved key. The
    // agent's container stays warm, so the reply shows by its delivery (`outbox:settled`), not
    // by the end of the run.
    await openPanel(page, 'chat');
    await expect
      .poll(() => page.textContent('#panel-chat .messages'), { timeout: PAGE_DEADLINE_MS })
      .toContain(REPLY);
    expect(anthropic.requests.map((request) => request.apiKey)).toEqual([API_KEY]);
    await expect
      .poll(() => page.textContent('#status'), { timeout: PAGE_DEADLINE_MS })
      .toMatch(/^Ready\./);

    // No answer of any call carried the key back to the page.
    const answers = await page.evaluate(async () => {
      const status = await window.clawbar.apiKey.status();
      return JSON.stringify([status, await window.clawbar.status.get()]);
    });
    expect(answers).not.toContain(API_KEY);
    expect(problems).toEqual([]);
  }, 180_000);

  it('removes the key: agents wait again, with the fix that names Settings', async () => {
    await openPanel(page, 'settings');
    await page.getByRole('button', { name: 'Remove key' }).click();
    await expect
      .poll(() => page.getAttribute('#api-key-status', 'data-source'), {
        timeout: PAGE_DEADLINE_MS,
      })
      .toBe('none');
    expect(box.has(API_KEY_ENTRY)).toBe(false);
    expect(made.core.setupProblems()).toEqual([
      { kind: 'no-key', message: 'no Anthropic API key is set', fix: KEY_FIX },
    ]);
    await expect
      .poll(() => page.textContent('#status'), { timeout: PAGE_DEADLINE_MS })
      .toContain('no Anthropic API key is set');
    expect(await page.isHidden('text=Remove key')).toBe(true);
    expect(problems).toEqual([]);
  }, 60_000);
});

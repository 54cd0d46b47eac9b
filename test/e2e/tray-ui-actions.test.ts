/**
 * The tray window's actions in real Chromium (playwright-core driving Debian's `chromium`),
 * against a real core in this process behind the same HTTP bridge `clawbar serve --http` uses:
 * the runner as a child process (no Docker), the model broker calling the fake Messages API,
 * and the WhatsApp channel (real Baileys) talking to the fake WhatsApp server. The fake makes
 * Baileys trust its own root key, process-wide, which is why the core runs in this process.
 *
 * Each action is checked twice: on what the page shows, and on the core's or the store's own
 * state. In order (one core, one page, each test starting where the last one left off):
 *
 * 1. Settings: a change is saved into the settings store (a plain object here, behind the same
 *    `settingsAccess` the desktop app puts over electron-store); invalid values show the
 *    schema's error and store nothing.
 * 2. Schedules: a task made in the form is paused, resumed and deleted from its card.
 * 3. Stop: a run kept busy by a slow model answer is stopped from the Groups panel.
 * 4. Pairing by QR, then a new WhatsApp group chat is enabled as a group from the Groups panel.
 * 5. Unlink, after confirming: the panel needs pairing again and the credentials are gone.
 * 6. Pairing by phone number: a bad number is refused on the page, a good one reaches the fake
 *    server (normalized) through Baileys' `requestPairingCode`, and the code shows.
 *
 * Every wait is on something the page shows, with a generous deadline (2 shared cores).
 * Screenshots go to `test-results/tray-ui/actions-*.png`.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { settingsAccess, type StoredSettings } from '../../main/app/settings.js';
import { SqliteAuthState } from '../../main/core/channels/whatsapp/auth-state.js';
import { whatsappChannelFor } from '../../main/core/channels/whatsapp/boot.js';
import type { HttpBridge } from '../../main/core/control/http-server.js';
import type { UiApi } from '../../main/core/control/ui-api.js';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
import { startFakeWhatsApp, type FakeWhatsApp } from '../fakes/whatsapp/server.js';
import { launchChromium, requireChromium, screenshotPath } from '../helpers/chromium.js';
import { requireBuild } from '../helpers/clawbar.js';
import {
  errorLine,
  openPanel,
  PAGE_DEADLINE_MS,
  shown,
  takeExpected,
  watchPage,
  startPageBridge,
} from '../helpers/tray-page.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-tray-ui-actions';
/** Longer than any test here: a model answer this slow keeps its run busy until stopped. */
const BUSY_FOR_MS = 10 * 60_000;

/** The Connection panel's state, as its headline's `data-state` says. */
function connectionState(page: Page): Promise<string | null> {
  return page.getAttribute('#panel-connection .headline', 'data-state');
}

requireChromium('the tray window’s actions against an in-process core', () => {
  let anthropic: FakeAnthropic;
  let whatsapp: FakeWhatsApp;
  let made: ProcessCore;
  let bridge: HttpBridge;
  /** The dispatch behind the bridge, for reading the core as the window's API sees it. */
  let uiApi: UiApi;
  let browser: Browser;
  let page: Page;
  let problems: string[];
  /** The settings store: what `settingsAccess` wrote, and how many times. */
  const settingsFile: { value: StoredSettings | undefined; writes: number } = {
    value: undefined,
    writes: 0,
  };
  let familyJid: string;

  beforeAll(async () => {
    requireBuild();
    anthropic = await startFakeAnthropic({ apiKey: API_KEY, fallback: textTurn('ok') });
    whatsapp = await startFakeWhatsApp();
    made = processCore({
      prefix: 'clawbar-tray-actions-',
      api: { url: anthropic.url, apiKey: API_KEY },
      config: { waUrl: whatsapp.url },
      channel: ({ store, config, log }) => whatsappChannelFor({ store, config, log }),
    });
    await made.core.start();
    familyJid = made.core.addGroup({ name: 'Family' }).jid;
    const settings = settingsAccess({
      get: () => settingsFile.value,
      set: (value) => {
        settingsFile.value = value;
        settingsFile.writes += 1;
      },
    });
    let pageUrl: string;
    ({ bridge, api: uiApi, pageUrl } = await startPageBridge(made, { settings }));
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 420, height: 720 } });
    problems = watchPage(page);
    await page.goto(pageUrl);
    // Rendered: the first answers are in.
    await page.locator('[data-group="family"]').waitFor({ state: 'attached', timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    await page?.close();
    await browser?.close();
    await bridge?.close();
    await made?.close();
    await whatsapp?.close();
    await anthropic?.close();
  });

  it('saves a valid settings change into the store, and shows the schema’s error for an invalid one', async () => {
    await openPanel(page, 'settings');
    await shown(page, '#setting-maxConcurrency');
    // Nothing stored yet: the form shows the defaults.
    expect(await page.inputValue('#setting-maxConcurrency')).toBe('3');
    expect(await page.inputValue('#setting-assistantName')).toBe('Andy');

    await page.fill('#setting-maxConcurrency', '5');
    await page.fill('#setting-assistantName', 'Ada');
    await page.click('#settings-form button[type=submit]');
    const note = page.locator('#panel-settings [role=status]');
    await expect.poll(() => note.textContent(), { timeout: PAGE_DEADLINE_MS }).toBe('Saved.');
    // Only what the user changed is stored: no blank trigger, no runtime they never chose.
    expect(settingsFile.value).toEqual({ maxConcurrency: 5, assistantName: 'Ada' });
    expect(settingsFile.writes).toBe(1);
    expect(await page.inputValue('#setting-maxConcurrency')).toBe('5');
    await page.screenshot({ path: screenshotPath('actions-settings-saved'), fullPage: true });

    // Out of bounds either way: the contract's schema refuses it before the store sees it.
    for (const bad of ['0', '1000']) {
      await page.fill('#setting-maxConcurrency', bad);
      await page.click('#settings-form button[type=submit]');
      await expect
        .poll(() => errorLine(page), { timeout: PAGE_DEADLINE_MS })
        .toMatch(
          bad === '0' ? /maxConcurrency must be at least 1/ : /maxConcurrency must be at most 64/,
        );
      // The earlier "Saved." does not stand beside the error.
      await expect.poll(() => note.textContent()).toMatch(/^Not saved/);
    }
    await page.screenshot({ path: screenshotPath('actions-settings-invalid'), fullPage: true });
    // A name the contract lets through but the store's own schema refuses: its rule is shown.
    await page.fill('#setting-maxConcurrency', '5');
    await page.fill('#setting-assistantName', 'Ada!');
    await page.click('#settings-form button[type=submit]');
    await expect
      .poll(() => errorLine(page), { timeout: PAGE_DEADLINE_MS })
      .toMatch(/assistantName: 1-32 letters, digits, spaces/);
    expect(settingsFile.value).toEqual({ maxConcurrency: 5, assistantName: 'Ada' });
    expect(settingsFile.writes).toBe(1);
    // Each refusal is a bad request (400), not a server failure.
    takeExpected(problems, [
      'HTTP 400 for /api/settings:set',
      'HTTP 400 for /api/settings:set',
      'HTTP 400 for /api/settings:set',
    ]);
    expect(problems).toEqual([]);
  }, 120_000);

  it('pauses, resumes and deletes a task from its card in the Schedules panel', async () => {
    await openPanel(page, 'schedules');
    await page.locator('#task-group option', { hasText: 'Family' }).waitFor({ state: 'attached' });
    await page.fill('#task-prompt', 'Water the plants');
    await page.selectOption('#task-kind', 'every');
    await page.fill('#task-when', '2h');
    await page.click('#panel-schedules form button[type=submit]');
    const card = page.locator('#panel-schedules [data-task]');
    await card.waitFor({ timeout: PAGE_DEADLINE_MS });
    const id = (await card.getAttribute('data-task'))!;
    const chip = card.locator('.chip');
    expect(await chip.textContent()).toBe('active');
    expect(made.core.tasks.get(id)).toMatchObject({ status: 'active', groupJid: familyJid });

    // Each change reaches the card as a `task:changed` event, with no refetch asked for.
    await card.getByRole('button', { name: 'Pause', exact: true }).click();
    await expect.poll(() => made.core.tasks.get(id).status).toBe('paused');
    await expect.poll(() => chip.textContent(), { timeout: PAGE_DEADLINE_MS }).toBe('paused');
    await card.getByRole('button', { name: 'Resume', exact: true }).waitFor();
    expect(made.core.tasks.get(id).status).toBe('paused');
    await page.screenshot({ path: screenshotPath('actions-task-paused'), fullPage: true });

    await card.getByRole('button', { name: 'Resume', exact: true }).click();
    await expect.poll(() => made.core.tasks.get(id).status).toBe('active');
    await expect.poll(() => chip.textContent(), { timeout: PAGE_DEADLINE_MS }).toBe('active');
    expect(made.core.tasks.get(id).status).toBe('active');

    // Delete asks once more; Cancel keeps the task.
    await card.getByRole('button', { name: 'Delete…' }).click();
    await card.getByRole('button', { name: 'Cancel' }).click();
    expect(made.core.tasks.list().tasks.map((t) => t.id)).toEqual([id]);
    await card.getByRole('button', { name: 'Delete…' }).click();
    await card.getByRole('button', { name: 'Yes, delete' }).click();
    await expect.poll(() => made.core.tasks.list().tasks).toEqual([]);
    await expect
      .poll(() => page.textContent('#panel-schedules ul'), { timeout: PAGE_DEADLINE_MS })
      .toContain('No scheduled tasks.');
    expect(await page.locator(`#panel-schedules [data-task="${id}"]`).count()).toBe(0);
    expect(made.core.tasks.list().tasks).toEqual([]);
    expect(problems).toEqual([]);
  }, 120_000);

  it('stops a busy run from the Groups panel', async () => {
    anthropic.script([textTurn('far too late', { delayMs: BUSY_FOR_MS })]);
    await openPanel(page, 'chat');
    await page.locator('#chat-group option', { hasText: 'Family' }).waitFor({ state: 'attached' });
    await page.fill('#chat-text', '@Andy think about this for a long time');
    await page.click('#panel-chat form button[type=submit]');
    // The model has the request: the run is busy, and stays so until stopped.
    await anthropic.waitForRequests(1);

    await openPanel(page, 'groups');
    const chip = page.locator('[data-group="family"] [data-chip]');
    await expect
      .poll(() => chip.getAttribute('data-chip'), { timeout: PAGE_DEADLINE_MS })
      .toBe('running');
    const stop = page.getByRole('button', { name: "Stop Family's run" });
    await stop.waitFor();
    expect(made.core.queue.snapshot().running).toEqual([
      expect.objectContaining({ groupJid: familyJid, idle: false }),
    ]);
    await page.screenshot({ path: screenshotPath('actions-run-busy'), fullPage: true });

    await stop.click();
    await expect
      .poll(() => chip.getAttribute('data-chip'), { timeout: PAGE_DEADLINE_MS })
      .not.toBe('running');
    await stop.waitFor({ state: 'detached' });
    expect(made.core.queue.snapshot().running.filter((r) => r.groupJid === familyJid)).toEqual([]);
    expect(made.core.queue.snapshot().retrying).not.toContain(familyJid);
    // The slow answer never arrived: nothing was said in the group.
    expect(made.core.undelivered(familyJid)).toEqual([]);
    await page.screenshot({ path: screenshotPath('actions-run-stopped'), fullPage: true });
    expect(problems).toEqual([]);
  }, 120_000);

  it('pairs by QR, then enables a new WhatsApp group chat as a group', async () => {
    // A group the account is in before it links: the core learns its subject at login, from
    // the list of the account's groups, as with a real phone.
    const alice = await whatsapp.addContact({ phone: '15550002222', pushName: 'Alice' });
    const groupJid = whatsapp.createGroup({
      subject: 'Book Club',
      participants: [alice],
      id: `120363${String(Date.now()).slice(-12)}`,
    });
    await openPanel(page, 'connection');
    await expect
      .poll(() => connectionState(page), { timeout: PAGE_DEADLINE_MS })
      .toBe('needs-pairing');
    await page.getByRole('button', { name: 'Pair with a QR code' }).click();
    await shown(page, '#panel-connection canvas.qr');
    const state = made.core.whatsapp!.state();
    if (state.state !== 'qr') throw new Error(`expected a QR state, got ${JSON.stringify(state)}`);
    await whatsapp.scanQr(state.qr);
    await expect.poll(() => connectionState(page), { timeout: PAGE_DEADLINE_MS }).toBe('open');

    // Someone writes in that group: the core stores the chat, but it is not a group of ours.
    await whatsapp.deliverText({ from: alice, group: groupJid, text: 'Who has the next book?' });
    await expect
      .poll(() => made.core.chats().find((chat) => chat.jid === groupJid)?.name, {
        timeout: PAGE_DEADLINE_MS,
      })
      .toBe('Book Club');

    // The new chat reaches the open window as a `chat:seen` event.
    await openPanel(page, 'groups');
    const enable = page.getByRole('button', { name: 'Enable Book Club as a group' });
    await enable.waitFor({ timeout: PAGE_DEADLINE_MS });
    // Its last activity is the message's time, not an unknown shown as 1970.
    expect(made.core.chats().find((chat) => chat.jid === groupJid)?.lastActivity).toEqual(
      expect.any(Number),
    );
    expect(await page.locator('#panel-groups li', { has: enable }).textContent()).not.toContain(
      '1970',
    );
    expect(made.core.groups.list().map((g) => g.jid)).not.toContain(groupJid);
    await page.screenshot({ path: screenshotPath('actions-chat-to-enable'), fullPage: true });

    await enable.click();
    const card = page.locator('#panel-groups [data-group]', { hasText: 'Book Club' });
    await card.waitFor({ timeout: PAGE_DEADLINE_MS });
    expect(await card.textContent()).toContain('WhatsApp');
    await enable.waitFor({ state: 'detached' });
    expect(made.core.groups.list()).toContainEqual(
      expect.objectContaining({ jid: groupJid, name: 'Book Club', folder: 'book-club' }),
    );
    // What `clawbar chats` lists: the chat is now enabled.
    const chats = (await uiApi.call('chats:list', [])) as Array<{ jid: string; enabled: boolean }>;
    expect(chats.find((chat) => chat.jid === groupJid)).toMatchObject({ enabled: true });
    await page.screenshot({ path: screenshotPath('actions-group-enabled'), fullPage: true });
    expect(whatsapp.protocolErrors()).toEqual([]);
    expect(problems).toEqual([]);
  }, 120_000);

  it('unlinks WhatsApp after confirming, and the credentials are gone', async () => {
    await openPanel(page, 'connection');
    expect(await connectionState(page)).toBe('open');
    expect(new SqliteAuthState(made.store.db).isRegistered()).toBe(true);

    // Unlink asks once more; Cancel leaves the link alone.
    await page.getByRole('button', { name: 'Unlink…' }).click();
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect(made.core.whatsapp!.state().state).toBe('open');
    await page.getByRole('button', { name: 'Unlink…' }).click();
    await page.screenshot({ path: screenshotPath('actions-unlink-confirm'), fullPage: true });
    await page.getByRole('button', { name: 'Yes, unlink this Clawbar' }).click();

    await expect
      .poll(() => connectionState(page), { timeout: PAGE_DEADLINE_MS })
      .toBe('needs-pairing');
    expect(made.core.whatsapp!.state().state).toBe('needs-pairing');
    const auth = new SqliteAuthState(made.store.db);
    expect(auth.hasCreds()).toBe(false);
    expect(Object.values(auth.keyCounts()).reduce((a, b) => a + b, 0)).toBe(0);
    // The panel offers both ways to pair again.
    expect(await page.isVisible('#pair-phone')).toBe(true);
    expect(await page.isVisible('text=Pair with a QR code')).toBe(true);
    await page.screenshot({ path: screenshotPath('actions-unlinked'), fullPage: true });
    expect(problems).toEqual([]);
  }, 120_000);

  it('refuses a bad phone number on the page, and shows the pairing code for a good one', async () => {
    await openPanel(page, 'connection');
    await page.fill('#pair-phone', '12');
    await page.getByRole('button', { name: 'Get pairing code' }).click();
    await expect
      .poll(() => errorLine(page), { timeout: PAGE_DEADLINE_MS })
      .toMatch(/a phone number has 8 to 15 digits with the country code.*"12" has 2/);
    takeExpected(problems, ['HTTP 400 for /api/whatsapp:pair']);
    expect(await connectionState(page)).toBe('needs-pairing');
    expect(whatsapp.pairingCodeRequests()).toEqual([]);
    await page.screenshot({ path: screenshotPath('actions-pair-bad-phone'), fullPage: true });

    await page.fill('#pair-phone', '+1 (555) 123-4567');
    await page.getByRole('button', { name: 'Get pairing code' }).click();
    await expect
      .poll(() => connectionState(page), { timeout: PAGE_DEADLINE_MS })
      .toBe('pairing-code');
    const state = made.core.whatsapp!.state();
    if (state.state !== 'pairing-code')
      throw new Error(`expected a pairing code, got ${JSON.stringify(state)}`);
    expect(state.code).toMatch(/^[0-9A-Z]{8}$/);
    expect(await page.textContent('#panel-connection .headline')).toContain(state.code);
    // The earlier error went with the next try.
    expect(await page.isHidden('#error')).toBe(true);
    // The number the user typed reached WhatsApp, as digits only, from the real Baileys.
    expect(whatsapp.pairingCodeRequests()).toEqual([
      { jid: '15551234567@s.whatsapp.net', phone: '15551234567', stage: 'companion_hello' },
    ]);
    await page.screenshot({ path: screenshotPath('actions-pairing-code'), fullPage: true });
    expect(whatsapp.protocolErrors()).toEqual([]);
    expect(problems).toEqual([]);
  }, 120_000);
});

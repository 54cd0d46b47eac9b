/**
 * The tray window in real Chromium (playwright-core driving Debian's `chromium`), against the
 * same UI a user gets from `clawbar serve --http`:
 *
 * - A real `clawbar serve --http 127.0.0.1:0` (the built CLI, the fake Messages API, the agent
 *   in real Docker): every panel renders and is screenshotted under `test-results/tray-ui/`; a
 *   task made in the Schedules form and run with "Run now" shows its result when its
 *   `task:finished` event arrives; a group paused in the window is paused for the CLI too.
 * - The pairing QR: the fake WhatsApp server's QR must reach the Connection panel as a drawn
 *   code. The fake makes Baileys trust its own root key, process-wide, so that core runs in this
 *   process (see whatsapp-channel.test.ts) behind the same HTTP bridge serve uses.
 *
 * Every wait is on something the page shows, with a generous deadline (2 shared cores).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { whatsappChannelFor } from '../../main/core/channels/whatsapp/boot.js';
import type { HttpBridge } from '../../main/core/control/http-server.js';
import { startFakeAnthropic, textTurn, type FakeAnthropic } from '../fakes/anthropic-api.js';
import { startFakeWhatsApp, type FakeWhatsApp } from '../fakes/whatsapp/server.js';
import { launchChromium, requireChromium, screenshotPath } from '../helpers/chromium.js';
import {
  cli,
  CLI,
  ensureAgentImage,
  requireBuild,
  ROOT,
  tempHome,
  TEST_AGENT_IMAGE,
} from '../helpers/clawbar.js';
import { requireDocker } from '../helpers/docker.js';
import { openPanel, shown, startPageBridge, watchPage } from '../helpers/tray-page.js';
import { processCore, type ProcessCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-tray-ui';
const REPLY = 'Briefing: the weather is fine and nothing is due today.';
/** A run in a cold container on a loaded 2-core machine. */
const RUN_DEADLINE_MS = 120_000;
const PANELS = ['connection', 'groups', 'schedules', 'activity', 'chat', 'settings'] as const;
/** Headless serve keeps no settings: this call answers where they live (400), by design. */
const SETTINGS_GET = '/api/settings:get';

requireDocker('the tray window against clawbar serve --http', () => {
  requireChromium('in Chromium', () => {
    let fake: FakeAnthropic;
    let home: string;
    let env: NodeJS.ProcessEnv;
    let serve: ChildProcess;
    let output = '';
    let dashboard: string;
    let browser: Browser;
    let page: Page;
    let problems: string[];

    beforeAll(async () => {
      requireBuild();
      await ensureAgentImage();
      fake = await startFakeAnthropic({ apiKey: API_KEY, fallback: textTurn(REPLY) });
      home = tempHome('clawbar-tray-ui-');
      env = {
        CLAWBAR_HOME: home,
        ANTHROPIC_API_KEY: API_KEY,
        ANTHROPIC_BASE_URL: fake.url,
        CLAWBAR_IMAGE: TEST_AGENT_IMAGE,
        CLAWBAR_IDLE_TIMEOUT_MS: '60000',
        // Nothing listens there: WhatsApp stays disconnected, and nothing reaches the real one.
        CLAWBAR_WA_URL: 'ws://127.0.0.1:9/ws',
      };
      expect((await cli(['groups', 'add', '--name', 'Family'], env)).code).toBe(0);
      serve = spawn(process.execPath, [CLI, 'serve', '--http', '127.0.0.1:0'], {
        env: { ...process.env, CLAWBAR_LOG_FORMAT: 'json', ...env },
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      serve.stdout?.on('data', (d: Buffer) => (output += d.toString()));
      serve.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      const deadline = Date.now() + 30_000;
      let url: string | undefined;
      while (!(url = /^dashboard: (\S+)$/m.exec(output)?.[1])) {
        if (serve.exitCode !== null) throw new Error(`serve exited early:\n${output}`);
        if (Date.now() > deadline) throw new Error(`serve printed no dashboard URL:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      dashboard = url;
      browser = await launchChromium();
      page = await browser.newPage({ viewport: { width: 420, height: 640 } });
      problems = watchPage(page, [SETTINGS_GET]);
      await page.goto(dashboard);
    }, 240_000);

    afterAll(async () => {
      await browser?.close();
      if (serve && serve.exitCode === null) {
        const exited = new Promise((resolve) => serve.once('exit', resolve));
        serve.kill('SIGTERM');
        await exited;
      }
      await fake?.close();
      if (home) fs.rmSync(home, { recursive: true, force: true });
    });

    it('renders every panel, by mouse and by keyboard, and screenshots each', async () => {
      // The token left the address bar for this tab's storage.
      expect(page.url()).not.toContain('token=');
      // Rendered (on the Groups tab, not shown yet): the first answers are in.
      await page.locator('[data-group="family"]').waitFor({ state: 'attached', timeout: 60_000 });
      for (const id of PANELS) {
        await openPanel(page, id);
        await page.screenshot({ path: screenshotPath(id), fullPage: true });
      }
      // Arrow keys move between tabs (the WAI-ARIA tabs pattern): from Settings, Home → first.
      await page.focus('#tab-settings');
      await page.keyboard.press('Home');
      await expect
        .poll(() => page.evaluate(() => document.activeElement?.id))
        .toBe('tab-connection');
      await page.keyboard.press('ArrowRight');
      expect(await page.isVisible('#panel-groups')).toBe(true);
      expect(await page.getAttribute('#tab-groups', 'aria-selected')).toBe('true');

      // Headless serve keeps no settings: the panel says where they live.
      await openPanel(page, 'settings');
      await expect
        .poll(() => page.textContent('#panel-settings'))
        .toContain('settings are kept by the desktop app');
      // The key comes from serve's environment: the panel says so, and offers no field for it.
      expect(await page.getAttribute('#api-key-status', 'data-source')).toBe('environment');
      expect(await page.textContent('#api-key-status')).toBe(
        'From ANTHROPIC_API_KEY in the environment; change it there and restart `clawbar serve`.',
      );
      expect(await page.isHidden('#api-key')).toBe(true);
      // Never paired: WhatsApp needs pairing, and the panel offers both ways to pair.
      await openPanel(page, 'connection');
      await expect
        .poll(() => page.getAttribute('#panel-connection .headline', 'data-state'))
        .toBe('needs-pairing');
      expect(await page.isVisible('text=Pair with a QR code')).toBe(true);
      expect(await page.isVisible('#pair-phone')).toBe(true);

      await page.emulateMedia({ colorScheme: 'dark' });
      await openPanel(page, 'groups');
      await page.screenshot({ path: screenshotPath('groups-dark'), fullPage: true });
      await page.emulateMedia({ colorScheme: 'light' });
      expect(problems).toEqual([]);
    }, 120_000);

    it(
      'creates a task in the form, runs it now, and shows its result when it finishes',
      async () => {
        await openPanel(page, 'schedules');
        await page
          .locator('#task-group option', { hasText: 'Family' })
          .waitFor({ state: 'attached' });
        await page.fill('#task-prompt', 'Give me the morning briefing');
        await page.selectOption('#task-kind', 'every');
        await page.fill('#task-when', '1h');
        await page.click('#panel-schedules form button[type=submit]');
        const card = page.locator('#panel-schedules [data-task]');
        await card.waitFor();
        const id = await card.getAttribute('data-task');
        expect(id).toMatch(/^t_[a-z0-9]+$/);
        expect(await card.textContent()).toContain('Last result: not run yet');

        await card.getByRole('button', { name: 'Run now' }).click();
        const result = card.locator('[data-result]');
        await result.waitFor({ timeout: RUN_DEADLINE_MS });
        expect(await result.getAttribute('data-result'), output.slice(-3000)).toBe('success');
        expect(await result.textContent()).toContain(REPLY);
        // The list was drawn again with the result, and the keyboard's place survived it: focus
        // is on the new card's "Run now", where the click left it.
        expect(
          await page.evaluate(() => {
            const active = document.activeElement;
            return [active?.textContent, active?.closest('[data-task]')?.getAttribute('data-task')];
          }),
        ).toEqual(['Run now', id]);
        await page.screenshot({ path: screenshotPath('schedules-after-run'), fullPage: true });

        // The run is in the activity list, and its reply in the group's chat.
        await openPanel(page, 'activity');
        await expect
          .poll(() => page.textContent('#panel-activity'), { timeout: 30_000 })
          .toContain(`task ${id} success`);
        await openPanel(page, 'chat');
        await expect
          .poll(() => page.textContent('#panel-chat .messages'), { timeout: 30_000 })
          .toContain(REPLY);
        await page.screenshot({ path: screenshotPath('chat-after-run'), fullPage: true });

        const runs = await cli(['tasks', 'runs', id!, '--json'], env);
        expect(JSON.parse(runs.stdout)).toMatchObject({
          runs: [expect.objectContaining({ status: 'success', summary: REPLY })],
        });

        // A route to the task (what a notification's click asks for) opens Schedules on its
        // card, marked and focused; a route to a task that is gone says so.
        const routed = await browser.newPage({ viewport: { width: 420, height: 640 } });
        const routedProblems = watchPage(routed, [SETTINGS_GET]);
        await routed.goto(dashboard.replace('/#token=', `/?panel=tasks/${id}#token=`));
        const focused = routed.locator(`#panel-schedules [data-task="${id}"][data-focused]`);
        await focused.waitFor({ timeout: 30_000 });
        expect(await routed.isVisible('#panel-schedules')).toBe(true);
        expect(await routed.evaluate(() => document.activeElement?.getAttribute('data-task'))).toBe(
          id,
        );
        await routed.screenshot({ path: screenshotPath('schedules-routed'), fullPage: true });
        // This page opened after the run, and its Activity lists it: the core kept it.
        await openPanel(routed, 'activity');
        await expect
          .poll(() => routed.textContent('#panel-activity'), { timeout: 30_000 })
          .toContain(`task ${id} success`);
        await routed.goto(dashboard.replace('/#token=', '/?panel=tasks/t_gone#token='));
        await expect
          .poll(() => routed.textContent('#error'), { timeout: 30_000 })
          .toContain('Task t_gone is no longer scheduled.');
        await routed.close();
        expect(routedProblems).toEqual([]);
        expect(problems).toEqual([]);
      },
      RUN_DEADLINE_MS + 60_000,
    );

    it('pauses a group from its card, and `clawbar groups list --json` agrees', async () => {
      await openPanel(page, 'groups');
      await page.getByRole('button', { name: 'Pause Family' }).click();
      const chip = page.locator('[data-group="family"] [data-chip]');
      await expect.poll(() => chip.getAttribute('data-chip'), { timeout: 30_000 }).toBe('paused');
      await page.getByRole('button', { name: 'Resume Family' }).waitFor();
      // The card was drawn again, and focus is on its toggle still, now saying Resume.
      await expect
        .poll(() => page.evaluate(() => document.activeElement?.getAttribute('aria-label')))
        .toBe('Resume Family');

      const listed = await cli(['groups', 'list', '--json'], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual([
        expect.objectContaining({ name: 'Family', paused: true }),
      ]);
      await page.screenshot({ path: screenshotPath('groups-paused'), fullPage: true });

      // A change from the CLI reaches the open window as an event, with no reload.
      expect((await cli(['groups', 'resume', 'Family'], env)).code).toBe(0);
      await expect
        .poll(() => chip.getAttribute('data-chip'), { timeout: 30_000 })
        .not.toBe('paused');
      expect(problems).toEqual([]);
    }, 60_000);
  });
});

requireChromium('the Connection panel with the fake WhatsApp server', () => {
  let whatsapp: FakeWhatsApp;
  let made: ProcessCore;
  let bridge: HttpBridge;
  let pageUrl: string;
  let browser: Browser;

  beforeAll(async () => {
    requireBuild();
    whatsapp = await startFakeWhatsApp();
    made = processCore({
      prefix: 'clawbar-tray-qr-',
      config: { waUrl: whatsapp.url },
      channel: ({ store, config, log }) => whatsappChannelFor({ store, config, log }),
    });
    await made.core.start();
    ({ bridge, pageUrl } = await startPageBridge(made));
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await bridge?.close();
    await made?.close();
    await whatsapp?.close();
  });

  it('draws the pairing QR as it arrives, and shows the link once the phone scans it', async () => {
    const page = await browser.newPage({ viewport: { width: 420, height: 640 } });
    const problems = watchPage(page, [SETTINGS_GET]);
    await page.goto(pageUrl);
    // Unpaired: the panel says so, and pairing starts from its button.
    await expect
      .poll(() => page.getAttribute('#panel-connection .headline', 'data-state'), {
        timeout: 30_000,
      })
      .toBe('needs-pairing');
    await page.getByRole('button', { name: 'Pair with a QR code' }).click();
    const qr = page.locator('#panel-connection canvas.qr');
    await shown(page, '#panel-connection canvas.qr', 30_000);
    expect(await page.getAttribute('#panel-connection .headline', 'data-state')).toBe('qr');
    // A drawn code: a square canvas with both dark modules and light ones.
    const pixels = await qr.evaluate((canvas: HTMLCanvasElement) => {
      const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let dark = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i]! < 128) dark += 1;
      return { width: canvas.width, height: canvas.height, dark, all: data.length / 4 };
    });
    expect(pixels.width).toBe(pixels.height);
    expect(pixels.dark).toBeGreaterThan(pixels.all * 0.2);
    expect(pixels.dark).toBeLessThan(pixels.all * 0.8);
    await page.screenshot({ path: screenshotPath('connection-qr'), fullPage: true });

    // The phone scans the code the core holds: the panel follows the events to "open".
    const state = made.core.whatsapp!.state();
    if (state.state !== 'qr') throw new Error(`expected a QR state, got ${JSON.stringify(state)}`);
    await whatsapp.scanQr(state.qr);
    await expect
      .poll(() => page.getAttribute('#panel-connection .headline', 'data-state'), {
        timeout: 30_000,
      })
      .toBe('open');
    expect(await qr.isHidden()).toBe(true);
    await page.screenshot({ path: screenshotPath('connection-open'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  }, 90_000);
});

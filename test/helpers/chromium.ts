/**
 * Real Chromium for the tray window's end-to-end tests, driven by playwright-core (which ships
 * no browser of its own: it drives Debian's `chromium` package).
 *
 * Like the Docker suites (docker.ts): without Chromium a suite skips with the reason and the
 * fix in its name, and the run ends with a loud warning; under CI it fails instead.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { describe, it } from 'vitest';
import { ROOT } from './clawbar.js';
import { recordSkip } from './skips.js';

/** @default /usr/bin/chromium (Debian's package); override with CLAWBAR_CHROMIUM */
export const CHROMIUM_PATH = process.env.CLAWBAR_CHROMIUM ?? '/usr/bin/chromium';

const CHROMIUM_FIX =
  "install Debian's Chromium (apt-get install -y chromium; .ci/run does), or point CLAWBAR_CHROMIUM at a Chromium binary";

/** Where the screenshots go: a CI artifact, ignored by git. */
export const SCREENSHOT_DIR = path.join(ROOT, 'test-results', 'tray-ui');

function chromiumProblem(): string | null {
  try {
    fs.accessSync(CHROMIUM_PATH, fs.constants.X_OK);
    return null;
  } catch {
    return `no Chromium at ${CHROMIUM_PATH}`;
  }
}

/** `describe` for suites that need Chromium: skips without it, fails without it under CI. */
export function requireChromium(name: string, body: () => void): void {
  const problem = chromiumProblem();
  if (problem === null) {
    describe(name, body);
  } else if (process.env.CI) {
    describe(name, () => {
      it('needs Chromium (CI is set, so this fails instead of skipping)', () => {
        throw new Error(`${problem}: ${CHROMIUM_FIX}`);
      });
    });
  } else {
    recordSkip('chromium', name, `${problem}; ${CHROMIUM_FIX}`);
    describe.skip(`${name} [skipped: ${problem}; ${CHROMIUM_FIX}]`, body);
  }
}

/** Starts headless Chromium; as root it needs --no-sandbox (Chromium refuses to start else). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
}

/** The screenshot's path for `name`, with its folder made. */
export function screenshotPath(name: string): string {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return path.join(SCREENSHOT_DIR, `${name}.png`);
}

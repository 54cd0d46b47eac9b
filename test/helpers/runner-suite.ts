/**
 * The vitest hooks every test file needs that runs the real runner bundle as a child process
 * (ProcessRuntime) against the fake Messages API: the build is checked and the fake started
 * before the first test, each test's clean-ups run after it (newest first, so a core shuts down
 * before the store it uses is closed), the fake forgets its script and requests between tests,
 * and it is closed after the last.
 *
 * Call it at the top level of a file, or inside a `describe` to scope it to that block.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../fakes/anthropic-api.js';
import { requireBuild } from './clawbar.js';

export type Cleanup = () => Promise<void> | void;

export interface RunnerSuite {
  /** The fake Messages API, accepting only the suite's key. Usable once the tests run. */
  readonly fake: FakeAnthropic;
  /** Registers a clean-up to run after the current test. */
  defer(cleanup: Cleanup): void;
}

export function runnerSuite(apiKey: string): RunnerSuite {
  let fake: FakeAnthropic | undefined;
  const cleanups: Cleanup[] = [];
  beforeAll(async () => {
    requireBuild();
    fake = await startFakeAnthropic({ apiKey });
  });
  afterAll(() => fake?.close());
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()?.();
    fake?.reset();
  });
  return {
    get fake() {
      if (!fake) {
        throw new Error(
          'the fake Messages API is not started yet: use `suite.fake` inside a test or hook, not while the file is collected',
        );
      }
      return fake;
    },
    defer(cleanup) {
      cleanups.push(cleanup);
    },
  };
}

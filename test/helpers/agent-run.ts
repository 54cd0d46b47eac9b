/**
 * What AgentRun tests share, whatever the container and broker under test: a temp Clawbar home
 * with a real SQLite store and the Family group, a way to post to it, and AgentRuns on that
 * group built with the host's settings. Each test file brings its own runtime, broker and
 * delivery (see {@link RunParts}).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  AgentRun,
  type AgentRunConfig,
  type AgentRunDeps,
} from '../../main/core/agent/agent-run.js';
import { messageTurns, type TurnSource } from '../../main/core/agent/turns.js';
import { loadConfig, type ClawbarConfig } from '../../main/core/config.js';
import { silentLogger, type Logger } from '../../main/core/logger.js';
import { openStore, type Group, type Store } from '../../main/core/store/index.js';
import { FAMILY_GROUP } from './store.js';

/**
 * The deps of an AgentRun that a test chooses. The hooks it leaves out do nothing: never
 * paused, typing not shown, idling not counted.
 */
export type RunParts = Pick<
  AgentRunDeps,
  'runtime' | 'broker' | 'hostTools' | 'outbox' | 'events'
> &
  Partial<Pick<AgentRunDeps, 'isPaused' | 'setTyping' | 'onIdle'>>;

export interface AgentRunHome {
  /** The Clawbar home (CLAWBAR_HOME), a temp dir. */
  dir: string;
  config: ClawbarConfig;
  store: Store;
  log: Logger;
  /** {@link FAMILY_GROUP}, registered. */
  group: Group;
  /** Stores a message from Alice in the group's chat and returns its seq. */
  post(text: string): number;
  /**
   * Starts a run for the group, timing out after 60 s idle or silent, 10 s to ready and 2 s to
   * stop unless `over` says otherwise; `source` defaults to the group's unanswered messages.
   */
  run(parts: RunParts, over?: Partial<AgentRunConfig>, source?: TurnSource): AgentRun;
  /** Kills every run started here and waits until each has settled. */
  stopRuns(): Promise<void>;
  /** Closes the store and removes the home: after {@link stopRuns}, and after whatever else used it. */
  close(): void;
}

/** A new home in the temp dir, named from `prefix`, whose settings use `timezone`. */
export function agentRunHome(prefix: string, timezone: string): AgentRunHome {
  const home = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  const config = loadConfig({ CLAWBAR_HOME: home, TZ: timezone }, () => undefined);
  const store = openStore(config.dbPath);
  const log = silentLogger();
  const group = store.addGroup(FAMILY_GROUP, Date.now());
  const runs: AgentRun[] = [];
  let nextId = 0;
  return {
    dir: home,
    config,
    store,
    log,
    group,
    post(text) {
      return store.insertMessage({
        chatJid: group.jid,
        id: `m${nextId++}`,
        sender: 'local:alice',
        senderName: 'Alice',
        text,
        timestamp: Date.now(),
      }).message.seq;
    },
    run(parts, over = {}, source) {
      const run = new AgentRun(
        {
          isPaused: () => false,
          setTyping: () => undefined,
          onIdle: () => undefined,
          ...parts,
          config: {
            home: config.home,
            groupsDir: config.groupsDir,
            globalDir: config.globalDir,
            image: 'unused',
            assistantName: 'Andy',
            timezone: config.timezone,
            idleTimeoutMs: 60_000,
            hardTimeoutMs: 60_000,
            readyTimeoutMs: 10_000,
            stopTimeoutMs: 2_000,
            ...over,
          },
          now: Date.now,
          log,
        },
        store.getGroup(group.jid) as Group,
        source ?? messageTurns({ store, groupJid: group.jid, timezone: config.timezone }),
      );
      runs.push(run);
      return run;
    },
    async stopRuns() {
      for (const run of runs) await run.kill();
      await Promise.all(runs.map((run) => run.finished));
    },
    close() {
      store.close();
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

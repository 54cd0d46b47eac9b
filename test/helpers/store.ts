/** A real SQLite store in a temp dir, with the local-chat group most tests talk to. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore, type Group, type NewGroup, type Store } from '../../main/core/store/index.js';

/** The "Family" local-chat group: trigger `@Andy`, not main. */
export const FAMILY_GROUP: NewGroup = {
  jid: 'local:family',
  folder: 'family',
  name: 'Family',
  trigger: '@Andy',
  requiresTrigger: true,
  isMain: false,
  channel: 'local',
};

export interface TempStore {
  dir: string;
  store: Store;
  /** {@link FAMILY_GROUP}, registered. */
  family: Group;
  /** Closes the store and removes the dir. */
  close(): void;
}

export function tempStore(prefix: string): TempStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const store = openStore(path.join(dir, 'clawbar.db'));
  const family = store.addGroup(FAMILY_GROUP, 0);
  return {
    dir,
    store,
    family,
    close() {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

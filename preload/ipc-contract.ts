/**
 * The one IPC contract between the tray window and the main process (DESIGN.md §2: it lives
 * with the preload, which is the only code on both sides of the bridge).
 *
 * Each channel is a `domain:action` name mapped to the zod schema of its one argument and the
 * type of its result. The main process validates with the schemas ({@link registerIpc} in
 * `main/app/ipc.ts`); the preload derives `window.clawbar` from the same map
 * ({@link createClawbarApi}), so a channel added here shows up on both sides or fails to compile.
 *
 * This file must import neither `electron` nor Node: the sandboxed preload bundles it.
 * The imports from `main/core` are types only and vanish at build time. It uses `zod/mini`,
 * which tree-shakes: the preload bundle stays near 15 KB instead of carrying all of zod and
 * its locales (about 440 KB minified). Mini has no English messages built in, so every
 * message a caller can see is written here.
 */
import * as z from 'zod/mini';
import type { GroupView } from '../main/core/control/handlers.js';
import type { CoreStatus } from '../main/core/core.js';

export type { CoreStatus, GroupView };

/** Every IPC channel name. Use these constants; never spell a channel as a string elsewhere. */
export const IPC = {
  groupsList: 'groups:list',
  groupsPause: 'groups:pause',
  groupsResume: 'groups:resume',
  statusGet: 'status:get',
} as const;

export type IpcChannel = (typeof IPC)[keyof typeof IPC];

/** Carries a result type in the contract map; it holds no runtime value. */
interface ResultType<T> {
  readonly __result?: T;
}
const resultType = <T>(): ResultType<T> => ({});

/** A channel that takes no argument. */
const NoArgs = z.undefined({ error: 'this call takes no argument' });

/** A group by name, folder or jid, as everywhere else in Clawbar (DESIGN.md §6). */
const GroupRefArgs = z.strictObject(
  {
    group: z
      .string({ error: 'group must be a string (a name, folder or jid)' })
      .check(
        z.trim(),
        z.minLength(1, 'group must not be empty'),
        z.maxLength(256, 'group must be at most 256 characters'),
      ),
  },
  {
    error: (issue) => {
      if (issue.code === 'invalid_type') return 'expected { group: "<name, folder or jid>" }';
      if (issue.code === 'unrecognized_keys') {
        return `unknown key ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}`;
      }
      return undefined;
    },
  },
);

export const ipcContract = {
  [IPC.groupsList]: { args: NoArgs, result: resultType<GroupView[]>() },
  [IPC.groupsPause]: { args: GroupRefArgs, result: resultType<GroupView>() },
  [IPC.groupsResume]: { args: GroupRefArgs, result: resultType<GroupView>() },
  [IPC.statusGet]: { args: NoArgs, result: resultType<CoreStatus>() },
} as const satisfies { [C in IpcChannel]: { args: z.ZodMiniType; result: ResultType<unknown> } };

/** The channels in the contract, in declaration order. */
export const ipcChannels = Object.values(IPC);

/** What a channel's argument looks like after parsing. */
export type IpcArgs<C extends IpcChannel> = z.output<(typeof ipcContract)[C]['args']>;

/** What a channel's handler returns (plain, structured-clonable data). */
export type IpcResult<C extends IpcChannel> =
  (typeof ipcContract)[C]['result'] extends ResultType<infer R> ? R : never;

/** A channel with no argument is called with none: `clawbar.groups.list()`. */
type CallParams<C extends IpcChannel> = undefined extends IpcArgs<C> ? [] : [args: IpcArgs<C>];

type Domain<C extends string> = C extends `${infer D}:${string}` ? D : never;

/** `window.clawbar`: `groups:pause` becomes `clawbar.groups.pause({ group })`. */
export type ClawbarApiShape = {
  readonly [D in Domain<IpcChannel>]: {
    readonly [C in IpcChannel as C extends `${D}:${infer Action}` ? Action : never]: (
      ...args: CallParams<C>
    ) => Promise<IpcResult<C>>;
  };
};

/** Sends one call over IPC; the preload passes `ipcRenderer.invoke`. */
export type IpcInvoke = (channel: IpcChannel, args: unknown) => Promise<unknown>;

/**
 * Builds the renderer-facing API from the contract: one function per channel, grouped by
 * domain. Each function forwards its single argument and nothing else.
 */
export function createClawbarApi(invoke: IpcInvoke): ClawbarApiShape {
  const api: Record<string, Record<string, (args?: unknown) => Promise<unknown>>> = {};
  for (const channel of ipcChannels) {
    const [domain, action] = channel.split(':') as [string, string];
    (api[domain] ??= {})[action] = (args?: unknown) => invoke(channel, args);
  }
  // The loop above builds exactly the mapped type: one entry per channel, split at ':'.
  return api as unknown as ClawbarApiShape;
}

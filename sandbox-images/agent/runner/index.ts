/**
 * The in-container agent runner: the entry point and the stdio loop.
 *
 * It speaks the protocol in `main/core/agent/protocol.ts` (DESIGN.md §4): JSON lines in on
 * stdin, JSON lines out on stdout, logs on stderr. After `ready` it waits for `start`, runs
 * that turn, then serves follow-up `message`s, one turn at a time, until `shutdown` or the end
 * of stdin.
 *
 * stdout carries frames only. Nothing else may write to it, which is why logging goes through
 * `log.ts` to stderr and commands run by the bash tool get pipes of their own.
 */
import fs from 'node:fs';
import { conversationProblem } from '../../../main/core/agent/conversation.js';
import {
  FrameDecoder,
  HostToRunnerSchema,
  PROTOCOL_VERSION,
  type HostToRunner,
  type StartFrame,
} from '../../../main/core/agent/protocol.js';
import { AgentSession } from './agent-loop.js';
import { HostLink } from './host-link.js';
import { processIdentity } from './fs-errors.js';
import { describeError, stderrLog as log } from './log.js';
import { buildSystemPrompt, readMemory } from './system-prompt.js';
import { workspacePaths, type WorkspacePaths } from './workspace.js';

type ControlFrame = Extract<HostToRunner, { type: 'start' | 'message' | 'shutdown' }>;

/** Control frames in arrival order; the loop takes the next when it is free. */
class ControlInbox {
  private readonly frames: ControlFrame[] = [];
  private waiting: ((frame: ControlFrame) => void) | null = null;

  push(frame: ControlFrame): void {
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = null;
      waiting(frame);
    } else {
      this.frames.push(frame);
    }
  }

  next(): Promise<ControlFrame> {
    const frame = this.frames.shift();
    if (frame) return Promise.resolve(frame);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

/** Thrown into a running turn when the host asks the runner to stop. */
class ShutdownRequested extends Error {
  override readonly name = 'ShutdownRequested';
}

const link = new HostLink((line) => process.stdout.write(line), log);

/** Runs the runner until shutdown; resolves with the exit code. */
async function main(): Promise<number> {
  const paths = workspacePaths();
  const inbox = new ControlInbox();
  let shuttingDown = false;
  let currentTurn: AbortController | null = null;

  const requestShutdown = (why: string): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info(`shutting down: ${why}`);
    currentTurn?.abort(new ShutdownRequested(why));
    inbox.push({ type: 'shutdown' });
  };

  // As PID 1 in the container, the runner has no default SIGTERM action: without this,
  // `docker stop` would wait out its grace period and then SIGKILL.
  process.once('SIGTERM', () => requestShutdown('SIGTERM'));
  process.once('SIGINT', () => requestShutdown('SIGINT'));

  const decoder = new FrameDecoder(HostToRunnerSchema);
  const receive = (chunk: string): void => {
    for (const result of decoder.push(chunk)) {
      if (!result.ok) {
        link.reportBadFrame(`bad frame from host: ${result.error}`);
        continue;
      }
      const frame = result.frame;
      switch (frame.type) {
        case 'model.result':
        case 'model.error':
        case 'tool.result':
          link.deliver(frame);
          break;
        case 'shutdown':
          requestShutdown('shutdown frame');
          break;
        case 'start':
        case 'message':
          // Queued, not run: a message that arrives mid-turn waits for the turn to end.
          inbox.push(frame);
          break;
        default: {
          const unreachable: never = frame;
          link.reportError(`unhandled frame ${JSON.stringify(unreachable)}`);
        }
      }
    }
  };
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', receive);
  process.stdin.on('end', () => {
    receive('\n'); // a last frame without its newline still counts
    requestShutdown('stdin closed');
  });

  link.send({ type: 'ready', protocol: PROTOCOL_VERSION });

  let session: AgentSession | null = null;
  const runTurn = async (text: string): Promise<void> => {
    if (!session) return;
    currentTurn = new AbortController();
    await session.runTurn(text, currentTurn.signal);
    currentTurn = null;
  };
  for (;;) {
    const frame = await inbox.next();
    switch (frame.type) {
      case 'shutdown':
        return 0;
      case 'start':
        if (session) {
          link.reportError('ignored a second start frame: this runner is already started');
          break;
        }
        session = openSession(frame, paths);
        if (!shuttingDown) await runTurn(frame.prompt);
        break;
      case 'message':
        if (!session) link.reportError('ignored a message frame that came before start');
        else if (shuttingDown) log.warn('dropped a queued message: shutting down');
        else await runTurn(frame.text);
        break;
      default: {
        const unreachable: never = frame;
        link.reportError(`unhandled control frame ${JSON.stringify(unreachable)}`);
      }
    }
  }
}

/**
 * Sets up the conversation for a `start` frame, resuming the history the host sent. The host
 * keeps the transcript and sends only valid ones; a history the API would refuse anyway is
 * dropped here, so that one bad transcript cannot fail every turn of the container.
 */
function openSession(start: StartFrame, paths: WorkspacePaths): AgentSession {
  log.info(`run ${start.runId} for group ${start.group.folder}${start.isMain ? ' (main)' : ''}`);
  warnIfNotWritable(paths.group, 'the file tools cannot write there');
  const problem = conversationProblem(start.history);
  if (problem !== null) {
    log.error(`the history from the host is unusable (${problem}); starting a fresh conversation`);
  }
  const history = problem === null ? start.history : [];
  return new AgentSession(
    {
      host: link,
      groupDir: paths.group,
      systemPrompt: () =>
        buildSystemPrompt({
          assistantName: start.assistantName,
          groupName: start.group.name,
          isMain: start.isMain,
          paths,
          ...readMemory(paths),
        }),
      log,
    },
    history,
  );
}

/**
 * Says on stderr, at start, when a folder the runner must write to is not writable. The actual
 * failures are reported where they happen too; this line explains them up front in host logs.
 */
function warnIfNotWritable(folder: string, consequence: string): void {
  try {
    fs.accessSync(folder, fs.constants.W_OK);
  } catch {
    const who = processIdentity();
    log.warn(
      `${folder} is missing or not writable${who ? ` by ${who}` : ''}, so ${consequence}. ` +
        `Mount it writable for this user (chown it, or run the container with --user).`,
    );
  }
}

/** Ends the process once stdout has flushed, so the last frames are not lost. */
function exitAfterFlush(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

/** Reports a crash as an `error` frame and exits non-zero. */
function crash(err: unknown): void {
  try {
    link.reportError(
      `runner crashed: ${describeError(err)}`,
      err instanceof Error ? err.stack : undefined,
    );
  } finally {
    exitAfterFlush(1);
  }
}

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // EPIPE: the host closed our stdout, so nobody reads frames any more.
  log.error(`cannot write to the host (${err.code ?? err.message}); exiting`);
  process.exit(1);
});
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

main().then(exitAfterFlush, crash);

/**
 * Whether this machine is ready to run agents, and what to do when it is not.
 *
 * Three mistakes in setting Clawbar up used to look like a hang: no API key, no agent image,
 * no container engine. Each started containers (or tried to), burned retries, and left
 * `send --wait` silent for minutes. Here they are set-up problems instead, found at start and
 * whenever a run trips over one:
 *
 * - while any problem is open, the queue holds all work: no container starts, no retry is spent;
 * - the orchestrator tells each waiting chat once what is wrong and the command that fixes it;
 * - what can be watched is watched, and the held work goes on by itself when it is fixed: the
 *   engine comes back ({@link RuntimeHealth}), the image appears (polled while missing) or is
 *   built by Clawbar itself (an {@link ImageBuilder}, as `serve` passes one). A missing key is
 *   read from the environment at start, so that one needs a restart, and says so.
 *
 * The monitor only keeps the state and reports changes; the orchestrator decides what the
 * queue and the chats hear.
 */
import type { Logger } from './logger.js';
import { RuntimeHealth } from './sandbox/health.js';
import type { ContainerRuntime, RuntimeState } from './sandbox/runtime.js';
import { ImageMissingError, RuntimeUnavailableError } from './sandbox/runtime.js';

export type SetupProblemKind = 'no-key' | 'engine' | 'image-missing' | 'image-building';

export interface SetupProblem {
  kind: SetupProblemKind;
  /** What is wrong, for a person, e.g. "the Docker engine is not reachable". */
  message: string;
  /** The step that fixes it; null while Clawbar is fixing it itself (an image build). */
  fix: string | null;
  /** The latest progress of a fix under way, e.g. "step 3/7: COPY …". */
  progress?: string;
}

/** How Clawbar can make the agent image itself (`serve` passes one; the offline CLI does not). */
export interface ImageBuilder {
  /** `current`: present and built from this runner; `stale`: present, from another runner. */
  freshness(): Promise<'current' | 'stale' | 'missing'>;
  /**
   * Builds the image, reporting progress as one line at a time. Rejects with an error whose
   * message says what was tried and how to fix it.
   */
  build(onProgress: (line: string) => void, signal: AbortSignal): Promise<void>;
}

export interface SetupMonitorDeps {
  runtime: Pick<ContainerRuntime, 'check' | 'inspectImage'>;
  /** The agent image's tag. */
  image: string;
  /** Whether an API key is configured. */
  keyConfigured: boolean;
  /**
   * How the user sets the key, for the `no-key` problem's fix.
   * @default set ANTHROPIC_API_KEY for `clawbar serve` and restart it
   */
  keyFix?: string;
  log: Logger;
  /** Builds a missing or stale image; without one, a missing image waits for the user. */
  builder?: ImageBuilder;
  /** The problems changed. Called synchronously; must not throw. */
  onChange(problems: readonly SetupProblem[]): void;
  /** The engine answers again (after an outage): clean up what it lost. Must not throw. */
  onEngineBack(): Promise<void>;
  /** First recheck delay while the engine is down or the image missing, doubling. @default 1000 */
  recheckMs?: number;
  /** @default 10000 for the image, 30000 for the engine */
  maxImageRecheckMs?: number;
}

/** Problems the user must act on, as opposed to one Clawbar is fixing by itself. */
export function needsTheUser(problems: readonly SetupProblem[]): SetupProblem[] {
  return problems.filter((p) => p.kind !== 'image-building');
}

/**
 * One sentence for a person, naming every problem and its fix, e.g. "the agent image
 * clawbar-agent:latest is not built (fix: run `clawbar image build`)".
 */
export function describeProblems(problems: readonly SetupProblem[]): string {
  return problems
    .map((p) => {
      const extra = p.fix ? ` (fix: ${p.fix})` : p.progress ? ` (${p.progress})` : '';
      return `${p.message}${extra}`;
    })
    .join('; ');
}

const ORDER: readonly SetupProblemKind[] = ['engine', 'image-building', 'image-missing', 'no-key'];

export class SetupMonitor {
  private readonly problemsByKind = new Map<SetupProblemKind, SetupProblem>();
  private readonly health: RuntimeHealth;
  private readonly log: Logger;
  /** Aborted at stop: ends a build under way and every recheck. */
  private readonly stopping = new AbortController();
  private building: Promise<void> | null = null;
  private imageTimer: ReturnType<typeof setTimeout> | null = null;
  private imageAttempt = 0;
  /** Rechecking the image now; a second recheck waits for it. */
  private checkingImage: Promise<void> | null = null;

  constructor(private readonly deps: SetupMonitorDeps) {
    this.log = deps.log.child({ mod: 'setup' });
    this.health = new RuntimeHealth({
      runtime: deps.runtime,
      log: deps.log,
      ...(deps.recheckMs ? { baseDelayMs: deps.recheckMs } : {}),
      onDown: (state) => this.engineDown(state),
      onRestored: () => this.engineBack(),
    });
  }

  /** The open problems, the most basic first (no engine means nothing else can be checked). */
  problems(): SetupProblem[] {
    return ORDER.flatMap((kind) => {
      const problem = this.problemsByKind.get(kind);
      return problem ? [{ ...problem }] : [];
    });
  }

  get ready(): boolean {
    return this.problemsByKind.size === 0;
  }

  /**
   * Finds the problems there are now: the key, the engine, then the image (built in the
   * background when a builder was given). Returns once the state is known, not after a build.
   */
  async start(): Promise<RuntimeState> {
    this.keyChanged(this.deps.keyConfigured);
    const runtime = await this.deps.runtime.check();
    if (runtime.ok) await this.checkImage();
    else this.engineDown(runtime);
    return runtime;
  }

  /** The API key was set or removed while running (the app's Settings): held work follows. */
  keyChanged(configured: boolean): void {
    if (configured) {
      this.clear('no-key');
      return;
    }
    this.set({
      kind: 'no-key',
      message: 'no Anthropic API key is set',
      fix:
        this.deps.keyFix ??
        'set ANTHROPIC_API_KEY in the environment of `clawbar serve` and restart it',
    });
  }

  /**
   * A run found the machine not ready: the image is missing (set at once, and watched), or the
   * engine did not answer (confirmed by a health check before it counts as a problem, so a
   * blip costs nothing but the check).
   */
  reportNotReady(error: Error): void {
    if (this.stopping.signal.aborted) return;
    if (hasCause(error, ImageMissingError)) {
      this.imageMissing();
      return;
    }
    this.health.reportDown();
  }

  /**
   * Asks again now, for a caller that fixed something (or thinks it did): the engine's health
   * and the image. Settles when known.
   */
  async recheck(): Promise<void> {
    const runtime = await this.deps.runtime.check();
    if (!runtime.ok) {
      this.engineDown(runtime);
      return;
    }
    if (this.problemsByKind.has('engine')) await this.engineBack();
    else await this.checkImage();
  }

  /** Stops watching, and ends a build under way. */
  stop(): void {
    this.stopping.abort(new Error('clawbar is shutting down'));
    this.health.stop();
    if (this.imageTimer) clearTimeout(this.imageTimer);
    this.imageTimer = null;
  }

  /** Settles when a build under way has ended (at once when none is). For tests and shutdown. */
  async whenBuilt(): Promise<void> {
    await this.building;
  }

  // ── internals ──────────────────────────────────────────────────────────

  private set(problem: SetupProblem): void {
    const before = this.problemsByKind.get(problem.kind);
    if (
      before &&
      before.message === problem.message &&
      before.fix === problem.fix &&
      before.progress === problem.progress
    )
      return;
    this.problemsByKind.set(problem.kind, problem);
    if (!before || before.message !== problem.message) {
      const fields = { problem: problem.kind, ...(problem.fix ? { fix: problem.fix } : {}) };
      if (problem.kind === 'image-building') this.log.info(fields, problem.message);
      else this.log.warn(fields, `not ready to run agents: ${problem.message}`);
    }
    this.changed();
  }

  private clear(kind: SetupProblemKind): void {
    if (!this.problemsByKind.delete(kind)) return;
    this.log.info({ problem: kind }, 'set-up problem fixed');
    this.changed();
  }

  private changed(): void {
    try {
      this.deps.onChange(this.problems());
    } catch (err) {
      this.log.error({ err }, 'a set-up change listener threw');
    }
  }

  private engineDown(state: Extract<RuntimeState, { ok: false }>): void {
    this.set({ kind: 'engine', message: state.reason, fix: state.fix });
    // While the engine is down nothing can be said about the image; it is checked on return.
    this.clear('image-missing');
    this.stopImageWatch();
    this.health.reportDown();
  }

  private async engineBack(): Promise<void> {
    await this.deps.onEngineBack();
    if (this.stopping.signal.aborted) return;
    // The image first, so that released work never starts against a missing one.
    await this.checkImage();
    this.clear('engine');
  }

  /** Looks at the image: current, or built (with a builder), or watched until it appears. */
  private checkImage(): Promise<void> {
    this.checkingImage ??= this.inspectImage().finally(() => (this.checkingImage = null));
    return this.checkingImage;
  }

  private async inspectImage(): Promise<void> {
    if (this.building) return;
    const { builder } = this.deps;
    try {
      if (builder) {
        const freshness = await builder.freshness();
        if (freshness === 'current') {
          this.imageFound();
          return;
        }
        this.startBuild(builder, freshness);
        return;
      }
      const state = await this.deps.runtime.inspectImage(this.deps.image);
      if (state.present) this.imageFound();
      else this.imageMissing();
    } catch (err) {
      if (err instanceof RuntimeUnavailableError) {
        // The engine went away between the check and the look: its health watch takes over.
        this.log.debug({ err }, 'could not look at the agent image');
        this.health.reportDown();
        return;
      }
      // Something only the user can fix, such as a checkout whose runner was never built.
      this.imageMissing(err instanceof Error ? err.message : String(err));
    }
  }

  private imageFound(): void {
    this.stopImageWatch();
    this.clear('image-missing');
  }

  private imageMissing(fix = 'run `clawbar image build`'): void {
    this.set({
      kind: 'image-missing',
      message: `the agent image ${this.deps.image} is not built`,
      fix,
    });
    this.watchImage();
  }

  /** Polls for the image while it is missing: the user may build it in another terminal. */
  private watchImage(): void {
    if (this.imageTimer || this.stopping.signal.aborted) return;
    const base = this.deps.recheckMs ?? 1_000;
    const max = this.deps.maxImageRecheckMs ?? 10_000;
    const delay = Math.min(base * 2 ** this.imageAttempt++, max);
    this.imageTimer = setTimeout(() => {
      this.imageTimer = null;
      if (!this.problemsByKind.has('image-missing')) return;
      this.checkImage()
        .catch((err: unknown) => this.log.error({ err }, 'image recheck failed'))
        .finally(() => {
          if (this.problemsByKind.has('image-missing')) this.watchImage();
        });
    }, delay);
    this.imageTimer.unref();
  }

  private stopImageWatch(): void {
    this.imageAttempt = 0;
    if (this.imageTimer) clearTimeout(this.imageTimer);
    this.imageTimer = null;
  }

  private startBuild(builder: ImageBuilder, freshness: 'stale' | 'missing'): void {
    const why =
      freshness === 'missing'
        ? `building the agent image ${this.deps.image} (it is not there yet)`
        : `rebuilding the agent image ${this.deps.image} (the runner changed)`;
    this.stopImageWatch();
    this.clear('image-missing');
    this.set({ kind: 'image-building', message: why, fix: null });
    this.building = builder
      .build((line) => {
        const progress = oneLine(line);
        if (!progress) return;
        // A build is rare and long: every line it reports is worth a log line.
        this.log.info(`image build: ${progress}`);
        this.set({ kind: 'image-building', message: why, fix: null, progress });
      }, this.stopping.signal)
      .then(
        () => {
          this.building = null;
          this.log.info({ image: this.deps.image }, 'agent image built');
          this.clear('image-building');
        },
        (err: unknown) => {
          this.building = null;
          if (this.stopping.signal.aborted) return;
          this.log.error({ err }, 'could not build the agent image');
          this.clear('image-building');
          // The build error says what was tried and what would make it work.
          const reason = err instanceof Error ? err.message : String(err);
          this.imageMissing(`${reason}; then run \`clawbar image build\``);
        },
      );
  }
}

/** One printable line of at most 200 characters: build output is not ours to trust. */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  return clean.length > 200 ? `${clean.slice(0, 199)}…` : clean;
}

function hasCause(err: unknown, type: abstract new (...args: never[]) => Error): boolean {
  let current: unknown = err;
  for (let depth = 0; current instanceof Error && depth < 8; depth++) {
    if (current instanceof type) return true;
    current = (current as Error).cause;
  }
  return false;
}

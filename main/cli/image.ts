/**
 * `clawbar image build [--base IMAGE] [--force]`: builds the agent image, showing progress.
 *
 * Without `--base` it takes the same path as `serve` (ensure-image.ts): nothing to do when the
 * image matches this checkout's runner, else a build on the first base that works (the
 * registry's node image, a local `clawbar-base:offline`, or that base made here with
 * offline-base.sh). With `--base`, it always builds, on that image.
 */
import Docker from 'dockerode';
import { loadConfig } from '../core/config.js';
import { agentImageContext } from '../core/paths.js';
import {
  ensureAgentImage,
  formatImageProgress,
  type EnsureImageProgress,
} from '../core/sandbox/ensure-image.js';
import { buildAgentImage, contextFiles } from '../core/sandbox/image.js';
import { CliError, type Output } from './output.js';

export async function imageBuildCommand(
  opts: { base: string | undefined; force?: boolean },
  out: Output,
): Promise<void> {
  const config = loadConfig();
  const contextDir = agentImageContext();
  contextFiles(contextDir);
  const docker = new Docker();
  const onProgress = (event: EnsureImageProgress): void => {
    const line = formatImageProgress(event);
    if (line !== undefined) out.progress(line);
  };

  // offline-base.sh runs in a process group of its own (so serve can stop debootstrap with
  // it), which a terminal's Ctrl-C does not reach: stop it through the abort instead.
  const interrupted = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted.abort(new CliError(`stopped by ${signal}; the image was not built`, 130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (opts.base) {
      out.progress(`building ${config.image} on ${opts.base} from ${contextDir}`);
      const built = await buildAgentImage({
        docker,
        contextDir,
        tag: config.image,
        baseImage: opts.base,
        onProgress,
        signal: interrupted.signal,
      });
      const result = { action: 'built' as const, base: opts.base, ...built };
      out.print(
        result,
        () =>
          `built ${built.tag} (${built.id.slice(7, 19)}) on ${opts.base} in ${built.seconds.toFixed(1)} s`,
      );
      return;
    }

    const result = await ensureAgentImage({
      docker,
      tag: config.image,
      contextDir,
      force: opts.force ?? false,
      onProgress,
      signal: interrupted.signal,
    });
    out.print(result, () =>
      result.action === 'none'
        ? `${result.tag} is up to date (runner ${result.runnerHash.slice(0, 12)}); --force rebuilds it`
        : `built ${result.tag} (${result.id.slice(7, 19)}) on ${result.base} in ${result.seconds.toFixed(1)} s`,
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

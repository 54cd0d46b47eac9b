/**
 * How `serve` makes the agent image under Apple Container: `container build` of the same
 * context as the Docker path, labelled with the runner hash so freshness is decided the same
 * way (see ensure-image.ts). The base is the Dockerfile's default (`node:22-bookworm-slim`,
 * pulled by the builder); the offline-base chain is Docker-only, since offline-base.sh ends in
 * `docker import`.
 */
import { DEFAULTS, type ClawbarConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { agentImageContext } from '../paths.js';
import type { ImageBuilder } from '../setup.js';
import type { AppleContainerRuntime } from './apple-container.js';
import { RUNNER_HASH_LABEL, runnerContentHash } from './image.js';

/** Where the image stands against this checkout's runner, as the setup monitor asks it. */
export async function appleImageFreshness(
  runtime: Pick<AppleContainerRuntime, 'inspectImageDetails'>,
  image: string,
  contextDir: string,
): Promise<{ state: 'current' | 'stale' | 'missing'; imageRunnerHash: string | undefined }> {
  const runnerHash = await runnerContentHash(contextDir);
  const found = await runtime.inspectImageDetails(image);
  if (!found) return { state: 'missing', imageRunnerHash: undefined };
  const imageRunnerHash = found.labels[RUNNER_HASH_LABEL];
  return { state: imageRunnerHash === runnerHash ? 'current' : 'stale', imageRunnerHash };
}

export function appleImageBuilder(
  config: Pick<ClawbarConfig, 'image'>,
  log: Logger,
  runtime: Pick<AppleContainerRuntime, 'inspectImageDetails' | 'buildImage'>,
  contextDir: string = agentImageContext(),
): ImageBuilder {
  return {
    async freshness() {
      const found = await appleImageFreshness(runtime, config.image, contextDir);
      // An image under a tag of the user's choosing that no Clawbar build labelled is theirs
      // (the same rule as the Docker builder): used as it is, never rebuilt over.
      if (
        found.state === 'stale' &&
        found.imageRunnerHash === undefined &&
        config.image !== DEFAULTS.image
      ) {
        log.info(
          { image: config.image },
          'CLAWBAR_IMAGE names an image Clawbar did not build; using it as it is',
        );
        return 'current';
      }
      return found.state;
    },
    async build(onProgress, signal) {
      const runnerHash = await runnerContentHash(contextDir);
      onProgress(`building ${config.image} with container build`);
      await runtime.buildImage(
        { contextDir, tag: config.image, labels: { [RUNNER_HASH_LABEL]: runnerHash } },
        onProgress,
        signal,
      );
    },
  };
}

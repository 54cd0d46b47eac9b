/**
 * The agent image as the core keeps it ready: `serve` (and the app) build it at start when it
 * is missing, or when it was built from another runner, with the same chain of bases as
 * `clawbar image build` (ensure-image.ts). The core holds work meanwhile (setup.ts).
 */
import Docker from 'dockerode';

import { DEFAULTS, type ClawbarConfig } from '../config.js';
import type { Logger } from '../logger.js';
import { agentImageContext, offlineBaseScript } from '../paths.js';
import type { ImageBuilder } from '../setup.js';
import { agentImageFreshness, ensureAgentImage, formatImageProgress } from './ensure-image.js';

export function dockerImageBuilder(
  config: Pick<ClawbarConfig, 'image'>,
  log: Logger,
  docker: Docker = new Docker(),
  contextDir: string = agentImageContext(),
  /** Run when no base image can be had from a registry (see ensure-image.ts). */
  offlineBaseScriptPath: string = offlineBaseScript(),
): ImageBuilder {
  let toldOwnImage = false;
  return {
    async freshness() {
      const found = await agentImageFreshness(docker, config.image, contextDir);
      // An image under a tag of the user's choosing that no Clawbar build labelled is theirs:
      // it is used as it is, never rebuilt over. The default tag, or one we labelled, is ours.
      if (
        found.state === 'stale' &&
        found.imageRunnerHash === undefined &&
        config.image !== DEFAULTS.image
      ) {
        if (!toldOwnImage) {
          toldOwnImage = true;
          log.info(
            { image: config.image },
            'CLAWBAR_IMAGE names an image Clawbar did not build; using it as it is',
          );
        }
        return 'current';
      }
      return found.state;
    },
    async build(onProgress, signal) {
      await ensureAgentImage({
        docker,
        tag: config.image,
        contextDir,
        offlineBaseScript: offlineBaseScriptPath,
        signal,
        onProgress: (event) => {
          const line = formatImageProgress(event);
          if (line !== undefined) onProgress(line);
        },
      });
    },
  };
}

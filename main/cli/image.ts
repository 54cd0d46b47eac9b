/** `clawbar image build [--base IMAGE]`: builds the agent image, showing progress. */
import Docker from 'dockerode';
import { loadConfig } from '../core/config.js';
import { agentImageContext } from '../core/paths.js';
import { buildAgentImage, contextFiles } from '../core/sandbox/image.js';
import type { Output } from './output.js';

export async function imageBuildCommand(
  opts: { base: string | undefined },
  out: Output,
): Promise<void> {
  const config = loadConfig();
  const contextDir = agentImageContext();
  contextFiles(contextDir);
  out.progress(`building ${config.image}${opts.base ? ` on ${opts.base}` : ''} from ${contextDir}`);
  const built = await buildAgentImage({
    docker: new Docker(),
    contextDir,
    tag: config.image,
    ...(opts.base ? { baseImage: opts.base } : {}),
    onProgress: (event) => {
      switch (event.kind) {
        case 'step':
          out.progress(`[${event.step}/${event.total}] ${event.text}`);
          return;
        case 'output':
          if (event.text.trim()) out.progress(`    ${event.text.trimEnd()}`);
          return;
        case 'layer':
          out.progress(
            `    ${event.id}: ${event.status}${event.progress ? ` ${event.progress}` : ''}`,
          );
          return;
        default: {
          const unreachable: never = event;
          return unreachable;
        }
      }
    },
  });
  out.print(
    built,
    () => `built ${built.tag} (${built.id.slice(7, 19)}) in ${built.seconds.toFixed(1)} s`,
  );
}

import { PROTOCOL_VERSION } from '../../main/core/agent/protocol.js';

/**
 * The source of a stand-in runner for tests: a Node script that speaks the container protocol
 * just enough to misbehave on purpose. It writes `preamble` output first, says `ready`
 * (unless the preamble replaces that), then for each frame the host sends runs `onFrame`, and
 * `onPrompt` if it is a `start` or `message`, with the frame as `frame` and `out(frame)` and
 * `line(text)` to write to stdout. It exits on `shutdown` or when stdin ends.
 */
export function scriptedRunner(opts: {
  onPrompt?: string;
  onFrame?: string;
  preamble?: string;
}): string {
  return `
const line = (text) => process.stdout.write(text + '\\n');
const out = (frame) => line(JSON.stringify(frame));
${opts.preamble ?? `out({ type: 'ready', protocol: ${PROTOCOL_VERSION} });`}
let buffer = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffer += chunk;
  let newline;
  while ((newline = buffer.indexOf('\\n')) !== -1) {
    const frame = JSON.parse(buffer.slice(0, newline));
    buffer = buffer.slice(newline + 1);
    ${opts.onFrame ?? ''}
    if (frame.type === 'start' || frame.type === 'message') { ${opts.onPrompt ?? ''} }
    if (frame.type === 'shutdown') process.exit(0);
  }
});
process.stdin.on('end', () => process.exit(0));
setInterval(() => {}, 1000);
`;
}

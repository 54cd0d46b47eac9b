/** The tools that are calls to the host: send_message. The host authorizes each call. */
import { z } from 'zod';
import { HostCallArgsSchemas } from '../../../../main/core/agent/protocol.js';
import { defineTool } from './define.js';

// ── send_message ───────────────────────────────────────────────────────────

export const sendMessageTool = defineTool({
  name: 'send_message',
  description:
    'Sends a message to the chat right away, while you keep working: to acknowledge a long task or report progress. ' +
    'Your final answer is sent anyway; do not repeat in it what you sent here.',
  input: z.strictObject({
    text: HostCallArgsSchemas.send_message.shape.text.describe('The message text.'),
  }),
  async run(input, context) {
    const reply = await context.callHost('send_message', { text: input.text }, context.signal);
    if (!reply.ok) return { content: reply.result || 'send_message failed', isError: true };
    return reply.result || 'Message sent.';
  },
});

/** The tools that are calls to the host: send_message, list_chats. The host authorizes each call. */
import { z } from 'zod';
import { HostCallArgsSchemas, LIST_CHATS_MAX } from '../../../../main/core/agent/protocol.js';
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

// ── list_chats ─────────────────────────────────────────────────────────────

export const listChatsTool = defineTool({
  name: 'list_chats',
  description:
    'For the main group only; other groups are refused. Lists the chats the assistant can reach, most recently active first: ' +
    'jid, group or direct, channel, name, last activity, and whether each is enabled (with its folder). ' +
    "Use it to find a chat's jid from its name, e.g. when your owner asks which chats exist or which one to enable. " +
    `At most ${LIST_CHATS_MAX} chats; pass a query to narrow.`,
  input: z.strictObject({
    query: HostCallArgsSchemas.list_chats.shape.query.describe(
      'Optional: show only chats whose name or jid contains this text, ignoring case.',
    ),
  }),
  async run(input, context) {
    const args = input.query === undefined ? {} : { query: input.query };
    const reply = await context.callHost('list_chats', args, context.signal);
    if (!reply.ok) return { content: reply.result || 'list_chats failed', isError: true };
    return reply.result || 'No chats.';
  },
});

/**
 * The conversation rules shared by the host and the runner: what a valid conversation is, how
 * a model answer becomes an assistant message, and how old turns are trimmed.
 */
import { describe, expect, it } from 'vitest';
import {
  EMPTY_REPLY,
  TRANSCRIPT_MAX_BYTES,
  conversationBytes,
  conversationProblem,
  dropOldestTurn,
  fitConversation,
  isTurnStart,
  promptMessage,
  trimConversation,
  usableContent,
} from '../../main/core/agent/conversation.js';
import type { MessageParam } from '../../main/core/agent/protocol.js';

/** One turn with a tool call: prompt, tool_use, tool_result, answer. */
const turn = (question: string, size = 0): MessageParam[] => [
  { role: 'user', content: question },
  {
    role: 'assistant',
    content: [{ type: 'tool_use', id: `t-${question}`, name: 'bash', input: { command: 'true' } }],
  },
  {
    role: 'user',
    content: [{ type: 'tool_result', tool_use_id: `t-${question}`, content: 'x'.repeat(size) }],
  },
  { role: 'assistant', content: [{ type: 'text', text: `answer to ${question}` }] },
];

describe('conversationProblem', () => {
  it('accepts an empty conversation and complete turns', () => {
    expect(conversationProblem([])).toBeNull();
    expect(conversationProblem([...turn('a'), ...turn('b')])).toBeNull();
  });

  it('names what breaks a conversation', () => {
    expect(conversationProblem(turn('a').slice(0, 2))).toContain('tool call t-a is never answered');
    expect(conversationProblem([...turn('a').slice(0, 2), ...turn('b')])).toContain(
      'does not answer tool call t-a',
    );
    expect(conversationProblem(turn('a').slice(0, 3))).toContain('ends in the middle of a turn');
    expect(conversationProblem(turn('a').slice(1))).toContain('does not start with a user message');
    expect(
      conversationProblem([
        { role: 'user', content: 'hi' },
        { role: 'user', content: 'again' },
      ]),
    ).toContain('message 1 should be from the assistant');
    expect(
      conversationProblem([
        ...turn('a').slice(0, 2),
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 't-a', content: '' },
            { type: 'tool_result', tool_use_id: 't-made-up', content: '' },
          ],
        },
        { role: 'assistant', content: 'done' },
      ]),
    ).toContain('answers a tool call that was not made');
  });
});

describe('isTurnStart and dropOldestTurn', () => {
  it('tells a prompt from a tool result', () => {
    const [prompt, toolUse, toolResult] = turn('a');
    expect(isTurnStart(prompt!)).toBe(true);
    expect(isTurnStart(toolUse!)).toBe(false);
    expect(isTurnStart(toolResult!)).toBe(false);
    expect(isTurnStart({ role: 'user', content: [{ type: 'text', text: 'hi' }] })).toBe(true);
  });

  it('drops exactly the first turn, and never the last one', () => {
    expect(dropOldestTurn([...turn('a'), ...turn('b')])).toEqual(turn('b'));
    expect(dropOldestTurn(turn('a'))).toBeNull();
  });
});

describe('trimConversation', () => {
  it('drops whole old turns to fit the budget and keeps the latest turn whatever its size', () => {
    const conversation = [...turn('a', 1000), ...turn('b', 1000), ...turn('c', 5000)];
    const trimmed = trimConversation(conversation, 3000);
    expect(trimmed).toEqual(turn('c', 5000));
    expect(conversationProblem(trimmed)).toBeNull();
    expect(trimConversation(conversation, 1_000_000)).toEqual(conversation);
  });

  it('keeps as many recent turns as fit, measured exactly in UTF-8 bytes', () => {
    // Multi-byte text, so a count of characters would be wrong.
    const conversation = [...turn('ä', 300), ...turn('🐈', 300), ...turn('€', 300)];
    const lastTwo = conversation.slice(4);
    expect(conversationBytes(lastTwo)).toBe(Buffer.byteLength(JSON.stringify(lastTwo)));
    expect(trimConversation(conversation, conversationBytes(lastTwo))).toEqual(lastTwo);
    expect(trimConversation(conversation, conversationBytes(lastTwo) - 1)).toEqual(
      conversation.slice(8),
    );
  });

  it('also drops old turns past a message count', () => {
    const conversation = [...turn('a'), ...turn('b'), ...turn('c')];
    expect(trimConversation(conversation, TRANSCRIPT_MAX_BYTES, 8)).toEqual(conversation.slice(4));
    expect(trimConversation(conversation, TRANSCRIPT_MAX_BYTES, 1)).toEqual(conversation.slice(8));
  });

  it('leaves an empty conversation empty', () => {
    expect(trimConversation([])).toEqual([]);
    expect(fitConversation([], 0)).toEqual([]);
  });
});

describe('fitConversation', () => {
  it('drops even the latest turn when it alone is over the limit', () => {
    const conversation = [...turn('a', 100), ...turn('b', 5000)];
    expect(fitConversation(conversation, 1_000_000)).toEqual(conversation);
    expect(fitConversation(conversation, conversationBytes(turn('b', 5000)))).toEqual(
      turn('b', 5000),
    );
    expect(fitConversation(conversation, 3000)).toEqual([]);
  });
});

describe('promptMessage and usableContent', () => {
  it('opens a turn with the prompt as plain text', () => {
    expect(promptMessage('Hello?')).toEqual({ role: 'user', content: 'Hello?' });
  });

  it('drops empty text blocks and stands in for an empty answer', () => {
    expect(
      usableContent([
        { type: 'text', text: '  ' },
        { type: 'text', text: 'kept' },
        { type: 'tool_use', id: 'x', name: 'bash', input: {} },
      ]),
    ).toEqual([
      { type: 'text', text: 'kept' },
      { type: 'tool_use', id: 'x', name: 'bash', input: {} },
    ]);
    expect(usableContent([])).toEqual([{ type: 'text', text: EMPTY_REPLY }]);
    expect(usableContent([{ type: 'text', text: '' }])).toEqual([
      { type: 'text', text: EMPTY_REPLY },
    ]);
  });
});

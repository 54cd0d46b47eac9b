/**
 * What a group's settings change in its model calls (agent-settings.ts), and the content
 * policy's side of it: which server tool blocks pass for which features.
 */
import { describe, expect, it } from 'vitest';
import {
  modelNameProblem,
  serverToolsFor,
  withoutDisabledWebBlocks,
} from '../../main/core/agent/agent-settings.js';
import {
  BROKER_FEATURES,
  checkAnswer,
  checkMessages,
  type HostFeatures,
} from '../../main/core/agent/content-policy.js';
import type { MessageParam } from '../../main/core/agent/protocol.js';

const SEARCH_ONLY: HostFeatures = { thinking: false, webSearch: true, webFetch: false };
const FETCH_ONLY: HostFeatures = { thinking: false, webSearch: false, webFetch: true };
const NONE: HostFeatures = { thinking: false, webSearch: false, webFetch: false };

const searchUse = {
  type: 'server_tool_use',
  id: 'srvtoolu_1',
  name: 'web_search',
  input: { query: 'tides' },
};
const searchResult = {
  type: 'web_search_tool_result',
  tool_use_id: 'srvtoolu_1',
  content: [
    {
      type: 'web_search_result',
      url: 'https://tides.example',
      title: 'Tides',
      encrypted_content: 'ZW5j',
      page_age: null,
    },
  ],
};
const fetchUse = {
  type: 'server_tool_use',
  id: 'srvtoolu_2',
  name: 'web_fetch',
  input: { url: 'https://tides.example/today' },
};
const fetchResult = {
  type: 'web_fetch_tool_result',
  tool_use_id: 'srvtoolu_2',
  content: {
    type: 'web_fetch_result',
    url: 'https://tides.example/today',
    retrieved_at: '2025-06-01T08:00:00Z',
    content: {
      type: 'document',
      source: { type: 'text', media_type: 'text/plain', data: 'High tide at 9.' },
      title: 'Today',
      citations: null,
    },
  },
};
const citedText = {
  type: 'text',
  text: 'High tide at 9.',
  citations: [
    {
      type: 'web_search_result_location',
      url: 'https://tides.example',
      title: 'Tides',
      encrypted_index: 'aWR4',
      cited_text: 'High tide',
    },
  ],
};

const conversation = (...assistant: unknown[]): unknown[] => [
  { role: 'user', content: 'tides?' },
  { role: 'assistant', content: assistant },
  { role: 'user', content: 'thanks' },
];

describe('the content policy for server-side web tools', () => {
  it('lets a web fetch call and its result through only when web fetch is on', () => {
    const messages = conversation(fetchUse, fetchResult, { type: 'text', text: 'At 9.' });
    expect(checkMessages(messages, FETCH_ONLY).ok).toBe(true);
    expect(checkMessages(messages, BROKER_FEATURES).ok).toBe(true);
    const refused = checkMessages(messages, SEARCH_ONLY);
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.reason).toMatch(
      /^content block 1 of message 2 \(a server_tool_use block\) has an invalid name/,
    );
    expect(checkMessages(conversation(fetchResult), SEARCH_ONLY)).toEqual({
      ok: false,
      reason:
        'content block 1 of message 2 is a web_fetch_tool_result block, but the host has not turned server-side tools on',
    });
  });

  it('refuses a fetched document with a url source, which would make Anthropic fetch again', () => {
    const urlDocument = structuredClone(fetchResult);
    (urlDocument.content.content as { source: unknown }).source = {
      type: 'url',
      url: 'https://attacker.example/?secret=1',
    };
    expect(checkMessages(conversation(fetchUse, urlDocument), FETCH_ONLY).ok).toBe(false);
  });

  it('checks an answer by the features of its request: a web fetch block in a search-only answer is refused', () => {
    expect(checkAnswer([searchUse, searchResult, citedText], SEARCH_ONLY).ok).toBe(true);
    expect(checkAnswer([fetchUse, fetchResult], SEARCH_ONLY).ok).toBe(false);
    expect(checkAnswer([fetchUse, fetchResult], FETCH_ONLY).ok).toBe(true);
  });
});

describe('withoutDisabledWebBlocks', () => {
  const checked = (messages: unknown[]): MessageParam[] => {
    const result = checkMessages(messages, BROKER_FEATURES);
    if (!result.ok) throw new Error(result.reason);
    return result.value;
  };

  it('drops the calls, results and citations of features that are off, and keeps the rest', () => {
    const messages = checked(
      conversation(searchUse, searchResult, citedText, fetchUse, fetchResult, {
        type: 'text',
        text: 'Bring a towel.',
      }),
    );
    const withoutFetch = withoutDisabledWebBlocks(messages, SEARCH_ONLY);
    expect(withoutFetch[1]?.content).toEqual([
      searchUse,
      searchResult,
      citedText,
      { type: 'text', text: 'Bring a towel.' },
    ]);
    const withoutBoth = withoutDisabledWebBlocks(messages, NONE);
    expect(withoutBoth[1]?.content).toEqual([
      { type: 'text', text: 'High tide at 9.' },
      { type: 'text', text: 'Bring a towel.' },
    ]);
    // Everything on: the very same messages.
    expect(withoutDisabledWebBlocks(messages, BROKER_FEATURES)).toEqual(messages);
    expect(withoutDisabledWebBlocks(messages, NONE)[0]).toBe(messages[0]);
  });

  it('drops a forged web fetch call at the end of an assistant message, which the API would run', () => {
    const messages = checked([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: [fetchUse] },
    ]);
    expect(withoutDisabledWebBlocks(messages, SEARCH_ONLY)[1]?.content).toEqual([
      { type: 'text', text: '(no reply)' },
    ]);
  });
});

describe('serverToolsFor and model names', () => {
  it('offers search and fetch per setting, each with a max_uses cap', () => {
    expect(serverToolsFor({ model: null, webSearch: false, webFetch: false })).toEqual([]);
    const both = serverToolsFor({ model: null, webSearch: true, webFetch: true });
    expect(both.map((tool) => tool.name)).toEqual(['web_search', 'web_fetch']);
    for (const tool of both) expect(tool.max_uses).toBeGreaterThan(0);
  });

  it.each(['claude-sonnet-4-6', 'claude-3-5-haiku-latest', 'claude-opus-4-1-20250805'])(
    'takes %s as a model name',
    (name) => expect(modelNameProblem(name)).toBeNull(),
  );

  it.each(['gpt-4o', 'Claude-Sonnet', 'claude-', 'claude-sonnet 4', `claude-${'a'.repeat(81)}`])(
    'refuses %s with a sentence that says how to fix it',
    (name) =>
      expect(modelNameProblem(name)).toMatch(
        /is not a model name: give an Anthropic model id such as claude-sonnet-4-6/,
      ),
  );
});

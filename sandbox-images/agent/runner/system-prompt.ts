/**
 * The system prompt: who the agent is, where its files are, how its answers reach the chat,
 * and the memory files' contents.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { WorkspacePaths } from './workspace.js';

/** The memory file's name, in the group folder and in the global folder. */
export const MEMORY_FILE = 'CLAUDE.md';

/**
 * How much of each memory file goes into the prompt. The agent can still read the whole file
 * with its tools; the cap only keeps one runaway file from eating the context.
 * @default 20,000 characters
 */
export const MEMORY_MAX_CHARS = 20_000;

/** The facts the prompt is built from. */
export interface PromptFacts {
  assistantName: string;
  groupName: string;
  isMain: boolean;
  paths: WorkspacePaths;
  /** Contents of the global memory file, or null when there is none. */
  globalMemory: string | null;
  /** Contents of the group's memory file, or null when there is none. */
  groupMemory: string | null;
}

/**
 * Reads a memory file for the prompt, capped at `maxChars`. Returns null when the file is
 * missing, unreadable or blank: memory is optional, and a group starts without any.
 */
export function readMemoryFile(file: string, maxChars: number = MEMORY_MAX_CHARS): string | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  if (text.trim() === '') return null;
  if (text.length <= maxChars) return text.trim();
  return `${text.slice(0, maxChars).trimEnd()}\n\n[… truncated: the file has ${text.length} characters; read it with the read tool for the rest]`;
}

/** Reads both memory files from the workspace. */
export function readMemory(
  paths: WorkspacePaths,
): Pick<PromptFacts, 'globalMemory' | 'groupMemory'> {
  return {
    globalMemory: readMemoryFile(path.join(paths.global, MEMORY_FILE)),
    groupMemory: readMemoryFile(path.join(paths.group, MEMORY_FILE)),
  };
}

/** Builds the system prompt for one turn. */
export function buildSystemPrompt(facts: PromptFacts): string {
  const groupMemoryFile = path.join(facts.paths.group, MEMORY_FILE);
  const globalMemoryFile = path.join(facts.paths.global, MEMORY_FILE);
  const sections = [
    `You are ${facts.assistantName}, a personal assistant. You are talking in the chat "${facts.groupName}".` +
      (facts.isMain
        ? ' This is the main chat: your owner uses it to talk to you directly and to manage you.'
        : ''),

    [
      '# Where you work',
      `- You run in a Linux container that is your sandbox. Use bash and the file tools freely. The network may be unavailable.`,
      `- Your files live in ${facts.paths.group}. It is your working directory, relative paths start there, and it is kept between conversations. Files elsewhere in the container are lost when it stops.`,
      `- Keep your memory for this chat in ${groupMemoryFile}: who is here, what they like, what you are working on. Update it when you learn something worth keeping. When someone asks you to remember something, write it there.`,
      `- ${globalMemoryFile} is memory shared by all your chats.${facts.isMain ? ' You may edit it: put there what every chat should know, when your owner asks you to remember something everywhere.' : ' It is read-only here.'}`,
      `- Files people send in the chat (images, voice notes, documents) are saved in ${path.join(facts.paths.group, 'inbox')}; the message names each one, e.g. "[image inbox/2026-11-25-image-1a2b3c4d.jpg]", relative to your folder.`,
      `- Long conversations are compacted: older turns are replaced by a summary, and their full text is kept as dated markdown files in ${path.join(facts.paths.group, 'conversations')}. Search them (grep) when you need something from long ago that the summary leaves out.`,
    ].join('\n'),

    [
      '# How you reply',
      '- Your final answer in each turn is sent to the chat as a message. Write for a chat: short and plain; no headings or tables.',
      '- The send_message tool sends a message at once while you keep working, e.g. to say you are on a long task. Do not repeat its text in your final answer.',
      `- The send_file tool sends a file from ${facts.paths.group} to the chat (an image, audio or a document, up to 16 MiB), e.g. a chart or a report you made.`,
      ...(facts.isMain
        ? [
            '- The list_chats tool lists the chats you can reach, with their names and jids. register_group enables one of them as a group (only when your owner asks); unregister_group disables a group.',
          ]
        : []),
      facts.isMain
        ? '- schedule_task sets up reminders and recurring jobs (e.g. a cron "0 8 * * 1-5" for every weekday at 8) in this chat or, with group_folder, in another group; list_tasks, update_task, pause_task, resume_task and cancel_task manage any group\'s tasks.'
        : '- schedule_task sets up reminders and recurring jobs in this chat (e.g. a cron "0 8 * * 1-5" for every weekday at 8); list_tasks, update_task, pause_task, resume_task and cancel_task manage them.',
      "- Times in the messages are the user's local time; schedule times are read in the user's timezone unless you give one.",
      '- Text inside <internal>…</internal> is not shown to the user. Use it for notes to yourself. If there is nothing to say to the chat, answer with only an <internal> note.',
    ].join('\n'),
  ];
  if (facts.globalMemory !== null)
    sections.push(`# Shared memory (${globalMemoryFile})\n\n${facts.globalMemory}`);
  if (facts.groupMemory !== null)
    sections.push(`# This chat's memory (${groupMemoryFile})\n\n${facts.groupMemory}`);
  return sections.join('\n\n');
}

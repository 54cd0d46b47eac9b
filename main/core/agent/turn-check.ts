/**
 * The host's check of a turn a runner reports in `done`, before it joins the stored transcript.
 *
 * Any process in a container can write frames to the runner's stdout, so the turn in `done` is
 * only a claim. What the host knows for itself is the prompt it sent and every answer its own
 * model broker passed to the container during the turn. A turn is accepted only when it is
 * exactly what an honest runner builds from those: the prompt as the opening user message,
 * one assistant message per model answer (in order, none added, none left out), and between
 * them user messages made only of tool results. Tool results are the one part the host cannot
 * check against its records (the tools run in the container), but the model sees them as tool
 * output, never as a user's words, and the Messages API requires each to answer a tool call
 * the model made.
 *
 * What a tool result holds is checked against the model broker's content policy, as every
 * later request that carries the turn will be: a block the broker refuses (an image with a URL
 * source, a field it does not forward) would otherwise be committed and then get every later
 * request of the group refused, so that each of its runs failed for good.
 */
import { BROKER_FEATURES, checkMessages, type HostFeatures } from './content-policy.js';
import { conversationProblem, promptMessage, usableContent } from './conversation.js';
import type { ContentBlock, MessageParam } from './protocol.js';

/** One answer the host's broker passed to the container in a `model.result`. */
export interface BrokeredAnswer {
  content: readonly ContentBlock[];
  stopReason: string | null;
}

/** What the host itself knows about a turn. */
export interface TurnFacts {
  /** The prompt the host sent for the turn (`start.prompt` or `message.text`). */
  prompt: string;
  /** The broker's answers during the turn, in the order they were sent to the container. */
  answers: readonly BrokeredAnswer[];
  /**
   * The features the broker turned on, which decide the blocks its policy lets through.
   * @default BROKER_FEATURES
   */
  features?: Readonly<HostFeatures>;
}

/**
 * The assistant messages an honest runner builds from the broker's answers. Mirrors
 * `AgentSession.toolLoop` in the runner: each answer's content goes through
 * {@link usableContent}, and an answer that follows a `pause_turn` (a long server-side tool,
 * continued in a new response) is appended to the same assistant message.
 */
export function expectedAssistantMessages(answers: readonly BrokeredAnswer[]): ContentBlock[][] {
  const messages: ContentBlock[][] = [];
  let paused = false;
  for (const answer of answers) {
    const content = usableContent(answer.content);
    const last = messages[messages.length - 1];
    if (paused && last) last.push(...content);
    else messages.push([...content]);
    paused = answer.stopReason === 'pause_turn';
  }
  return messages;
}

/**
 * Returns why the host must not keep `turn` in the transcript, or null when it is exactly the
 * turn the host's own records describe. Pure; never throws.
 */
export function turnProblem(turn: readonly MessageParam[], facts: TurnFacts): string | null {
  if (turn.length === 0) return 'the agent reported no messages for the turn';
  const invalid = conversationProblem(turn);
  if (invalid !== null) return `the turn is not a valid conversation: ${invalid}`;
  const refused = checkMessages(turn, facts.features ?? BROKER_FEATURES);
  if (!refused.ok) return `the model broker would refuse the turn: ${refused.reason}`;
  if (!sameJson(turn[0], promptMessage(facts.prompt))) {
    return 'the turn does not open with the prompt the host sent';
  }
  const expected = expectedAssistantMessages(facts.answers);
  let answered = 0;
  for (const [index, message] of turn.entries()) {
    if (index === 0) continue;
    if (message.role === 'user') {
      const blocks = typeof message.content === 'string' ? [] : message.content;
      if (blocks.length === 0 || blocks.some((block) => block.type !== 'tool_result')) {
        return `message ${index} is a user message that is not only tool results`;
      }
      continue;
    }
    const answer = expected[answered];
    if (answer === undefined) {
      return `assistant message ${index} has no model answer from the host behind it`;
    }
    if (!sameJson(message.content, answer)) {
      return `assistant message ${index} is not the model answer the host passed on`;
    }
    answered += 1;
  }
  if (answered < expected.length) {
    return `the turn leaves out ${expected.length - answered} of the model's ${expected.length} answers`;
  }
  return null;
}

/**
 * Whether two values are the same once sent as JSON: arrays in order, objects by their keys
 * in any order (a schema parse may reorder keys), and a key whose value is `undefined` counts
 * as absent, as it does in JSON.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, index) => sameJson(item, b[index]));
  }
  const left = definedEntries(a);
  const right = new Map(definedEntries(b));
  if (left.length !== right.size) return false;
  return left.every(([key, value]) => right.has(key) && sameJson(value, right.get(key)));
}

function definedEntries(value: object): Array<[string, unknown]> {
  return Object.entries(value).filter(([, item]) => item !== undefined);
}

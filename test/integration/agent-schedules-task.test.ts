/**
 * "Remind me every weekday at 8 to stretch", end to end without Docker: a message in the local
 * chat, the real Core, the real runner bundle as a child process (ProcessRuntime), the real
 * model broker against the fake Messages API, which answers with a schedule_task tool call.
 * The task must then exist as a cron task in that group, in the user's timezone, as
 * `clawbar tasks list` shows it (TaskAdmin.list and view), and the model must have been told.
 */
import { describe, expect, it } from 'vitest';
import { lastUserText, textTurn, toolUseTurn } from '../fakes/anthropic-api.js';
import { runnerSuite } from '../helpers/runner-suite.js';
import { processCore } from '../helpers/unit-core.js';

const API_KEY = 'sk-ant-test-schedule-task';
const REPLY_TIMEOUT_MS = 20_000;

const suite = runnerSuite(API_KEY);

describe('the agent schedules a task through its host tools', () => {
  it('turns "remind me every weekday at 8 to stretch" into a cron task in the group, in the user timezone', async () => {
    const { core, close } = processCore({
      prefix: 'clawbar-schedule-tool-',
      api: { url: suite.fake.url, apiKey: API_KEY },
      config: { timezone: 'Europe/Berlin' },
    });
    suite.defer(close);
    await core.start();
    const group = core.addGroup({ name: 'Family' });

    let toolResult = '';
    suite.fake.script([
      (request) => {
        // The model is offered the tool, and the system prompt says how times are read.
        expect(request.body.tools?.map((tool) => tool.name)).toContain('schedule_task');
        expect(JSON.stringify(request.body.system)).toContain("the user's timezone");
        return toolUseTurn(
          'schedule_task',
          { cron: '0 8 * * 1-5', prompt: 'Remind the user to stretch.' },
          { id: 'toolu_schedule' },
        );
      },
      (request) => {
        toolResult = lastUserText(request);
        return textTurn('Done: every weekday at 8 I will remind you to stretch.');
      },
    ]);

    const posted = core.postLocal(
      'Family',
      'Alice',
      '@Andy remind me every weekday at 8 to stretch',
    );
    const reply = await core.waitForReply(group.jid, posted.message.seq, REPLY_TIMEOUT_MS);
    expect(reply.replies.map((message) => message.text)).toEqual([
      'Done: every weekday at 8 I will remind you to stretch.',
    ]);

    const { tasks, unreadable } = core.tasks.list();
    expect(unreadable).toEqual([]);
    expect(tasks).toHaveLength(1);
    const task = tasks[0]!;
    expect(task).toMatchObject({
      groupJid: group.jid,
      prompt: 'Remind the user to stretch.',
      schedule: { kind: 'cron', expr: '0 8 * * 1-5', timezone: 'Europe/Berlin' },
      timezone: 'Europe/Berlin',
      status: 'active',
      createdBy: `agent:${group.folder}`,
    });
    const view = core.tasks.view(task);
    expect(view).toMatchObject({
      group: { jid: group.jid, folder: group.folder },
      schedule: 'every weekday at 08:00 (Europe/Berlin)',
    });
    // 08:00 Berlin time, whichever weekday comes next and whether it is CET or CEST.
    expect(view.nextRunLocal).toMatch(/^\d{4}-\d\d-\d\d 08:00 CES?T$/);
    expect(toolResult).toBe(
      `Scheduled task ${task.id} for group ${group.folder}: every weekday at 08:00 (Europe/Berlin); ` +
        `next run ${view.nextRunLocal} (${view.nextRunUtc}); context group; the result is posted to the chat.`,
    );
  });
});

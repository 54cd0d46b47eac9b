/**
 * The WhatsApp commands: `clawbar chats`, `clawbar pair`, `clawbar unlink`. Loaded on demand
 * by index.ts (the QR renderer is loaded only when a QR arrives).
 *
 * Chat names, QR payloads and pairing codes come from WhatsApp through serve: they are printed
 * only after control and direction characters are taken out, so a chat named with escape
 * sequences cannot repaint the terminal.
 */
import type { ChatView, UnlinkView } from '../core/control/handlers.js';
import type { ControlProgress } from '../core/control/protocol.js';
import { withControl, type ControlLike } from './control.js';
import { CliError, type Output } from './output.js';

/** How the commands reach serve and the terminal; tests pass their own. */
export interface WhatsAppCliDeps {
  withControl<T>(fn: (control: ControlLike) => Promise<T>): Promise<T>;
  /** Where QR codes, codes and JSON lines go. @default process.stdout */
  stdout: { write(text: string): unknown };
  /** Where progress lines go. @default process.stderr */
  stderr: { write(text: string): unknown };
  /** Draws a QR payload for a terminal. @default the `qrcode` package, small */
  drawQr(payload: string): Promise<string>;
}

function defaultDeps(): WhatsAppCliDeps {
  return {
    withControl,
    stdout: process.stdout,
    stderr: process.stderr,
    async drawQr(payload) {
      const QRCode = (await import('qrcode')).default;
      return QRCode.toString(payload, { type: 'terminal', small: true });
    },
  };
}

/** Text from WhatsApp, fit for a terminal: no control, format or direction characters. */
export function terminalSafe(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, ' ');
}

function chatLine(chat: ChatView): string {
  const name = terminalSafe(chat.name).slice(0, 28);
  const last = chat.lastActivity ? chat.lastActivity.replace('T', ' ').slice(0, 16) : '-';
  const enabled = chat.enabled ? `enabled (group ${terminalSafe(chat.group ?? '')})` : '-';
  return `${name.padEnd(28)} ${chat.kind.padEnd(6)} ${terminalSafe(chat.jid).padEnd(36)} ${last.padEnd(16)} ${enabled}`;
}

/** `clawbar chats`: every chat the channels know, with whether it is enabled as a group. */
export async function chatsCommand(
  out: Output,
  deps: Pick<WhatsAppCliDeps, 'withControl'> = defaultDeps(),
): Promise<void> {
  const chats = (await deps.withControl((c) => c.request('chats', {}))) as ChatView[];
  out.print(chats, () =>
    chats.length === 0
      ? 'no chats yet; once WhatsApp is paired (`clawbar pair`), the chats it sees appear here'
      : [
          `${'NAME'.padEnd(28)} ${'KIND'.padEnd(6)} ${'JID'.padEnd(36)} ${'LAST ACTIVITY'.padEnd(16)} ENABLED`,
          ...chats.map(chatLine),
          '',
          'enable a chat with `clawbar groups add --name N --jid JID`',
        ].join('\n'),
  );
}

/**
 * `clawbar pair [--phone NUMBER]`: asks serve to link a phone and shows each QR code (drawn
 * in the terminal) or the pairing code, until the phone is linked (exit 0) or Ctrl-C. With
 * `--json`, one JSON object a line: `{"qr": …}`, `{"pairingCode": …}`, `{"state": "open"}`.
 */
export async function pairCommand(
  opts: { phone?: string },
  out: Output,
  overrides: Partial<WhatsAppCliDeps> = {},
): Promise<number> {
  const deps = { ...defaultDeps(), ...overrides };
  let phone: string | undefined;
  if (opts.phone !== undefined) {
    const { normalizePhoneNumber, InvalidPhoneNumberError } =
      await import('../core/channels/whatsapp-control.js');
    try {
      phone = normalizePhoneNumber(opts.phone);
    } catch (err) {
      if (err instanceof InvalidPhoneNumberError) throw new CliError(`--phone: ${err.message}`);
      throw err;
    }
  }
  const jsonLine = (value: unknown): void => {
    deps.stdout.write(`${JSON.stringify(value)}\n`);
  };
  // QR codes are drawn asynchronously; a chain keeps them (and the final line) in order.
  let shown: Promise<void> = Promise.resolve();
  let qrCount = 0;
  const show = (update: ControlProgress): void => {
    shown = shown
      .then(() => showUpdate(update))
      .catch((err: unknown) => {
        deps.stderr.write(
          `clawbar: could not draw the QR code (${err instanceof Error ? err.message : String(err)})\n`,
        );
      });
  };
  const showUpdate = async (update: ControlProgress): Promise<void> => {
    switch (update.stage) {
      case 'qr': {
        qrCount++;
        if (out.json) return jsonLine({ qr: update.text });
        const drawn = await deps.drawQr(update.text);
        deps.stdout.write(
          `${qrCount === 1 ? '' : '\nThe code was refreshed; scan this one:\n'}${drawn}\n` +
            'Scan it with WhatsApp on your phone: Settings → Linked devices → Link a device.\n',
        );
        return;
      }
      case 'pairing-code': {
        const code = terminalSafe(update.text);
        if (out.json) return jsonLine({ pairingCode: code });
        deps.stdout.write(
          `Pairing code: ${code}\nOn your phone: WhatsApp → Settings → Linked devices → Link a device → Link with phone number instead, and type it.\n`,
        );
        return;
      }
      case 'connecting':
        if (out.json) return jsonLine({ state: 'connecting' });
        deps.stderr.write(`${terminalSafe(update.text)}\n`);
        return;
      default:
        return;
    }
  };
  await deps.withControl((c) =>
    c.request('whatsapp.pair', phone === undefined ? {} : { phone }, { onProgress: show }),
  );
  await shown;
  if (out.json) jsonLine({ state: 'open' });
  else deps.stdout.write('paired\n');
  return 0;
}

/** `clawbar unlink`: serve logs WhatsApp out and wipes its stored auth state. */
export async function unlinkCommand(
  out: Output,
  deps: Pick<WhatsAppCliDeps, 'withControl'> = defaultDeps(),
): Promise<void> {
  const result = (await deps.withControl((c) => c.request('whatsapp.unlink', {}))) as UnlinkView;
  out.print(
    result,
    () =>
      'unlinked: WhatsApp is logged out and its stored keys are wiped; link a phone again with `clawbar pair`',
  );
}

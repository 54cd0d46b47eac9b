/**
 * The WhatsApp channel as serve and the app run it: saving media into the group's `inbox/`,
 * splitting long replies, and the controls (`clawbar pair`, `unlink`, `status`, the tray) that
 * reach it through {@link WhatsAppControl}.
 */
import path from 'node:path';

import type { ClawbarConfig } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { Store } from '../../store/index.js';
import type { WhatsAppControl } from '../whatsapp-control.js';
import { saveInboundMedia } from './media.js';
import { splitForWhatsApp } from './outbound.js';
import { WhatsAppChannel, type WhatsAppChannelDeps } from './whatsapp-channel.js';

export function whatsappChannelFor(
  deps: {
    store: Store;
    config: Pick<ClawbarConfig, 'waUrl' | 'assistantName' | 'groupsDir'>;
    log: Logger;
  } & Pick<WhatsAppChannelDeps, 'socketFactory'>,
): { channel: WhatsAppChannel; control: WhatsAppControl } {
  const { config } = deps;
  const channel = new WhatsAppChannel({
    store: deps.store,
    config,
    log: deps.log,
    ...(deps.socketFactory ? { socketFactory: deps.socketFactory } : {}),
    splitText: (text) => splitForWhatsApp(text),
    saveMedia: ({ media, message, group, download }) =>
      saveInboundMedia({
        groupDir: path.join(config.groupsDir, group.folder),
        kind: media.kind,
        mimetype: media.mimetype,
        ...(media.fileName !== undefined ? { fileName: media.fileName } : {}),
        ...(media.declaredBytes !== undefined ? { declaredBytes: media.declaredBytes } : {}),
        timestamp: Number(message.messageTimestamp ?? 0) * 1000 || Date.now(),
        messageId: message.key.id ?? '',
        download,
      }),
  });
  const control: WhatsAppControl = {
    state: () => channel.state,
    startPairing: ({ phone }) => channel.pair(phone !== undefined ? { phoneNumber: phone } : {}),
    unlink: () => channel.unlink(),
    lastDisconnect: () => {
      const last = channel.lastDisconnect;
      if (!last) return null;
      return {
        reason: last.reason,
        at: last.at,
        ...(last.code !== undefined ? { code: last.code } : {}),
      };
    },
  };
  return { channel, control };
}

/** Chats and messages. */
import type { Db } from './database.js';
import type { Chat, ChannelName, NewMessage, StoredMessage } from './types.js';

interface MessageRow {
  seq: number;
  chat_jid: string;
  id: string;
  sender: string;
  sender_name: string;
  text: string;
  timestamp: number;
  from_me: number;
  from_bot: number;
  quoted_id: string | null;
  media_ref: string | null;
  turn_id: string | null;
}

interface ChatRow {
  jid: string;
  name: string;
  channel: ChannelName;
  is_group: number;
  last_activity: number | null;
}

function toMessage(row: MessageRow): StoredMessage {
  return {
    seq: row.seq,
    chatJid: row.chat_jid,
    id: row.id,
    sender: row.sender,
    senderName: row.sender_name,
    text: row.text,
    timestamp: row.timestamp,
    fromMe: row.from_me === 1,
    fromBot: row.from_bot === 1,
    quotedId: row.quoted_id,
    mediaRef: row.media_ref,
    turnId: row.turn_id,
  };
}

function toChat(row: ChatRow): Chat {
  return {
    jid: row.jid,
    name: row.name,
    channel: row.channel,
    isGroup: row.is_group === 1,
    lastActivity: row.last_activity,
  };
}

export function messageQueries(db: Db) {
  // The later of the two times; unknown stays unknown (never 0, which would show as 1970). A
  // multi-argument MAX is NULL when either is, hence the COALESCE.
  const upsertChat = db.prepare(`
    INSERT INTO chats (jid, name, channel, is_group, last_activity)
    VALUES (@jid, @name, @channel, @isGroup, @lastActivity)
    ON CONFLICT (jid) DO UPDATE SET
      name = excluded.name,
      last_activity = COALESCE(
        MAX(chats.last_activity, excluded.last_activity),
        chats.last_activity,
        excluded.last_activity)`);
  const getChat = db.prepare(`SELECT * FROM chats WHERE jid = ?`);
  const allChats = db.prepare(
    `SELECT * FROM chats ORDER BY COALESCE(last_activity, 0) DESC, name COLLATE NOCASE`,
  );
  const insert = db.prepare(`
    INSERT INTO messages (chat_jid, id, sender, sender_name, text, timestamp, from_me, from_bot, quoted_id, media_ref, turn_id)
    VALUES (@chatJid, @id, @sender, @senderName, @text, @timestamp, @fromMe, @fromBot, @quotedId, @mediaRef, @turnId)
    ON CONFLICT (chat_jid, id) DO NOTHING`);
  const touchChat = db.prepare(
    `UPDATE chats SET last_activity = MAX(COALESCE(last_activity, 0), ?) WHERE jid = ?`,
  );
  const bySeq = db.prepare(`SELECT * FROM messages WHERE seq = ?`);
  const byId = db.prepare(`SELECT * FROM messages WHERE chat_jid = ? AND id = ?`);
  const since = db.prepare(
    `SELECT * FROM messages WHERE chat_jid = ? AND seq > ? ORDER BY seq LIMIT ?`,
  );
  const recent = db.prepare(
    `SELECT * FROM (SELECT * FROM messages WHERE chat_jid = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
  );
  const byTurn = db.prepare(
    `SELECT * FROM messages WHERE turn_id = ? AND from_bot = 1 ORDER BY seq`,
  );

  return {
    upsertChat(chat: Chat): void {
      upsertChat.run({ ...chat, isGroup: chat.isGroup ? 1 : 0 });
    },
    getChat(jid: string): Chat | undefined {
      const row = getChat.get(jid) as ChatRow | undefined;
      return row && toChat(row);
    },
    /** Every chat a channel has told of, the most recently active first. */
    listChats(): Chat[] {
      return (allChats.all() as ChatRow[]).map(toChat);
    },
    /**
     * Stores a message once. A repeat of the same (chat, id) is ignored, which makes
     * channel redelivery harmless. Returns the stored row and whether it is new.
     * The repeat is looked up first: an INSERT that hits the conflict still uses up an
     * AUTOINCREMENT seq and writes sqlite_sequence, on every redelivery.
     */
    insertMessage: db.transaction(
      (msg: NewMessage): { message: StoredMessage; inserted: boolean } => {
        const known = byId.get(msg.chatJid, msg.id) as MessageRow | undefined;
        if (known) return { message: toMessage(known), inserted: false };
        const info = insert.run({
          chatJid: msg.chatJid,
          id: msg.id,
          sender: msg.sender,
          senderName: msg.senderName,
          text: msg.text,
          timestamp: msg.timestamp,
          fromMe: msg.fromMe ? 1 : 0,
          fromBot: msg.fromBot ? 1 : 0,
          quotedId: msg.quotedId ?? null,
          mediaRef: msg.mediaRef ?? null,
          turnId: msg.turnId ?? null,
        });
        if (info.changes === 1) {
          touchChat.run(msg.timestamp, msg.chatJid);
          return {
            message: toMessage(bySeq.get(info.lastInsertRowid) as MessageRow),
            inserted: true,
          };
        }
        const existing = byId.get(msg.chatJid, msg.id) as MessageRow;
        return { message: toMessage(existing), inserted: false };
      },
    ),
    /** Messages of a chat after `afterSeq`, oldest first. */
    messagesSince(chatJid: string, afterSeq: number, limit = 500): StoredMessage[] {
      return (since.all(chatJid, afterSeq, limit) as MessageRow[]).map(toMessage);
    },
    /** The last `limit` messages of a chat, oldest first. */
    recentMessages(chatJid: string, limit: number): StoredMessage[] {
      return (recent.all(chatJid, limit) as MessageRow[]).map(toMessage);
    },
    /** What the assistant sent during one turn. */
    messagesOfTurn(turnId: string): StoredMessage[] {
      return (byTurn.all(turnId) as MessageRow[]).map(toMessage);
    },
  };
}

/**
 * A minimal WebSocket server (RFC 6455) on 127.0.0.1, just enough for Baileys' client:
 * binary frames in both directions, ping/pong and close.
 *
 * Written here rather than importing `ws` because `ws` is only a transitive dependency of
 * Baileys (no types, no pinned version of ours), and the fake needs little of it.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Larger frames than this from the client are treated as hostile and end the connection. */
const MAX_FRAME_BYTES = 16 * 1024 * 1024;

const OPCODE_CONTINUATION = 0x0;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

/** One accepted WebSocket connection. Emits `message` (Buffer) and `close`. */
export class FakeWsConnection extends EventEmitter<{ message: [Buffer]; close: [] }> {
  private pending: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private closed = false;

  constructor(private readonly socket: Socket) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.markClosed());
    socket.on('error', () => this.markClosed());
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Sends one binary message. Does nothing once the connection has closed. */
  send(payload: Buffer): void {
    if (this.closed) return;
    this.socket.write(encodeFrame(OPCODE_BINARY, payload));
  }

  /** Ends the connection politely, with a close frame. */
  close(code = 1000): void {
    if (this.closed) return;
    const body = Buffer.alloc(2);
    body.writeUInt16BE(code);
    this.socket.end(encodeFrame(OPCODE_CLOSE, body));
    this.markClosed();
  }

  /** Cuts the TCP connection without a close frame, as a network drop would. */
  destroy(): void {
    this.socket.destroy();
    this.markClosed();
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    for (;;) {
      const frame = decodeFrame(this.pending);
      if (frame === 'incomplete') return;
      if (frame === 'invalid') {
        this.destroy();
        return;
      }
      this.pending = this.pending.subarray(frame.consumed);
      this.onFrame(frame.fin, frame.opcode, frame.payload);
      if (this.closed) return;
    }
  }

  private onFrame(fin: boolean, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case OPCODE_PING:
        this.socket.write(encodeFrame(OPCODE_PONG, payload));
        return;
      case OPCODE_PONG:
        return;
      case OPCODE_CLOSE:
        this.close();
        return;
      case OPCODE_CONTINUATION:
      case OPCODE_BINARY:
      case 0x1:
        this.fragments.push(payload);
        if (fin) {
          const message = Buffer.concat(this.fragments);
          this.fragments = [];
          this.emit('message', message);
        }
        return;
      default:
        this.destroy();
    }
  }
}

type DecodedFrame = { fin: boolean; opcode: number; payload: Buffer; consumed: number };

function decodeFrame(buf: Buffer): DecodedFrame | 'incomplete' | 'invalid' {
  if (buf.length < 2) return 'incomplete';
  const b0 = buf[0]!;
  const b1 = buf[1]!;
  const masked = (b1 & 0x80) !== 0;
  if (!masked) return 'invalid'; // clients must mask (RFC 6455 §5.1)
  let length = b1 & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buf.length < 4) return 'incomplete';
    length = buf.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buf.length < 10) return 'incomplete';
    const big = buf.readBigUInt64BE(2);
    if (big > BigInt(MAX_FRAME_BYTES)) return 'invalid';
    length = Number(big);
    offset = 10;
  }
  if (length > MAX_FRAME_BYTES) return 'invalid';
  if (buf.length < offset + 4 + length) return 'incomplete';
  const mask = buf.subarray(offset, offset + 4);
  const payload = Buffer.from(buf.subarray(offset + 4, offset + 4 + length));
  for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i % 4]!;
  return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload, consumed: offset + 4 + length };
}

function encodeFrame(opcode: number, payload: Buffer): Buffer {
  let header: Buffer;
  if (payload.length < 126) {
    header = Buffer.from([0x80 | opcode, payload.length]);
  } else if (payload.length < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([header, payload]);
}

/** A listening WebSocket server; `onConnection` gets each upgraded connection. */
export type FakeWsServer = {
  port: number;
  close(): Promise<void>;
};

export async function startWsServer(
  onConnection: (conn: FakeWsConnection) => void,
  /** Plain HTTP requests (media downloads); without it they get 426. */
  onRequest?: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<FakeWsServer> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    if (onRequest) return onRequest(req, res);
    res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket upgrade required\n');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('upgrade', (req, socket: Socket) => {
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      return;
    }
    const accept = createHash('sha1')
      .update(key + WS_GUID)
      .digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\n' +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    onConnection(new FakeWsConnection(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

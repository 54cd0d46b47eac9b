/**
 * A Unix-socket proxy in front of the real Docker engine socket, for fault-injection tests: it
 * can cut every connection (the engine "went away"), wedge (the engine accepts but never
 * answers) and come back, while the engine itself keeps running for everyone else.
 *
 * It pipes raw bytes both ways and knows nothing of HTTP, so keep-alive connections and the
 * hijacked attach streams (an HTTP upgrade, then a bidirectional byte stream with half-close)
 * pass through unchanged.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The engine socket the proxy forwards to. */
export const ENGINE_SOCKET = '/var/run/docker.sock';

/** Unix socket paths are limited to 108 bytes (sun_path), terminating NUL included. */
const MAX_SOCKET_PATH = 107;

export interface DockerProxy {
  /** Point a `DockerRuntime` (or `new Docker({ socketPath })`) here. */
  readonly socketPath: string;
  /**
   * The engine goes away: every open connection is destroyed (both directions) and the proxy
   * stops listening, so new connections fail with ENOENT. A client that reuses a keep-alive
   * connection before it has read the close (the same tick) fails with EPIPE or ECONNRESET.
   */
  cut(): Promise<void>;
  /**
   * The engine comes back: listens again on the same path (if cut) and forwards every open
   * connection, including those stalled by {@link hang}.
   */
  restore(): Promise<void>;
  /**
   * The engine wedges: connections are still accepted, but nothing is forwarded either way, on
   * new connections and on the ones already open (keep-alive clients reuse those).
   */
  hang(): void;
  /** Destroys every connection, stops listening and removes the socket and its directory. */
  close(): Promise<void>;
}

export interface DockerProxyOptions {
  /** @default ENGINE_SOCKET */
  target?: string;
}

/** One client connection and, once forwarding, its connection to the engine. */
interface Link {
  client: net.Socket;
  engine?: net.Socket;
  /** Whether bytes are being piped both ways now (false while hung). */
  flowing: boolean;
}

/**
 * Starts a proxy listening on `<dir>/cbp-XXXXXX/docker.sock`.
 * @param dir parent of the proxy's temp dir; @default os.tmpdir(), or /tmp when that is too
 * long for a Unix socket path
 */
export async function startDockerProxy(
  dir?: string,
  options: DockerProxyOptions = {},
): Promise<DockerProxy> {
  const target = options.target ?? ENGINE_SOCKET;
  const parent = dir ?? (os.tmpdir().length > 60 ? '/tmp' : os.tmpdir());
  const tempDir = await fs.mkdtemp(path.join(parent, 'cbp-'));
  const socketPath = path.join(tempDir, 'docker.sock');
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    await fs.rm(tempDir, { recursive: true, force: true });
    throw new Error(`socket path too long for a Unix socket: ${socketPath}`);
  }

  const links = new Set<Link>();
  let hung = false;
  let server: net.Server | undefined;

  const drop = (link: Link): void => {
    links.delete(link);
    link.client.destroy();
    link.engine?.destroy();
  };

  /** Starts (or resumes) moving bytes between the client and the engine. */
  const forward = (link: Link): void => {
    if (link.flowing) return;
    link.flowing = true;
    if (!link.engine) {
      // allowHalfOpen: a client's half-close (stdin EOF on an attach) must reach the engine
      // without closing the way back, which still carries the container's output.
      const engine = net.connect({ path: target, allowHalfOpen: true });
      link.engine = engine;
      engine.on('error', () => drop(link));
      engine.on('close', (hadError) => {
        if (hadError) drop(link);
        else links.delete(link);
      });
    }
    const engine = link.engine;
    // pipe() ends the other side when one side ends: a half-close passes through as one.
    link.client.pipe(engine);
    engine.pipe(link.client);
  };

  /** Stops moving bytes; what is read meanwhile stays buffered until `forward` again. */
  const stall = (link: Link): void => {
    link.flowing = false;
    link.client.unpipe();
    link.engine?.unpipe();
    link.client.pause();
    link.engine?.pause();
  };

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
        const link: Link = { client, flowing: false };
        links.add(link);
        client.on('error', () => drop(link));
        client.on('close', (hadError) => {
          if (hadError || !link.engine) drop(link);
        });
        if (!hung) forward(link);
      });
      s.once('error', reject);
      s.listen(socketPath, () => {
        s.off('error', reject);
        server = s;
        resolve();
      });
    });

  const stopListening = async (): Promise<void> => {
    const s = server;
    server = undefined;
    if (s) {
      // close() stops accepting at once; its callback waits for open connections, which the
      // caller destroys, so do not wait for it.
      s.close();
    }
    // libuv unlinks a listening socket's path on close; make sure, so connects get ENOENT.
    await fs.rm(socketPath, { force: true });
  };

  const dropAll = (): void => {
    for (const link of [...links]) drop(link);
  };

  await listen();

  return {
    socketPath,
    async cut() {
      await stopListening();
      dropAll();
    },
    async restore() {
      hung = false;
      if (!server) await listen();
      for (const link of links) forward(link);
    },
    hang() {
      hung = true;
      for (const link of links) stall(link);
    },
    async close() {
      await stopListening();
      dropAll();
      await fs.rm(tempDir, { recursive: true, force: true });
    },
  };
}

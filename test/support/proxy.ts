// A TCP proxy on 127.0.0.1 between kwx and PostgreSQL that a test can cut and restore, so an
// outage is simulated without stopping the shared server (other tests keep using it).
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';

export interface CuttableProxy {
  url: string;
  /** Drops every connection and refuses new ones. */
  cut(): Promise<void>;
  /** Accepts connections again on the same port. */
  restore(): Promise<void>;
  /** The next `commit` reaches the server, but its reply never reaches the store (the connection drops). */
  loseNextCommitReply(): void;
  close(): Promise<void>;
}

/** Starts a proxy to the server of `databaseUrl`; its `url` is the same database through the proxy. */
export async function startProxy(databaseUrl: string): Promise<CuttableProxy> {
  const target = new URL(databaseUrl);
  const host = target.hostname || '127.0.0.1';
  const port = Number(target.port || 5432);
  const sockets = new Set<Socket>();
  let loseCommitReply = false;
  const handle = (client: Socket): void => {
    const upstream = tcpConnect({ host, port, noDelay: true });
    client.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    let blackhole = false;
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      if (loseCommitReply && chunk.includes('commit')) {
        loseCommitReply = false;
        blackhole = true;
        setTimeout(drop, 200); // the server has committed by then; the store never hears it
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!blackhole) client.write(chunk);
    });
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  };
  let server: Server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('proxy has no port');
  const proxyPort = addr.port;
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(proxyPort);
  let listening = true;
  const stop = async (): Promise<void> => {
    if (!listening) return;
    listening = false;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of sockets) s.destroy();
    sockets.clear();
    await closed;
  };
  return {
    url: url.toString(),
    cut: stop,
    restore: async () => {
      if (listening) return;
      server = createServer(handle);
      await new Promise<void>((r) => server.listen(proxyPort, '127.0.0.1', r));
      listening = true;
    },
    loseNextCommitReply: () => {
      loseCommitReply = true;
    },
    close: stop,
  };
}

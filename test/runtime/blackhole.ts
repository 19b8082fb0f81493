// A TCP proxy to PostgreSQL that can silently stop forwarding (a network partition: sockets stay
// open, nothing gets through, nobody is told), unlike test/support/proxy.ts, which closes them.
// Connections black-holed once stay dead after heal(); new connections forward again.
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';

export interface BlackholeProxy {
  url: string;
  /** Stops forwarding on every connection, open or new, without closing any. */
  blackhole(): void;
  /** New connections forward again (black-holed ones stay dead, as after a real partition). */
  heal(): void;
  close(): Promise<void>;
}

export async function startBlackholeProxy(databaseUrl: string): Promise<BlackholeProxy> {
  const target = new URL(databaseUrl);
  const host = target.hostname || '127.0.0.1';
  const port = Number(target.port || 5432);
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  let holing = false;
  const dead = new WeakSet<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect({ host, port, noDelay: true });
    client.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    clients.add(client);
    if (holing) dead.add(client);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      clients.delete(client);
    };
    client.on('data', (chunk: Buffer) => {
      if (!dead.has(client)) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!dead.has(client)) client.write(chunk);
    });
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('proxy has no port');
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(addr.port);
  return {
    url: url.toString(),
    blackhole: () => {
      holing = true;
      for (const c of clients) dead.add(c);
    },
    heal: () => {
      holing = false;
    },
    close: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      sockets.clear();
      await closed;
    },
  };
}

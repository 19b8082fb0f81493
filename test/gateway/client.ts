// A small real WebSocket client (the `ws` package) for gateway tests.
import { WebSocket } from 'ws';
import { decode, encode } from '@msgpack/msgpack';

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class Client {
  readonly inbox: Json[] = [];
  private waiters: { pred: (m: Json) => boolean; resolve: (m: Json) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  private nextReq = 1;
  closed: { code: number; reason: string } | null = null;
  private closeWaiters: ((c: { code: number; reason: string }) => void)[] = [];
  /** Called for every message as it arrives (book rebuilders). */
  onMessage: ((m: Json) => void) | null = null;

  private constructor(
    readonly ws: WebSocket,
    readonly msgpack: boolean,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const m = (isBinary ? decode(data) : JSON.parse(data.toString('utf8'))) as Json;
      this.inbox.push(m);
      this.onMessage?.(m);
      for (const w of [...this.waiters]) {
        if (w.pred(m)) {
          clearTimeout(w.timer);
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      for (const f of this.closeWaiters) f(this.closed);
    });
  }

  static async connect(url: string, opts: { protocols?: string[]; msgpack?: boolean } = {}): Promise<Client> {
    const ws = new WebSocket(url, opts.protocols ?? []);
    const c = new Client(ws, opts.msgpack === true);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    });
    await c.next((m) => m.type === 'welcome');
    return c;
  }

  send(m: Json | string | Buffer): void {
    if (typeof m === 'string' || Buffer.isBuffer(m)) this.ws.send(m);
    else if (this.msgpack) this.ws.send(encode(m));
    else this.ws.send(JSON.stringify(m));
  }

  /** Waits for the first message (already received or future) matching pred. */
  next(pred: (m: Json) => boolean, timeoutMs = 10_000, fromIndex = 0): Promise<Json> {
    for (let i = fromIndex; i < this.inbox.length; i++) if (pred(this.inbox[i])) return Promise.resolve(this.inbox[i]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer);
        reject(new Error(`timed out waiting for a message; last: ${JSON.stringify(this.inbox.slice(-3))}`));
      }, timeoutMs);
      this.waiters.push({ pred, resolve, reject, timer });
    });
  }

  /** Sends a request with a fresh req_id and waits for the reply carrying it. */
  async request(m: Json): Promise<Json> {
    const req_id = `r${this.nextReq++}`;
    const reply = this.next((x) => x.req_id === req_id);
    this.send({ ...m, req_id });
    return reply;
  }

  waitClose(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('connection did not close')), timeoutMs);
      this.closeWaiters.push((c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
  }

  close(): void {
    this.ws.close();
  }
}

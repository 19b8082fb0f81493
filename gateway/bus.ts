// The bus between the exchange side (engine events → market data and private updates) and the
// gateways that serve clients. Two implementations with one interface: in-process (REDIS_URL
// unset) and Redis pub/sub via ioredis (several gateway processes). Messages carry their own
// per-channel sequence numbers, set by the publisher, so they survive the hop unchanged; a
// subscriber that sees a gap asks for a snapshot on the control channel.
import { Redis } from 'ioredis';

/** What travels: a protocol message (plain object) already carrying its channel sequence. */
export type BusMessage = Record<string, unknown> & { type: string };
export type BusHandler = (msg: BusMessage) => void;

/** Channel on which subscribers ask the publisher to republish a channel's state. */
export const SNAPSHOT_REQUEST_CHANNEL = 'ctl.snapshot';

export interface Bus {
  readonly kind: 'in-process' | 'redis';
  publish(channel: string, msg: BusMessage): void;
  /** Resolves once messages published after it will be delivered. Returns the unsubscribe function. */
  subscribe(channel: string, fn: BusHandler): Promise<() => void>;
  /** Claims a login nonce for ttl_ms; false if it was already used (replay). Shared by all gateways on Redis. */
  claimNonce(key: string, ttl_ms: number, now_ms: number): Promise<boolean>;
  close(): Promise<void>;
}

class Fanout {
  private readonly handlers = new Map<string, Set<BusHandler>>();
  add(channel: string, fn: BusHandler): () => void {
    let set = this.handlers.get(channel);
    if (set === undefined) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    set.add(fn);
    return () => {
      const s = this.handlers.get(channel);
      if (s === undefined) return;
      s.delete(fn);
      if (s.size === 0) this.handlers.delete(channel);
    };
  }
  has(channel: string): boolean {
    return this.handlers.has(channel);
  }
  deliver(channel: string, msg: BusMessage): void {
    const set = this.handlers.get(channel);
    if (set === undefined) return;
    for (const fn of set) fn(msg);
  }
}

/** Bounded nonce memory for one process. */
class NonceMemory {
  private readonly seen = new Map<string, number>();
  constructor(private readonly max = 1_000_000) {}
  claim(key: string, ttl_ms: number, now_ms: number): boolean {
    const exp = this.seen.get(key);
    if (exp !== undefined && exp > now_ms) return false;
    if (this.seen.size >= this.max) {
      for (const [k, e] of this.seen) {
        if (e <= now_ms || this.seen.size >= this.max) this.seen.delete(k);
        if (this.seen.size < this.max * 0.9) break;
      }
    }
    this.seen.set(key, now_ms + ttl_ms);
    return true;
  }
}

export function createInProcessBus(): Bus {
  const fanout = new Fanout();
  const nonces = new NonceMemory();
  return {
    kind: 'in-process',
    publish(channel, msg) {
      fanout.deliver(channel, msg);
    },
    async subscribe(channel, fn) {
      return fanout.add(channel, fn);
    },
    async claimNonce(key, ttl_ms, now_ms) {
      return nonces.claim(key, ttl_ms, now_ms);
    },
    async close() {},
  };
}

/**
 * Redis pub/sub. `prefix` namespaces every channel and key (one exchange per prefix; tests use a
 * unique prefix each). Two connections: one subscriber (Redis reserves it), one for commands.
 * Redis keeps the order of messages from one publisher connection, so a channel's sequence
 * arrives in order; a lost message (e.g. a subscriber reconnect) shows as a gap and is resynced.
 */
export function createRedisBus(url: string, options: { prefix?: string } = {}): Bus {
  const prefix = options.prefix ?? 'kwx:';
  const pub = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 3, enableAutoPipelining: true });
  const sub = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 3 });
  const fanout = new Fanout();
  sub.on('messageBuffer', (ch: Buffer, payload: Buffer) => {
    const channel = ch.toString('utf8').slice(prefix.length);
    let msg: BusMessage;
    try {
      msg = JSON.parse(payload.toString('utf8')) as BusMessage;
    } catch {
      return;
    }
    fanout.deliver(channel, msg);
  });
  // Errors surface as gaps and resyncs; keep ioredis from printing unhandled error events.
  pub.on('error', () => {});
  sub.on('error', () => {});
  return {
    kind: 'redis',
    publish(channel, msg) {
      void pub.publish(prefix + channel, JSON.stringify(msg)).catch(() => {});
    },
    async subscribe(channel, fn) {
      const first = !fanout.has(channel);
      const off = fanout.add(channel, fn);
      if (first) await sub.subscribe(prefix + channel);
      return () => {
        off();
        if (!fanout.has(channel)) void sub.unsubscribe(prefix + channel).catch(() => {});
      };
    },
    async claimNonce(key, ttl_ms) {
      const r = await pub.set(`${prefix}nonce:${key}`, '1', 'PX', ttl_ms, 'NX');
      return r === 'OK';
    },
    async close() {
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

// The gateway side of market data: one Feed per bus channel this process has subscribers for.
// A book feed keeps a replica of the L2 book (wire strings) so that new subscribers get a
// snapshot at the current sequence, checks that deltas arrive in sequence (a gap or a new
// publisher epoch → ask the publisher for a snapshot, then send it to every subscriber), and
// fans messages out to its subscribers with per-connection backpressure handling.
import { SNAPSHOT_REQUEST_CHANNEL, type Bus, type BusMessage } from './bus.js';
import { bookChecksum, type WireLevel } from './checksum.js';
import { CHECKSUM_DEPTH } from './limits.js';
import type { ChannelKind } from './protocol.js';

/** What a feed needs from a connection. */
export interface FeedSink {
  /** Sends one market-data message; `book` messages may be conflated for a slow consumer. */
  deliver(feed: Feed, msg: BusMessage, frames: FrameCache): void;
  /** Sends a snapshot of a book feed now (subscribe, resync, after conflation). */
  snapshot(feed: Feed, reason: string, req_id?: string | number | null): void;
}

/** Encodes a message once per encoding, for all subscribers. */
export class FrameCache {
  json: string | null = null;
  msgpack: Uint8Array | null = null;
}

const ZERO = /^-?0(\.0+)?$/;

function sortLevels(m: Map<string, string>, desc: boolean): WireLevel[] {
  const out: { p: number; l: WireLevel }[] = [];
  for (const [price, qty] of m) out.push({ p: Number(price), l: { price, qty } });
  out.sort((a, b) => (desc ? b.p - a.p : a.p - b.p));
  return out.map((x) => x.l);
}

export class Feed {
  readonly subscribers = new Set<FeedSink>();
  ready = false;
  /** A gap was seen; the next snapshot goes to every subscriber as a RESYNC. */
  private resyncing = false;
  epoch = '';
  seq = 0;
  private readonly bids = new Map<string, string>();
  private readonly asks = new Map<string, string>();
  /** The last full-state message (ticker, status). */
  last: BusMessage | null = null;
  private off: (() => void) | null = null;

  constructor(
    readonly channel: string,
    readonly kind: ChannelKind,
    readonly zone_id: number,
    readonly interval_id: number,
    private readonly bus: Bus,
    private readonly onResync: (reason: string) => void,
  ) {}

  async open(): Promise<void> {
    this.off = await this.bus.subscribe(this.channel, (m) => this.onMessage(m));
    this.requestSnapshot();
  }

  close(): void {
    this.off?.();
    this.off = null;
  }

  requestSnapshot(): void {
    this.bus.publish(SNAPSHOT_REQUEST_CHANNEL, { type: 'snapshot_request', channel: this.channel });
  }

  /** The replica as a snapshot message (book feeds). */
  snapshotMessage(reason: string): BusMessage {
    const bids = sortLevels(this.bids, true);
    const asks = sortLevels(this.asks, false);
    return {
      type: 'book',
      zone_id: this.zone_id,
      interval_id: this.interval_id,
      epoch: this.epoch,
      seq: this.seq,
      snapshot: true,
      reason,
      bids: bids.map((l) => [l.price, l.qty]),
      asks: asks.map((l) => [l.price, l.qty]),
      checksum: bookChecksum(bids.slice(0, CHECKSUM_DEPTH), asks.slice(0, CHECKSUM_DEPTH)),
      ts: Date.now(),
    };
  }

  private fanout(msg: BusMessage): void {
    const frames = new FrameCache();
    for (const s of this.subscribers) s.deliver(this, msg, frames);
  }

  private loadBook(msg: BusMessage): void {
    this.bids.clear();
    this.asks.clear();
    for (const [p, q] of msg.bids as [string, string][]) this.bids.set(p, q);
    for (const [p, q] of msg.asks as [string, string][]) this.asks.set(p, q);
  }

  private onMessage(msg: BusMessage): void {
    const seq = msg.seq as number;
    const epoch = msg.epoch as string;
    if (this.kind === 'book') {
      if (msg.snapshot === true) {
        // Another gateway's request answered while we are in sync: nothing new.
        if (this.ready && epoch === this.epoch && seq <= this.seq) return;
        const wasReady = this.ready || this.resyncing;
        this.resyncing = false;
        this.loadBook(msg);
        this.epoch = epoch;
        this.seq = seq;
        this.ready = true;
        const reason = wasReady ? 'RESYNC' : 'SUBSCRIBE';
        for (const s of this.subscribers) s.snapshot(this, reason);
        return;
      }
      if (!this.ready) return; // the snapshot we asked for will bring us up to date
      if (epoch !== this.epoch || seq !== this.seq + 1) {
        if (epoch === this.epoch && seq <= this.seq) return; // duplicate
        this.ready = false;
        this.resyncing = true;
        this.onResync('GAP');
        this.requestSnapshot();
        return;
      }
      for (const [side, price, qty] of msg.changes as [string, string, string][]) {
        const m = side === 'BUY' ? this.bids : this.asks;
        if (ZERO.test(qty)) m.delete(price);
        else m.set(price, qty);
      }
      this.seq = seq;
      this.fanout(msg);
      return;
    }
    if (msg.type === 'trades_start') {
      if (!this.ready) {
        this.ready = true;
        this.epoch = epoch;
        this.seq = seq;
      }
      return;
    }
    // A duplicate, or a state answer requested by another gateway while we are in sync.
    if (this.ready && epoch === this.epoch && seq <= this.seq) return;
    if (this.ready && epoch === this.epoch && seq > this.seq + 1) this.onResync('GAP');
    this.ready = true;
    this.epoch = epoch;
    this.seq = seq;
    if (this.kind !== 'trades') this.last = msg;
    this.fanout(msg);
  }
}

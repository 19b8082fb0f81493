// Checkpoint forms (engine/core/snapshot.ts): the binary snapshot decodes to exactly serialize()'s
// output, and the checkpoint hash is a function of that canonical state alone (not of slots,
// pools or history), different whenever the state differs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeSnapshot, isBinarySnapshot, ZoneEngine } from '../../engine/index.js';
import type { PlaceCommand } from '../../engine/index.js';
import { Driver, IV, IV2 } from './helpers.js';
import { streamArb, ZONE } from './stream.js';

describe('binary snapshot', () => {
  it('decodes to serialize() after every command of random streams', () => {
    fc.assert(
      fc.property(streamArb(100, 400), (stream) => {
        const e = new ZoneEngine(ZONE);
        expect(decodeSnapshot(e.snapshotBytes())).toEqual(e.serialize());
        for (const c of stream.commands) {
          e.execute(c);
          const bytes = e.snapshotBytes();
          expect(isBinarySnapshot(bytes)).toBe(true);
          expect(decodeSnapshot(bytes)).toEqual(e.serialize());
        }
      }),
      { numRuns: 15 },
    );
  });

  it('a capture encoded in slices while the engine runs on is the state at the capture, also when captures overlap', () => {
    fc.assert(
      fc.property(
        streamArb(300, 1000),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 64 }),
        (stream, cuts, slice) => {
          const e = new ZoneEngine(ZONE, { initial_order_slots: 16 });
          const at = new Set(cuts.map((c) => Math.floor(c * stream.commands.length)));
          const open: { encoder: ReturnType<ZoneEngine['captureSnapshot']>; want: unknown }[] = [];
          stream.commands.forEach((c, i) => {
            if (at.has(i)) open.push({ encoder: e.captureSnapshot(), want: e.serialize() });
            e.execute(c);
            // every open capture advances one slice per command: they overlap and finish in turn
            for (const job of open) if (!job.encoder.done) job.encoder.step(slice);
          });
          for (const job of open) {
            while (!job.encoder.step(slice));
            expect(decodeSnapshot(job.encoder.bytes())).toEqual(job.want);
          }
          // the buffers handed back by the last finished capture serve the next one
          expect(decodeSnapshot(e.snapshotBytes())).toEqual(e.serialize());
        },
      ),
      { numRuns: 25 },
    );
  });

  it('refuses to hand out a capture that is not fully encoded', () => {
    const d = new Driver();
    for (let i = 0; i < 10; i++) d.place({ user_id: 1 + (i % 3), price_ticks: 90 + i });
    const enc = d.e.captureSnapshot();
    expect(enc.step(3)).toBe(false);
    expect(() => enc.bytes()).toThrow(/not fully encoded/);
    while (!enc.step(3));
    expect(decodeSnapshot(enc.bytes()).orders).toHaveLength(10);
  });

  it('keeps escaped, non-ASCII and lone-surrogate client order ids, negative prices and huge numbers exactly', () => {
    const d = new Driver({ capacity_wh: Number.MAX_SAFE_INTEGER });
    const coids = ['q"uote', 'back\\slash', 'tab\tnl\n', 'ctl\u0001', 'é€', '😀', 'lone\ud800', 'lone\udc00x', '\u2028', 'x'.repeat(64)];
    let price = -500;
    for (const coid of coids) d.place({ user_id: 7, client_order_id: coid, price_ticks: price++, order_id: 2 ** 40 + price });
    d.place({ user_id: 8, side: 'SELL', price_ticks: 900, qty_wh: 999_999, expire_at_ms: 2 ** 50 });
    d.run({ type: 'SET_SELLER_LIMIT', ts_ms: d.ts, user_id: 8, interval_id: IV, limit_wh: 5_000_000 });
    expect(d.e.openOrderCount).toBe(coids.length + 1);
    const back = decodeSnapshot(d.e.snapshotBytes());
    expect(back).toEqual(d.e.serialize());
    expect(back.orders.map((o) => o.client_order_id)).toEqual(expect.arrayContaining(coids));
    expect(ZoneEngine.restore(back).checkpointHash()).toBe(d.e.checkpointHash());
  });

  it('refuses bytes that are not a binary snapshot or are cut short', () => {
    const d = new Driver();
    d.place({ user_id: 1, client_order_id: 'a' });
    const bytes = d.e.snapshotBytes();
    expect(() => decodeSnapshot(bytes.subarray(0, bytes.length - 1))).toThrow(/bytes, its prefix says/);
    expect(() => decodeSnapshot(new Uint8Array([0x82, 0xa1, 0x61, 0x01]))).toThrow(/not a binary engine snapshot/);
    const other = bytes.slice();
    other[0] ^= 0xff;
    expect(isBinarySnapshot(other)).toBe(false);
    // the order section: a varint that never ends, and bytes left after the last order
    const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
    const ordersAt = 16 + dv(bytes).getUint32(4, true);
    const runaway = bytes.slice();
    runaway.fill(0xff, ordersAt);
    expect(() => decodeSnapshot(runaway)).toThrow(/cut short/);
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    dv(longer).setUint32(12, dv(bytes).getUint32(12, true) + 1, true);
    expect(() => decodeSnapshot(longer)).toThrow(/1 bytes after its 1 orders/);
    // a header of another version
    const header = new TextDecoder().decode(bytes.subarray(16, ordersAt)).replace('"version":1', '"version":7');
    const h = new TextEncoder().encode(header);
    const v7 = new Uint8Array(16 + h.length + bytes.length - ordersAt);
    v7.set(bytes.subarray(0, 16));
    v7.set(h, 16);
    v7.set(bytes.subarray(ordersAt), 16 + h.length);
    dv(v7).setUint32(4, h.length, true);
    expect(() => decodeSnapshot(v7)).toThrow(/unsupported engine snapshot version 7/);
  });
});

describe('checkpoint hash', () => {
  it('is a function of serialize() alone and tells every distinct state apart (all prefixes of random streams)', () => {
    fc.assert(
      fc.property(streamArb(100, 300), (stream) => {
        const byState = new Map<string, string>();
        const byHash = new Map<string, string>();
        const e = new ZoneEngine(ZONE);
        const note = (): void => {
          const json = JSON.stringify(e.serialize());
          const h = e.checkpointHash();
          expect(h).toMatch(/^v2:[0-9a-f]{16}$/);
          expect(byState.get(json) ?? h).toBe(h);
          expect(byHash.get(h) ?? json).toBe(json);
          byState.set(json, h);
          byHash.set(h, json);
          // a compacted copy (other slots, fresh pools) hashes the same
          expect(ZoneEngine.restore(e.serialize()).checkpointHash()).toBe(h);
        };
        note();
        for (const c of stream.commands) {
          e.execute(c);
          note();
        }
        expect(byState.size).toBeGreaterThan(1);
      }),
      { numRuns: 15 },
    );
  });

  it('changes with any one field of an open order (same history length, same counters)', () => {
    const base = { order_id: 1, user_id: 1, client_order_id: 'a', price_ticks: 100, qty_wh: 10 } as const;
    const variants: Record<string, Partial<PlaceCommand>> = {
      base: {},
      order_id: { order_id: 2 },
      user_id: { user_id: 2 },
      client_order_id: { client_order_id: 'b' },
      interval_id: { interval_id: IV2 },
      side: { side: 'SELL', source: 'SOLAR' },
      source: { source: 'WIND' },
      order_type: { order_type: 'POST_ONLY' },
      stp: { stp: 'CANCEL_BOTH' },
      price_ticks: { price_ticks: 99 },
      qty_wh: { qty_wh: 11 },
      expire_at_ms: { expire_at_ms: 10_000_000 },
    };
    const hashes = new Map<string, string>();
    for (const [name, v] of Object.entries(variants)) {
      const d = new Driver();
      expect(d.place({ ...base, ...v })[0].type).toBe('ACCEPTED');
      hashes.set(d.e.checkpointHash(), name);
    }
    expect([...hashes.values()]).toEqual(Object.keys(variants));
    // a partial fill: same order, 4 Wh filled by another user's sell (remaining and filled change)
    const d = new Driver();
    d.place({ ...base });
    const before = d.e.checkpointHash();
    d.place({ order_id: 3, user_id: 2, side: 'SELL', source: 'SOLAR', price_ticks: 100, qty_wh: 4 });
    expect(d.e.order(1)?.filled_wh).toBe(4);
    expect(d.e.checkpointHash()).not.toBe(before);
  });
});

// The sequencer's per-zone waiter queue (a ring since 2026-12-03): against a plain array model
// over random pushes, takes, stale drops and restart failures, through wrap-around and growth.
import { describe, expect, it } from 'vitest';
import { WaiterQueue } from '../../engine/runtime/runtime.js';
import type { SubmitResult } from '../../engine/runtime/types.js';
import { mulberry32 as rng } from '../../bench/prng.js';

describe('WaiterQueue', () => {
  it('grows a full ring whose oldest entry is not at slot 0 without losing the order', () => {
    const q = new WaiterQueue();
    const answered: number[] = [];
    const fn = (seq: number) => (_: SubmitResult): void => void answered.push(seq);
    let next = 1;
    for (let i = 0; i < 1000; i++) q.push(next, fn(next++));
    for (let s = 1; s <= 300; s++) q.take(s)!({ ok: true } as unknown as SubmitResult);
    // 700 left from slot 300 on; 2,000 more wrap around the 1,024 slots and grow the ring twice
    for (let i = 0; i < 2000; i++) q.push(next, fn(next++));
    expect(q.size).toBe(2700);
    for (let s = 301; s < next; s++) q.take(s)!({ ok: true } as unknown as SubmitResult);
    expect(answered).toEqual(Array.from({ length: next - 1 }, (_, i) => i + 1));
    expect(q.size).toBe(0);
  });

  it('answers waiters in seq order like an array would, across wrap-around and growth', () => {
    const r = rng(42);
    const q = new WaiterQueue();
    const model: { seq: number; id: number }[] = [];
    const answered: number[] = [];
    const expected: number[] = [];
    const fn = (id: number) => (_: SubmitResult): void => void answered.push(id);
    let next = 1;
    let id = 0;
    for (let step = 0; step < 200_000; step++) {
      const p = r();
      // bursts that grow the ring far past its initial 1,024, then drain it
      const pushBias = Math.floor(step / 20_000) % 2 === 0 ? 0.6 : 0.4;
      if (p < pushBias) {
        q.push(next, fn(id));
        model.push({ seq: next, id });
        next++;
        id++;
      } else if (p < 0.97) {
        // the oldest is answered (sometimes a seq that is not the oldest: nothing)
        const seq = model.length > 0 && r() < 0.95 ? model[0].seq : next + 5;
        const got = q.take(seq);
        if (model.length > 0 && model[0].seq === seq) {
          expect(got).toBeDefined();
          got!({ ok: true } as unknown as SubmitResult);
          expected.push(model.shift()!.id);
        } else expect(got).toBeUndefined();
      } else if (p < 0.985) {
        const below = model.length > 0 ? model[Math.floor(r() * model.length)].seq : next;
        for (const f of q.takeBelow(below)) f({ ok: true } as unknown as SubmitResult);
        while (model.length > 0 && model[0].seq < below) expected.push(model.shift()!.id);
      } else {
        const above = model.length > 0 ? model[Math.floor(r() * model.length)].seq : next;
        // a worker restart fails the waiters above its last result, oldest first (newest last)
        const dropped: number[] = [];
        while (model.length > 0 && model[model.length - 1].seq > above) dropped.unshift(model.pop()!.id);
        for (const f of q.takeAbove(above)) f({ ok: true } as unknown as SubmitResult);
        expected.push(...dropped);
      }
      expect(q.size).toBe(model.length);
    }
    expect(answered).toEqual(expected);
  });
});

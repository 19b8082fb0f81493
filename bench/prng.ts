/**
 * mulberry32: a small, fast, seeded pseudo-random generator returning floats in [0, 1).
 * Benchmarks and tests use it so that every workload and random stream can be replayed from
 * its seed. Not for anything secret.
 */
export function mulberry32(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

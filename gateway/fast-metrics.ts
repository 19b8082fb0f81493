// prom-client resolves a label set by hashing it on every inc()/observe(), even on a child from
// labels(): on the order path that is a measurable share of the CPU per order. These helpers
// resolve the label set once and then update prom-client's own per-label-set record directly
// (same registry, same exposition, same reset()): an increment or a bucket count and a sum.
// If prom-client's internals ever differ from what is expected, they fall back to the public API.
import type { Counter, Histogram } from 'prom-client';

interface HistogramEntry {
  labels: Record<string, string | number>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}
interface CounterEntry {
  labels: Record<string, string | number>;
  value: number;
}

function findEntry<T extends { labels: Record<string, string | number> }>(map: Record<string, T> | undefined, labels: Record<string, string>): T | undefined {
  if (map === undefined || map === null || typeof map !== 'object') return undefined;
  const keys = Object.keys(labels);
  for (const e of Object.values(map)) {
    if (e === null || typeof e !== 'object' || e.labels === undefined) continue;
    if (Object.keys(e.labels).length === keys.length && keys.every((k) => String(e.labels[k]) === labels[k])) return e;
  }
  return undefined;
}

/** An observe(v) for one label set of a histogram. */
export function fastObserver<L extends string>(h: Histogram<L>, labels: Record<L, string>): (v: number) => void {
  const internal = h as unknown as { hashMap?: Record<string, HistogramEntry>; upperBounds?: number[] };
  const slow = (v: number): void => h.observe(labels as never, v);
  const bounds = internal.upperBounds;
  if (!Array.isArray(bounds)) return slow;
  const keys = bounds.map((b) => String(b)); // prom-client keys bucketValues by the bound's string
  let map: Record<string, HistogramEntry> | undefined;
  let entry: HistogramEntry | undefined;
  const resolve = (): boolean => {
    map = internal.hashMap;
    entry = findEntry(map, labels as Record<string, string>);
    if (entry === undefined) {
      h.zero(labels as never);
      map = internal.hashMap;
      entry = findEntry(map, labels as Record<string, string>);
    }
    return entry !== undefined && typeof entry.bucketValues === 'object' && typeof entry.sum === 'number';
  };
  if (!resolve()) return slow;
  return (v: number): void => {
    // reset() replaces the map: find (or make) the label set again
    if ((internal.hashMap !== map || entry === undefined) && !resolve()) return slow(v);
    if (!Number.isFinite(v)) return slow(v); // prom-client's own error
    const e = entry!;
    e.sum += v;
    e.count += 1;
    for (let i = 0; i < bounds.length; i++) {
      if (v <= bounds[i]) {
        e.bucketValues[keys[i]] += 1;
        break;
      }
    }
  };
}

/** An inc() by 1 for one label set of a counter. */
export function fastIncrement<L extends string>(c: Counter<L>, labels: Record<L, string>): () => void {
  const internal = c as unknown as { hashMap?: Record<string, CounterEntry> };
  const slow = (): void => c.inc(labels as never);
  let map: Record<string, CounterEntry> | undefined;
  let entry: CounterEntry | undefined;
  const resolve = (): boolean => {
    map = internal.hashMap;
    entry = findEntry(map, labels as Record<string, string>);
    if (entry === undefined) {
      c.inc(labels as never, 0);
      map = internal.hashMap;
      entry = findEntry(map, labels as Record<string, string>);
    }
    return entry !== undefined && typeof entry.value === 'number';
  };
  if (!resolve()) return slow;
  return (): void => {
    if ((internal.hashMap !== map || entry === undefined) && !resolve()) return slow();
    entry!.value += 1;
  };
}

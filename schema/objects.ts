/**
 * A copy of `base` with `fields` set (added or replaced), the same object `{ ...base, ...fields }`
 * would be, keys in the same order.
 *
 * Why not the spread: on Node 20's V8 an object literal that spreads an object and then adds a
 * property the source does not have (`{ ...cmd, ts_ms }`) leaves the fast clone path: ~1.1-1.6 µs
 * per added property, ~4 µs for `{ ...base, id, amount, code }`, against ~70-200 ns for this
 * (measured with a 1e6-iteration loop; replacing an existing key or spreading last stays fast).
 * Use it on every per-order, per-trade or per-reading path.
 */
export function withFields<T extends object, const F extends object>(base: T, fields: F): T & F {
  return Object.assign(Object.assign({}, base), fields) as T & F;
}

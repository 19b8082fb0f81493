// Exchange-wide ids made from per-zone numbers, so the sequencer never asks the database for one.
/** Order ids and trade ids are zone_id × 2^36 + a per-zone number (the command's seq, the engine's trade number). */
export const ZONE_ID_SHIFT = 2 ** 36;
export const MAX_ZONE_ID = Math.floor(Number.MAX_SAFE_INTEGER / ZONE_ID_SHIFT) - 1;

export function orderIdFor(zone_id: number, seq: number): number {
  return zone_id * ZONE_ID_SHIFT + seq;
}

export function tradeIdFor(zone_id: number, trade_id: number): number {
  return zone_id * ZONE_ID_SHIFT + trade_id;
}

// ledgerFunds' hold move at ACCEPTED (the ledger's bindHold): the hold moves to the order id as it
// is — same amount, the pricing snapshot of the order's time — also when the zone's fee went up in
// between (the buyer is charged at most the fee it was held for; docs/ledger.md), so no order is
// cancelled for a fee change; a replayed ACCEPTED changes nothing.
import { describe, expect, it } from 'vitest';
import { Ledger } from '../../ledger/ledger.js';
import { ledgerFunds, ZONE_ID_SHIFT } from '../../gateway/backend.js';
import type { EngineEvent } from '../../engine/index.js';

const ZONE = 3;
const zoneCfg = (fee_bps: number) => ({ zone_id: ZONE, currency: 'EUR', minor_units: 2, tick_size: '0.0001', fee_bps, fee_per_kwh_minor: 0n });

function accepted(order_id: number, user_id: number, client_order_id: string, price_ticks: number, qty_wh: number): EngineEvent {
  return {
    type: 'ACCEPTED', order_id, user_id, client_order_id, interval_id: 1, side: 'BUY', source: 'ANY', order_type: 'LIMIT', stp: 'CANCEL_NEWEST', price_ticks, qty_wh, seq: 1, expire_at_ms: 0,
  } as unknown as EngineEvent;
}

function setup(deposit_minor: bigint) {
  const ledger = new Ledger();
  ledger.configureZone(zoneCfg(0), 1);
  ledger.openUserAccounts(7, 'EUR', 1);
  ledger.deposit({ transfer_id: 'd7', user_id: 7, currency: 'EUR', amount_minor: deposit_minor }, 1);
  const unfunded: number[] = [];
  const funds = ledgerFunds(ledger, { now: () => 2, onUnfunded: (_z, order_id) => unfunded.push(order_id) });
  return { ledger, funds, unfunded };
}

describe('hold move at ACCEPTED', () => {
  it('unchanged pricing: the hold moves to the order id with the same amount', () => {
    const { ledger, funds, unfunded } = setup(10_000n);
    expect(funds.reserve({ user_id: 7, client_order_id: 'a', zone_id: ZONE, price_ticks: 2500, qty_wh: 2000 })).toBeNull();
    const held = ledger.balances(7, 'EUR').held_minor;
    expect(held).toBeGreaterThan(0n);
    const order_id = ZONE * ZONE_ID_SHIFT + 1;
    funds.apply({ zone_id: ZONE, seq: 1, ts_ms: 2, events: [accepted(order_id, 7, 'a', 2500, 2000)] });
    expect(unfunded).toEqual([]);
    expect(ledger.holds.get(order_id)).toMatchObject({ status: 'OPEN', remaining_minor: held });
    expect(ledger.balances(7, 'EUR').held_minor).toBe(held);
  });

  it('a higher fee since the hold, no money for the difference: the hold still moves as it is, the order is not cancelled; a replay changes nothing', () => {
    // exactly enough for the hold at fee 0
    const probe = setup(1_000_000n);
    probe.funds.reserve({ user_id: 7, client_order_id: 'p', zone_id: ZONE, price_ticks: 2500, qty_wh: 2000 });
    const need0 = probe.ledger.balances(7, 'EUR').held_minor;
    const { ledger, funds, unfunded } = setup(need0);
    expect(funds.reserve({ user_id: 7, client_order_id: 'b', zone_id: ZONE, price_ticks: 2500, qty_wh: 2000 })).toBeNull();
    expect(ledger.balances(7, 'EUR').available_minor).toBe(0n);
    ledger.configureZone(zoneCfg(500), 2); // 5 % fee from now on
    const order_id = ZONE * ZONE_ID_SHIFT + 2;
    funds.apply({ zone_id: ZONE, seq: 1, ts_ms: 2, events: [accepted(order_id, 7, 'b', 2500, 2000)] });
    expect(unfunded).toEqual([]);
    expect(ledger.holds.get(order_id)).toMatchObject({ status: 'OPEN', remaining_minor: need0 });
    expect(ledger.holds.get(order_id)!.pricing.fee_bps).toBe(0);
    expect(ledger.balances(7, 'EUR')).toMatchObject({ held_minor: need0, available_minor: 0n });
    funds.apply({ zone_id: ZONE, seq: 1, ts_ms: 2, events: [accepted(order_id, 7, 'b', 2500, 2000)] });
    expect(ledger.balances(7, 'EUR')).toMatchObject({ held_minor: need0, available_minor: 0n });
  });
});

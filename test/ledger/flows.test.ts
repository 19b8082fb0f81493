import { describe, expect, it } from 'vitest';
import { BUYER, codeOf, newLedger, OTHER, SELLER, T0 } from './fixtures.js';

const bal = (l: ReturnType<typeof newLedger>, u: number) => {
  const b = l.balances(u, 'EUR');
  return [b.available_minor, b.held_minor, b.escrow_minor];
};

function funded() {
  const l = newLedger();
  l.deposit({ transfer_id: 'dep1', user_id: BUYER, currency: 'EUR', amount_minor: 1000n }, T0);
  return l;
}

const fill = { trade_id: 10, order_id: 1, seller_id: SELLER, price_ticks: 2000, qty_wh: 10_000, interval_id: 7, source: 'SOLAR' as const };

describe('buy order holds, fills and releases', () => {
  it('placing a buy order holds price × quantity plus the maximum fee', () => {
    const l = funded();
    expect(l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0)).toEqual({ order_id: 1, held_minor: 261n });
    expect(bal(l, BUYER)).toEqual([739n, 261n, 0n]);
    l.checkInvariants();
  });

  it('an order the buyer cannot afford is INSUFFICIENT_FUNDS and leaves no hold', () => {
    const l = funded();
    expect(codeOf(() => l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 10_000, qty_wh: 10_000 }, T0))).toBe('INSUFFICIENT_FUNDS');
    expect(l.holds.has(1)).toBe(false);
    expect(bal(l, BUYER)).toEqual([1000n, 0n, 0n]);
  });

  it('a fill moves the trade amount to escrow and releases the price improvement', () => {
    const l = funded();
    l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0);
    expect(l.fillBuyOrder(fill, T0)).toEqual({ trade_id: 10, escrow_minor: 211n, released_minor: 50n });
    expect(bal(l, BUYER)).toEqual([789n, 0n, 211n]);
    expect(l.holds.get(1)!.status).toBe('FILLED');
    l.checkInvariants();
  });

  it('a partial fill keeps exactly the rest of the order’s cost held, and cancel releases it', () => {
    const l = funded();
    l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0);
    expect(l.fillBuyOrder({ ...fill, price_ticks: 2500, qty_wh: 4_000 }, T0)).toEqual({ trade_id: 10, escrow_minor: 104n, released_minor: 1n });
    expect(bal(l, BUYER)).toEqual([740n, 156n, 104n]);
    expect(l.releaseBuyOrder({ order_id: 1, reason: 'CANCELLED' }, T0)).toEqual({ order_id: 1, released_minor: 156n });
    expect(bal(l, BUYER)).toEqual([896n, 0n, 104n]);
    expect(l.releaseBuyOrder({ order_id: 1, reason: 'CANCELLED' }, T0)).toEqual({ order_id: 1, released_minor: 156n });
    expect(codeOf(() => l.releaseBuyOrder({ order_id: 1, reason: 'EXPIRED' }, T0))).toBe('ORDER_NOT_OPEN');
    expect(codeOf(() => l.fillBuyOrder({ ...fill, trade_id: 11, qty_wh: 1 }, T0))).toBe('ORDER_NOT_OPEN');
    expect(bal(l, BUYER)).toEqual([896n, 0n, 104n]);
    l.checkInvariants();
  });

  it('fill rejections carry their codes: PRICE_ABOVE_LIMIT, QTY_EXCEEDS_REMAINING, SELF_TRADE, HOLD_NOT_FOUND, ACCOUNT_NOT_FOUND, DUPLICATE_TRANSFER', () => {
    const l = funded();
    l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0);
    expect(codeOf(() => l.fillBuyOrder({ ...fill, price_ticks: 2501 }, T0))).toBe('PRICE_ABOVE_LIMIT');
    expect(codeOf(() => l.fillBuyOrder({ ...fill, qty_wh: 10_001 }, T0))).toBe('QTY_EXCEEDS_REMAINING');
    expect(codeOf(() => l.fillBuyOrder({ ...fill, seller_id: BUYER }, T0))).toBe('SELF_TRADE');
    expect(codeOf(() => l.fillBuyOrder({ ...fill, order_id: 2 }, T0))).toBe('HOLD_NOT_FOUND');
    expect(codeOf(() => l.fillBuyOrder({ ...fill, seller_id: 99 }, T0))).toBe('ACCOUNT_NOT_FOUND');
    expect(codeOf(() => l.fillBuyOrder({ ...fill, price_ticks: -5 }, T0))).toBe('NEGATIVE_PRICE_UNSUPPORTED');
    l.fillBuyOrder({ ...fill, qty_wh: 1_000 }, T0);
    expect(codeOf(() => l.fillBuyOrder({ ...fill, qty_wh: 2_000 }, T0))).toBe('DUPLICATE_TRANSFER');
    expect(codeOf(() => l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2400, qty_wh: 10_000 }, T0))).toBe('DUPLICATE_TRANSFER');
    expect(codeOf(() => l.holdBuyOrder({ order_id: 5, user_id: BUYER, zone_id: 9, limit_price_ticks: 1, qty_wh: 1 }, T0))).toBe('UNKNOWN_ZONE');
    expect(codeOf(() => l.holdBuyOrder({ order_id: 5, user_id: 99, zone_id: 1, limit_price_ticks: 1, qty_wh: 1 }, T0))).toBe('ACCOUNT_NOT_FOUND');
    l.checkInvariants();
  });

  it('retrying a hold or a fill returns the original result and changes nothing', () => {
    const l = funded();
    const h = { order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 };
    l.holdBuyOrder(h, T0);
    const r1 = l.fillBuyOrder({ ...fill, qty_wh: 3_000 }, T0);
    const before = JSON.stringify(l.snapshot());
    expect(l.holdBuyOrder({ ...h }, T0 + 1)).toEqual({ order_id: 1, held_minor: 261n });
    expect(l.fillBuyOrder({ ...fill, qty_wh: 3_000 }, T0 + 1)).toEqual(r1);
    expect(JSON.stringify(l.snapshot())).toBe(before);
  });
});

describe('settlement, disputes and certificates', () => {
  function matched() {
    const l = funded();
    l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0);
    l.fillBuyOrder(fill, T0);
    return l;
  }

  it('settles a shortfall: seller paid minus fee, fee and rounding booked, buyer refunded, certificate for the delivered Wh', () => {
    const l = matched();
    const s = l.settleTrade({ trade_id: 10, delivered_wh: 4_000 }, T0 + 10);
    expect(s).toMatchObject({ buyer_paid_minor: 84n, seller_net_minor: 75n, fee_minor: 8n, rounding_minor: 1n, refund_minor: 127n, certificate_id: 'CERT-10' });
    expect(bal(l, BUYER)).toEqual([916n, 0n, 0n]);
    expect(bal(l, SELLER)).toEqual([75n, 0n, 0n]);
    expect(l.platformBalances('EUR')).toEqual({ fees_minor: 8n, rounding_minor: 1n, external_minor: -1000n });
    expect(l.certificate('CERT-10')).toMatchObject({ owner_id: BUYER, producer_id: SELLER, energy_wh: 4_000, source: 'SOLAR', zone_id: 1, interval_id: 7, status: 'ACTIVE' });
    expect(l.core.transfersInOrder().filter((t) => t.trade_id === 10).map((t) => t.code)).toEqual(['ESCROW', 'RELEASE', 'SETTLE', 'FEE', 'ROUNDING', 'REFUND']);
    l.checkInvariants();
  });

  it('a retried settlement returns the original; a different delivered amount is DUPLICATE_TRANSFER; the certificate is never issued twice', () => {
    const l = matched();
    const s = l.settleTrade({ trade_id: 10, delivered_wh: 4_000 }, T0);
    expect(l.settleTrade({ trade_id: 10, delivered_wh: 4_000 }, T0 + 99)).toBe(s);
    expect(codeOf(() => l.settleTrade({ trade_id: 10, delivered_wh: 5_000 }, T0))).toBe('DUPLICATE_TRANSFER');
    expect(l.certificates.events.length).toBe(1);
    expect(l.certificates.issued_wh_total).toBe(4_000);
  });

  it('no certificate for battery energy or for nothing delivered', () => {
    const l = funded();
    l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0);
    l.fillBuyOrder({ ...fill, qty_wh: 5_000, source: 'BATTERY' }, T0);
    l.fillBuyOrder({ ...fill, trade_id: 11, qty_wh: 5_000, source: 'WIND' }, T0);
    expect(l.settleTrade({ trade_id: 10, delivered_wh: 5_000 }, T0).certificate_id).toBeNull();
    expect(l.settleTrade({ trade_id: 11, delivered_wh: 0 }, T0)).toMatchObject({ certificate_id: null, buyer_paid_minor: 0n });
    expect(l.certificates.byId.size).toBe(0);
    l.checkInvariants();
  });

  it('a disputed trade keeps its escrow until an operator resolves it', () => {
    const l = matched();
    l.disputeTrade({ trade_id: 10, reason: 'meter offline' }, T0);
    expect(codeOf(() => l.settleTrade({ trade_id: 10, delivered_wh: 10_000 }, T0))).toBe('TRADE_DISPUTED');
    expect(bal(l, BUYER)).toEqual([789n, 0n, 211n]);
    const s = l.resolveDispute({ trade_id: 10, delivered_wh: 10_000 }, T0);
    expect(s).toMatchObject({ resolution: 'DISPUTE_RESOLVED', buyer_paid_minor: 211n, refund_minor: 0n });
    expect(codeOf(() => l.resolveDispute({ trade_id: 10, delivered_wh: 9_000 }, T0))).toBe('DUPLICATE_TRANSFER');
    expect(codeOf(() => l.disputeTrade({ trade_id: 10, reason: 'late' }, T0))).toBe('TRADE_NOT_OPEN');
    l.checkInvariants();
  });

  it('trade rejections carry their codes: TRADE_NOT_FOUND, TRADE_NOT_DISPUTED, DELIVERED_EXCEEDS_TRADE, TRADE_NOT_OPEN', () => {
    const l = matched();
    expect(codeOf(() => l.settleTrade({ trade_id: 99, delivered_wh: 1 }, T0))).toBe('TRADE_NOT_FOUND');
    expect(codeOf(() => l.resolveDispute({ trade_id: 10, delivered_wh: 1 }, T0))).toBe('TRADE_NOT_DISPUTED');
    expect(codeOf(() => l.settleTrade({ trade_id: 10, delivered_wh: 10_001 }, T0))).toBe('DELIVERED_EXCEEDS_TRADE');
    expect(l.cancelTrade({ trade_id: 10 }, T0)).toMatchObject({ resolution: 'CANCELLED', refund_minor: 211n });
    expect(bal(l, BUYER)).toEqual([1000n, 0n, 0n]);
    expect(codeOf(() => l.settleTrade({ trade_id: 10, delivered_wh: 1 }, T0))).toBe('TRADE_NOT_OPEN');
    l.checkInvariants();
  });

  it('certificates move to another user, retire for good, and reject moves by non-owners', () => {
    const l = matched();
    l.settleTrade({ trade_id: 10, delivered_wh: 10_000 }, T0);
    expect(codeOf(() => l.transferCertificate({ event_id: 'c1', certificate_id: 'CERT-10', from_user_id: SELLER, to_user_id: OTHER }, T0))).toBe('CERTIFICATE_NOT_OWNED');
    expect(codeOf(() => l.transferCertificate({ event_id: 'c1', certificate_id: 'CERT-404', from_user_id: BUYER, to_user_id: OTHER }, T0))).toBe('CERTIFICATE_NOT_FOUND');
    expect(codeOf(() => l.transferCertificate({ event_id: 'c1', certificate_id: 'CERT-10', from_user_id: BUYER, to_user_id: 77 }, T0))).toBe('ACCOUNT_NOT_FOUND');
    const moved = l.transferCertificate({ event_id: 'c1', certificate_id: 'CERT-10', from_user_id: BUYER, to_user_id: OTHER }, T0);
    expect(l.transferCertificate({ event_id: 'c1', certificate_id: 'CERT-10', from_user_id: BUYER, to_user_id: OTHER }, T0 + 1)).toBe(moved);
    expect(codeOf(() => l.transferCertificate({ event_id: 'c1', certificate_id: 'CERT-10', from_user_id: BUYER, to_user_id: SELLER }, T0))).toBe('DUPLICATE_TRANSFER');
    expect(l.certificatesOf(OTHER).map((c) => c.id)).toEqual(['CERT-10']);
    l.retireCertificate({ event_id: 'r1', certificate_id: 'CERT-10', user_id: OTHER }, T0);
    expect(codeOf(() => l.transferCertificate({ event_id: 'c2', certificate_id: 'CERT-10', from_user_id: OTHER, to_user_id: BUYER }, T0))).toBe('CERTIFICATE_RETIRED');
    expect(codeOf(() => l.retireCertificate({ event_id: 'r2', certificate_id: 'CERT-10', user_id: OTHER }, T0))).toBe('CERTIFICATE_RETIRED');
    expect(l.verifyCertificates()).toEqual({ ok: true, events: 3 });
  });

  it('verification finds tampering with an amount, an owner or a link', () => {
    const l = matched();
    l.settleTrade({ trade_id: 10, delivered_wh: 10_000 }, T0);
    l.transferCertificate({ event_id: 'c1', certificate_id: 'CERT-10', from_user_id: BUYER, to_user_id: OTHER }, T0);
    const c = l.certificate('CERT-10')!;
    c.owner_id = SELLER;
    expect(l.verifyCertificates()).toMatchObject({ ok: false });
    c.owner_id = OTHER;
    expect(l.verifyCertificates().ok).toBe(true);
    const events = l.certificates.events as { energy_wh: number }[];
    events[0] = { ...events[0], energy_wh: 20_000 };
    expect(l.verifyCertificates()).toMatchObject({ ok: false, seq: 1 });
  });
});

describe('deposits and withdrawals', () => {
  it('a withdrawal can never take held or escrowed money', () => {
    const l = funded();
    l.holdBuyOrder({ order_id: 1, user_id: BUYER, zone_id: 1, limit_price_ticks: 2500, qty_wh: 10_000 }, T0);
    l.fillBuyOrder({ ...fill, qty_wh: 5_000 }, T0);
    const { available_minor } = l.balances(BUYER, 'EUR');
    expect(codeOf(() => l.withdraw({ transfer_id: 'w1', user_id: BUYER, currency: 'EUR', amount_minor: available_minor + 1n }, T0))).toBe('INSUFFICIENT_FUNDS');
    l.withdraw({ transfer_id: 'w1', user_id: BUYER, currency: 'EUR', amount_minor: available_minor }, T0);
    expect(l.balances(BUYER, 'EUR').available_minor).toBe(0n);
    l.checkInvariants();
  });

  it('a two-phase withdrawal reserves funds, then posts part and returns the rest', () => {
    const l = funded();
    l.beginWithdrawal({ transfer_id: 'w1', user_id: BUYER, currency: 'EUR', amount_minor: 600n }, T0);
    expect(l.balances(BUYER, 'EUR')).toMatchObject({ available_minor: 400n, pending_withdrawal_minor: 600n });
    expect(codeOf(() => l.completeWithdrawal({ transfer_id: 'w1:post', pending_id: 'w1', amount_minor: 700n }, T0))).toBe('AMOUNT_EXCEEDS_PENDING');
    l.completeWithdrawal({ transfer_id: 'w1:post', pending_id: 'w1', amount_minor: 500n }, T0);
    expect(l.balances(BUYER, 'EUR')).toMatchObject({ available_minor: 500n, pending_withdrawal_minor: 0n });
    expect(codeOf(() => l.cancelWithdrawal({ transfer_id: 'w1:void', pending_id: 'w1' }, T0))).toBe('TRANSFER_NOT_PENDING');
    expect(codeOf(() => l.cancelWithdrawal({ transfer_id: 'w2:void', pending_id: 'w2' }, T0))).toBe('PENDING_TRANSFER_NOT_FOUND');
    expect(l.platformBalances('EUR').external_minor).toBe(-500n);
    l.checkInvariants();
  });

  it('deposit rejections: ACCOUNT_NOT_FOUND for an unknown user or currency, INVALID_AMOUNT for zero', () => {
    const l = funded();
    expect(codeOf(() => l.deposit({ transfer_id: 'd', user_id: 99, currency: 'EUR', amount_minor: 1n }, T0))).toBe('ACCOUNT_NOT_FOUND');
    expect(codeOf(() => l.deposit({ transfer_id: 'd', user_id: BUYER, currency: 'USD', amount_minor: 1n }, T0))).toBe('ACCOUNT_NOT_FOUND');
    expect(codeOf(() => l.deposit({ transfer_id: 'd', user_id: BUYER, currency: 'EUR', amount_minor: 0n }, T0))).toBe('INVALID_AMOUNT');
    expect(codeOf(() => l.deposit({ transfer_id: 'dep1', user_id: BUYER, currency: 'EUR', amount_minor: 5n }, T0))).toBe('DUPLICATE_TRANSFER');
  });
});

/**
 * A seeded, deterministic simulation of the ledger: random deposits, withdrawals (immediate and
 * two-phase), buy-order holds, holds moved to another order id (bindHold), platform fee schedule
 * changes (holds at the order-time fee, fills at the trade-time fee), partial fills, cancels and expiries, settlements with shortfalls,
 * disputes and resolutions, trade cancels, retries of earlier operations, certificate transfers
 * and retirements, and operations that must be refused.
 *
 * After every step, in O(accounts touched by the step):
 *  - Σ of all balances is unchanged (the balance changes of the touched accounts sum to zero);
 *  - no available balance (nor any other limited account) is negative;
 *  - every touched user's available / held / escrow equals an independent model kept from the
 *    operations' results;
 *  - a retried operation returns its original result and changes nothing (no transfer, no
 *    account change, no certificate event); a refused operation changes nothing either;
 *  - certificate Wh issued = the model's settled renewable Wh (so never more);
 *  - the certificate chain links and hashes verify for the events the step appended.
 * Every `full_check_every` steps and at the end: the ledger's full recount (checkInvariants,
 * which also verifies the whole certificate chain) and a full model-vs-ledger comparison.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Account, Transfer } from '../../ledger/core.js';
import { availableOf, balanceOf } from '../../ledger/core.js';
import { LedgerError } from '../../ledger/errors.js';
import { Ledger, type ZoneConfig } from '../../ledger/ledger.js';
import type { TradeSource } from '../../ledger/certificates.js';
import { mulberry32 as rng } from '../../bench/prng.js';
export { rng };

export const SIM_ZONES: ZoneConfig[] = [
  { zone_id: 1, currency: 'EUR', minor_units: 2, tick_size: '0.0001', fee_bps: 50, fee_per_kwh_minor: 1n },
  { zone_id: 2, currency: 'SEK', minor_units: 2, tick_size: '0.001', fee_bps: 25, fee_per_kwh_minor: 0n },
];
const SOURCES: TradeSource[] = ['SOLAR', 'WIND', 'HYDRO', 'BATTERY'];
const RETRY_BUFFER = 512;


class StepRecorder {
  transfers = 0;
  pendings = 0;
  readonly touched: Account[] = [];
  account(): void {}
  transfer(_t: Transfer): void { this.transfers++; }
  touched_add(a: Account): void { this.touched.push(a); }
  pending(): void { this.pendings++; }
  untransfer(): void { this.transfers--; }
  reset(): void { this.transfers = 0; this.pendings = 0; this.touched.length = 0; }
}

interface Wallet { available: bigint; held: bigint; escrow: bigint }
interface SimOrder { order_id: number; user: number; zone: ZoneConfig; limit: number; remaining: number }
interface SimTrade { trade_id: number; buyer: number; seller: number; zone: ZoneConfig; qty: number; source: TradeSource; escrow: bigint }
interface SimCert { id: string; owner: number }

export interface SimulationStats {
  steps: number;
  ok: Record<string, number>;
  refused: Record<string, number>;
  retries: number;
  transfers: number;
  certificates: number;
  certificate_events: number;
  full_checks: number;
}

export interface SimulationOptions {
  seed: number;
  steps: number;
  users?: number;
  full_check_every?: number;
  /** A ledger to drive (e.g. one with a store attached); a fresh one by default. */
  ledger?: Ledger;
  /** Called after each step (tests use it to sabotage the ledger or to flush a store). */
  afterStep?: (step: number, ledger: Ledger) => void;
}

export function runSimulation(opts: SimulationOptions): { ledger: Ledger; stats: SimulationStats } {
  const rand = rng(opts.seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const users = opts.users ?? 200;
  const fullEvery = opts.full_check_every ?? 100_000;
  const ledger = opts.ledger ?? new Ledger();
  const rec = new StepRecorder();
  ledger.core.observer = { account: () => {}, transfer: (t) => rec.transfer(t), touched: (a) => rec.touched_add(a), pending: () => rec.pending(), untransfer: () => rec.untransfer() };
  let now = 1_700_000_000_000;
  for (const z of SIM_ZONES) ledger.configureZone(z, now);
  const wallets = new Map<string, Wallet>();
  const wallet = (u: number, cur: string): Wallet => wallets.get(`${u}:${cur}`)!;
  for (let u = 1; u <= users; u++) {
    for (const z of SIM_ZONES) {
      ledger.openUserAccounts(u, z.currency, now);
      wallets.set(`${u}:${z.currency}`, { available: 0n, held: 0n, escrow: 0n });
    }
  }
  /** Last known balance of every account: the step's deltas must sum to zero per currency. */
  const known: bigint[] = ledger.core.accounts.map((a) => (a === undefined ? 0n : balanceOf(a)));
  const orders: SimOrder[] = [];
  const trades: SimTrade[] = [];
  const disputed: SimTrade[] = [];
  const certs: SimCert[] = [];
  const pendingWithdrawals: { id: string; user: number; cur: string; amount: bigint }[] = [];
  const recent: { name: string; run: () => unknown; result: unknown }[] = [];
  let settledRenewableWh = 0;
  let nextOrder = 1, nextTrade = 1, nextTransfer = 1, nextEvent = 1;
  const stats: SimulationStats = { steps: 0, ok: {}, refused: {}, retries: 0, transfers: 0, certificates: 0, certificate_events: 0, full_checks: 0 };

  const remove = <T>(xs: T[], i: number): void => {
    xs[i] = xs[xs.length - 1];
    xs.pop();
  };
  const remember = (name: string, run: () => unknown, result: unknown): void => {
    if (recent.length < RETRY_BUFFER) recent.push({ name, run, result });
    else recent[int(0, RETRY_BUFFER - 1)] = { name, run, result };
  };
  const fail = (step: number, msg: string): never => {
    throw new Error(`simulation seed ${opts.seed} step ${step}: ${msg}`);
  };

  type Op = () => string;
  const ops: [number, Op][] = [
    [8, function deposit() {
      const u = int(1, users), z = pick(SIM_ZONES), amount = BigInt(int(1_000, 200_000));
      const req = { transfer_id: `d${nextTransfer++}`, user_id: u, currency: z.currency, amount_minor: amount };
      const run = () => ledger.deposit(req, now);
      remember('deposit', run, run());
      wallet(u, z.currency).available += amount;
      return 'deposit';
    }],
    [5, function withdraw() {
      const u = int(1, users), z = pick(SIM_ZONES), w = wallet(u, z.currency);
      const amount = BigInt(int(1, Number(w.available) + 2_000));
      const req = { transfer_id: `w${nextTransfer++}`, user_id: u, currency: z.currency, amount_minor: amount };
      const run = () => ledger.withdraw(req, now);
      remember('withdraw', run, run());
      w.available -= amount;
      return 'withdraw';
    }],
    [2, function beginWithdrawal() {
      const u = int(1, users), z = pick(SIM_ZONES), w = wallet(u, z.currency);
      const amount = BigInt(int(1, Number(w.available) + 1_000));
      const req = { transfer_id: `pw${nextTransfer++}`, user_id: u, currency: z.currency, amount_minor: amount };
      const run = () => ledger.beginWithdrawal(req, now);
      remember('beginWithdrawal', run, run());
      w.available -= amount;
      pendingWithdrawals.push({ id: req.transfer_id, user: u, cur: z.currency, amount });
      return 'beginWithdrawal';
    }],
    [2, function finishWithdrawal() {
      if (pendingWithdrawals.length === 0) return 'skip';
      const i = int(0, pendingWithdrawals.length - 1), p = pendingWithdrawals[i];
      const w = wallet(p.user, p.cur);
      if (rand() < 0.5) {
        const amount = BigInt(int(1, Number(p.amount)));
        const req = { transfer_id: `${p.id}:post`, pending_id: p.id, amount_minor: amount };
        const run = () => ledger.completeWithdrawal(req, now);
        remember('completeWithdrawal', run, run());
        w.available += p.amount - amount;
      } else {
        const req = { transfer_id: `${p.id}:void`, pending_id: p.id };
        const run = () => ledger.cancelWithdrawal(req, now);
        remember('cancelWithdrawal', run, run());
        w.available += p.amount;
      }
      remove(pendingWithdrawals, i);
      return 'finishWithdrawal';
    }],
    [20, function hold() {
      const u = int(1, users), z = pick(SIM_ZONES);
      const req = { order_id: nextOrder++, user_id: u, zone_id: z.zone_id, limit_price_ticks: int(0, 5_000), qty_wh: int(1, 60_000) };
      const run = () => ledger.holdBuyOrder(req, now);
      const r = run();
      remember('hold', run, r);
      const w = wallet(u, z.currency);
      w.available -= r.held_minor;
      w.held += r.held_minor;
      orders.push({ order_id: req.order_id, user: u, zone: z, limit: req.limit_price_ticks, remaining: req.qty_wh });
      return 'hold';
    }],
    [20, function fill() {
      if (orders.length === 0) return 'skip';
      const i = int(0, orders.length - 1), o = orders[i];
      let seller = int(1, users - 1);
      if (seller >= o.user) seller++;
      const qty = rand() < 0.3 ? o.remaining : int(1, o.remaining);
      const source = pick(SOURCES);
      const req = {
        trade_id: nextTrade++, order_id: o.order_id, seller_id: seller, price_ticks: int(0, o.limit), qty_wh: qty, interval_id: int(1, 96), source,
        ...(rand() < 0.3 ? { traded_at_ms: now - int(0, 5_000) } : {}),
      };
      const run = () => ledger.fillBuyOrder(req, now);
      const r = run();
      remember('fill', run, r);
      const w = wallet(o.user, o.zone.currency);
      w.held -= r.escrow_minor + r.released_minor;
      w.escrow += r.escrow_minor;
      w.available += r.released_minor;
      o.remaining -= qty;
      if (o.remaining === 0) {
        if (ledger.holds.get(o.order_id)!.remaining_minor !== 0n) fail(stats.steps, `filled order ${o.order_id} still holds money`);
        remove(orders, i);
      }
      trades.push({ trade_id: req.trade_id, buyer: o.user, seller, zone: o.zone, qty, source, escrow: r.escrow_minor });
      return 'fill';
    }],
    [4, function bindHold() {
      if (orders.length === 0) return 'skip';
      const o = pick(orders);
      const req = { from_order_id: o.order_id, to_order_id: nextOrder++ };
      const before = ledger.holds.get(o.order_id)!;
      const held = [before.remaining_wh, before.remaining_minor];
      const run = () => ledger.bindHold(req, now);
      const r = run();
      remember('bindHold', run, r);
      const moved = ledger.holds.get(req.to_order_id)!;
      if (moved.remaining_wh !== held[0] || moved.remaining_minor !== held[1] || moved.pricing !== before.pricing || before.status !== 'MOVED') {
        fail(stats.steps, `bindHold ${req.from_order_id} → ${req.to_order_id} did not move the hold as it was`);
      }
      o.order_id = req.to_order_id; // no money moved: the wallets stay as they are
      return 'bindHold';
    }],
    [1, function feeChange() {
      const z = pick(SIM_ZONES);
      ledger.setFeeSchedule({ zone_id: rand() < 0.8 ? z.zone_id : null, effective_from_ms: now + int(-5_000, 5_000), fee_bps: int(0, 300), fee_per_kwh_minor: BigInt(int(0, 5)) });
      return 'feeChange';
    }],
    [7, function release() {
      if (orders.length === 0) return 'skip';
      const i = int(0, orders.length - 1), o = orders[i];
      const req = { order_id: o.order_id, reason: rand() < 0.5 ? ('CANCELLED' as const) : ('EXPIRED' as const) };
      const run = () => ledger.releaseBuyOrder(req, now);
      const r = run();
      remember('release', run, r);
      const w = wallet(o.user, o.zone.currency);
      w.held -= r.released_minor;
      w.available += r.released_minor;
      remove(orders, i);
      return 'release';
    }],
    [15, function settle() {
      if (trades.length === 0) return 'skip';
      const i = int(0, trades.length - 1), t = trades[i];
      const delivered = rand() < 0.6 ? t.qty : int(0, t.qty);
      const req = { trade_id: t.trade_id, delivered_wh: delivered };
      const run = () => ledger.settleTrade(req, now);
      const s = run();
      remember('settle', run, s);
      closeTrade(t, s, true);
      remove(trades, i);
      return 'settle';
    }],
    [3, function dispute() {
      if (trades.length === 0) return 'skip';
      const i = int(0, trades.length - 1), t = trades[i];
      const req = { trade_id: t.trade_id, reason: pick(['meter offline', 'contradictory readings', 'late data']) };
      const run = () => ledger.disputeTrade(req, now);
      remember('dispute', run, run());
      remove(trades, i);
      disputed.push(t);
      return 'dispute';
    }],
    [3, function resolve() {
      if (disputed.length === 0) return 'skip';
      const i = int(0, disputed.length - 1), t = disputed[i];
      const req = { trade_id: t.trade_id, delivered_wh: int(0, t.qty) };
      const run = () => ledger.resolveDispute(req, now);
      const s = run();
      remember('resolve', run, s);
      closeTrade(t, s, true);
      remove(disputed, i);
      return 'resolve';
    }],
    [1, function cancelTrade() {
      const list = rand() < 0.5 && disputed.length > 0 ? disputed : trades;
      if (list.length === 0) return 'skip';
      const i = int(0, list.length - 1), t = list[i];
      const req = { trade_id: t.trade_id };
      const run = () => ledger.cancelTrade(req, now);
      const s = run();
      remember('cancelTrade', run, s);
      closeTrade(t, s, false);
      remove(list, i);
      return 'cancelTrade';
    }],
    [4, function certificateTransfer() {
      if (certs.length === 0) return 'skip';
      const c = pick(certs);
      let to = int(1, users - 1);
      if (to >= c.owner) to++;
      const req = { event_id: `ct${nextEvent++}`, certificate_id: c.id, from_user_id: c.owner, to_user_id: to };
      const run = () => ledger.transferCertificate(req, now);
      remember('certificateTransfer', run, run());
      c.owner = to;
      return 'certificateTransfer';
    }],
    [2, function certificateRetire() {
      if (certs.length === 0) return 'skip';
      const i = int(0, certs.length - 1), c = certs[i];
      const req = { event_id: `cr${nextEvent++}`, certificate_id: c.id, user_id: c.owner };
      const run = () => ledger.retireCertificate(req, now);
      remember('certificateRetire', run, run());
      remove(certs, i);
      return 'certificateRetire';
    }],
    [6, function retry() {
      if (recent.length === 0) return 'skip';
      const r = pick(recent);
      const again = r.run();
      if (!isDeepStrictEqual(again, r.result)) fail(stats.steps, `retry of ${r.name} returned a different result`);
      stats.retries++;
      return 'retry';
    }],
    [2, function mustBeRefused() {
      // Operations that must be refused: someone else's certificate, an unknown trade, a fill
      // above the limit, a withdrawal of more than available, a duplicate id with a new body.
      const k = int(0, 6);
      if (k === 0 && certs.length > 0) {
        const c = pick(certs);
        const thief = c.owner === users ? 1 : c.owner + 1;
        ledger.transferCertificate({ event_id: `ct${nextEvent++}`, certificate_id: c.id, from_user_id: thief, to_user_id: c.owner }, now);
      } else if (k === 1) {
        ledger.settleTrade({ trade_id: nextTrade + 1_000_000, delivered_wh: 1 }, now);
      } else if (k === 2 && orders.length > 0) {
        const o = pick(orders);
        ledger.fillBuyOrder({ trade_id: nextTrade++, order_id: o.order_id, seller_id: o.user === 1 ? 2 : 1, price_ticks: o.limit + 1, qty_wh: 1, interval_id: 1, source: 'SOLAR' }, now);
      } else if (k === 5 && orders.length >= 2) {
        const a = pick(orders), b = pick(orders);
        if (a === b) return 'skip';
        ledger.bindHold({ from_order_id: a.order_id, to_order_id: b.order_id }, now); // HOLD_EXISTS
      } else if (k === 6) {
        ledger.bindHold({ from_order_id: nextOrder + 1_000_000, to_order_id: nextOrder++ }, now); // HOLD_NOT_FOUND
      } else if (k === 3) {
        const u = int(1, users), z = pick(SIM_ZONES);
        ledger.withdraw({ transfer_id: `w${nextTransfer++}`, user_id: u, currency: z.currency, amount_minor: wallet(u, z.currency).available + 1n }, now);
      } else {
        const prior = recent.find((r) => r.name === 'deposit');
        if (prior === undefined) return 'skip';
        const t = prior.result as Transfer;
        ledger.deposit({ transfer_id: t.id, user_id: 1, currency: 'EUR', amount_minor: t.amount + 1n }, now);
      }
      return fail(stats.steps, `operation ${k} should have been refused`);
    }],
  ];

  function closeTrade(t: SimTrade, s: ReturnType<Ledger['settleTrade']>, delivered: boolean): void {
    const cur = t.zone.currency;
    const b = wallet(t.buyer, cur);
    b.escrow -= t.escrow;
    b.available += s.refund_minor;
    wallet(t.seller, cur).available += s.seller_net_minor;
    if (s.buyer_paid_minor + s.refund_minor !== t.escrow) fail(stats.steps, `trade ${t.trade_id} escrow not fully distributed`);
    const renewable = t.source !== 'BATTERY';
    if (delivered && renewable && s.delivered_wh > 0) {
      settledRenewableWh += s.delivered_wh;
      certs.push({ id: s.certificate_id!, owner: t.buyer });
    } else if (s.certificate_id !== null) {
      fail(stats.steps, `trade ${t.trade_id} got a certificate it should not have`);
    }
  }

  const total = ops.reduce((s, [w]) => s + w, 0);
  const table: Op[] = [];
  for (const [w, op] of ops) for (let k = 0; k < w; k++) table.push(op);

  for (let step = 1; step <= opts.steps; step++) {
    stats.steps = step;
    now += int(0, 2_000);
    rec.reset();
    const eventsBefore = ledger.certificates.events.length;
    const sizesBefore = ledger.holds.size + ledger.escrows.size + ledger.settlements.size;
    const op = table[Math.floor(rand() * total)];
    let outcome: string;
    let refused = false;
    try {
      outcome = op();
    } catch (err) {
      if (!(err instanceof LedgerError)) throw err;
      refused = true;
      outcome = `${op.name}:${err.code}`;
      // The model knows when an operation must succeed; only these refusals are expected.
      if (op.name !== 'mustBeRefused' && err.code !== 'INSUFFICIENT_FUNDS') fail(step, `unexpected refusal ${outcome}: ${err.message}`);
    }
    if (outcome === 'skip') continue;
    const counter = refused ? stats.refused : stats.ok;
    counter[outcome] = (counter[outcome] ?? 0) + 1;
    const unchanged = refused || outcome === 'retry';
    if (unchanged) {
      if (rec.transfers !== 0 || rec.touched.length !== 0 || rec.pendings !== 0) fail(step, `${outcome} changed balances`);
      if (ledger.certificates.events.length !== eventsBefore) fail(step, `${outcome} appended a certificate event`);
      if (ledger.holds.size + ledger.escrows.size + ledger.settlements.size !== sizesBefore) fail(step, `${outcome} changed holds, trades or settlements`);
    }
    // Σ balances unchanged: the touched accounts' changes sum to zero in each currency.
    let eur = 0n, sek = 0n;
    for (const a of rec.touched) {
      const now_balance = balanceOf(a);
      const delta = now_balance - known[a.id];
      known[a.id] = now_balance;
      if (a.currency === 'EUR') eur += delta;
      else sek += delta;
      if (a.kind !== 'EXTERNAL' && availableOf(a) < 0n) fail(step, `account ${a.id} (${a.kind}) is negative after ${outcome}`);
      if (a.user_id !== null) {
        const w = wallet(a.user_id, a.currency);
        const expected = a.kind === 'AVAILABLE' ? w.available : a.kind === 'HELD' ? w.held : w.escrow;
        const actual = a.kind === 'AVAILABLE' ? availableOf(a) : balanceOf(a);
        if (actual !== expected) fail(step, `user ${a.user_id} ${a.currency} ${a.kind} is ${actual}, the model says ${expected}, after ${outcome}`);
      }
    }
    if (eur !== 0n || sek !== 0n) fail(step, `Σ balances changed by ${eur} EUR / ${sek} SEK minor units after ${outcome}`);
    if (ledger.certificates.issued_wh_total !== settledRenewableWh || ledger.certificates.issued_wh_total > ledger.settled_renewable_wh) {
      fail(step, `certificate Wh ${ledger.certificates.issued_wh_total} ≠ settled renewable Wh ${settledRenewableWh}`);
    }
    const appended = ledger.certificates.events.length - eventsBefore;
    if (appended > 0) {
      const v = ledger.certificates.verifyTail(appended);
      if (!v.ok) fail(step, `certificate chain: ${v.reason}`);
    }
    opts.afterStep?.(step, ledger);
    if (step % fullEvery === 0 || step === opts.steps) {
      fullCheck(step);
      stats.full_checks++;
    }
  }

  function fullCheck(step: number): void {
    try {
      ledger.checkInvariants();
    } catch (err) {
      fail(step, (err as Error).message);
    }
    for (const [key, w] of wallets) {
      const [u, cur] = key.split(':');
      const b = ledger.balances(Number(u), cur);
      if (b.available_minor !== w.available || b.held_minor !== w.held || b.escrow_minor !== w.escrow) fail(step, `full check: wallet ${key} differs from the model`);
    }
    for (let id = 1; id < known.length; id++) if (known[id] !== balanceOf(ledger.core.accounts[id]!)) fail(step, `full check: account ${id} changed unseen`);
  }

  stats.transfers = ledger.core.transfer_count;
  stats.certificates = ledger.certificates.byId.size;
  stats.certificate_events = ledger.certificates.events.length;
  return { ledger, stats };
}

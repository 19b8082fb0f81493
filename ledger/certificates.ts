/**
 * Carbon certificates for delivered renewable energy, in Wh, one per settled renewable trade.
 * Every certificate event (ISSUE, TRANSFER, RETIRE) is appended to one hash chain:
 *   hash = sha256(prev_hash | canonical event fields)
 * so changing any issued amount, owner or retirement after the fact breaks the chain at that
 * event. `verifyChain` recomputes every hash and replays ownership against the live state.
 */
import { createHash } from 'node:crypto';
import { withFields } from '../schema/objects.js';
import { LedgerError } from './errors.js';

export const RENEWABLE_SOURCES = ['SOLAR', 'WIND', 'HYDRO'] as const;
export const TRADE_SOURCES = ['SOLAR', 'WIND', 'HYDRO', 'BATTERY'] as const;
export type TradeSource = (typeof TRADE_SOURCES)[number];
export const GENESIS_HASH = '0'.repeat(64);

export function isRenewable(source: TradeSource): boolean {
  return source === 'SOLAR' || source === 'WIND' || source === 'HYDRO';
}

export type CertificateStatus = 'ACTIVE' | 'RETIRED';

export interface Certificate {
  readonly id: string;
  readonly trade_id: number;
  readonly zone_id: number;
  readonly interval_id: number;
  readonly source: TradeSource;
  readonly producer_id: number;
  readonly energy_wh: number;
  readonly issued_at_ms: number;
  /** Hash of the ISSUE event: the certificate's verifiable fingerprint. */
  readonly hash: string;
  owner_id: number;
  status: CertificateStatus;
  retired_at_ms: number | null;
}

export type CertificateEventKind = 'ISSUE' | 'TRANSFER' | 'RETIRE';

export interface CertificateEvent {
  readonly seq: number;
  /** Client-chosen id for TRANSFER and RETIRE (idempotency); "issue:<certificate id>" for ISSUE. */
  readonly event_id: string;
  readonly certificate_id: string;
  readonly kind: CertificateEventKind;
  readonly from_user_id: number | null;
  readonly to_user_id: number | null;
  readonly energy_wh: number;
  readonly at_ms: number;
  readonly prev_hash: string;
  readonly hash: string;
}

export function certificateIdForTrade(trade_id: number): string {
  return `CERT-${trade_id}`;
}

/** The canonical text hashed for an event (issue details included so they cannot change). */
export function eventPayload(e: Omit<CertificateEvent, 'hash'>, c: Certificate | null): string {
  const issue = e.kind === 'ISSUE' && c !== null ? `|${c.trade_id}|${c.zone_id}|${c.interval_id}|${c.source}|${c.producer_id}` : '';
  return `${e.prev_hash}|${e.seq}|${e.event_id}|${e.certificate_id}|${e.kind}|${e.from_user_id ?? ''}|${e.to_user_id ?? ''}|${e.energy_wh}|${e.at_ms}${issue}`;
}

export function hashEvent(e: Omit<CertificateEvent, 'hash'>, c: Certificate | null): string {
  return createHash('sha256').update(eventPayload(e, c)).digest('hex');
}

export type ChainVerdict = { ok: true; events: number } | { ok: false; seq: number; reason: string };

/** The certificate registry: certificates by id and trade, and the event chain. */
export class CertificateRegistry {
  readonly byId = new Map<string, Certificate>();
  readonly byTrade = new Map<number, Certificate>();
  readonly events: CertificateEvent[] = [];
  private readonly eventsById = new Map<string, CertificateEvent>();
  /** Wh of every certificate ever issued (retired included). */
  issued_wh_total = 0;
  onEvent: ((e: CertificateEvent, c: Certificate) => void) | null = null;

  get last_hash(): string {
    return this.events.length === 0 ? GENESIS_HASH : this.events[this.events.length - 1].hash;
  }

  issue(c: Omit<Certificate, 'hash' | 'owner_id' | 'status' | 'retired_at_ms'>, owner_id: number): Certificate {
    if (this.byTrade.has(c.trade_id)) throw new Error(`ledger assertion failed: certificate for trade ${c.trade_id} issued twice`);
    const e = this.makeEvent(`issue:${c.id}`, c.id, 'ISSUE', null, owner_id, c.energy_wh, c.issued_at_ms);
    const cert: Certificate = withFields(c, { hash: '', owner_id, status: 'ACTIVE' as const, retired_at_ms: null });
    const hash = hashEvent(e, cert);
    (cert as { hash: string }).hash = hash;
    this.byId.set(cert.id, cert);
    this.byTrade.set(cert.trade_id, cert);
    this.issued_wh_total += cert.energy_wh;
    this.append(withFields(e, { hash }), cert);
    return cert;
  }

  /** Returns the earlier event for a retried event id with the same body, or null if new. */
  private replayed(event_id: string, certificate_id: string, kind: CertificateEventKind, from: number, to: number | null): CertificateEvent | null {
    const prior = this.eventsById.get(event_id);
    if (prior === undefined) return null;
    if (prior.certificate_id === certificate_id && prior.kind === kind && prior.from_user_id === from && prior.to_user_id === to) return prior;
    throw new LedgerError('DUPLICATE_TRANSFER', `certificate event id "${event_id}" was already used with a different body`);
  }

  private owned(certificate_id: string, user_id: number): Certificate {
    const c = this.byId.get(certificate_id);
    if (c === undefined) throw new LedgerError('CERTIFICATE_NOT_FOUND', `no certificate "${certificate_id}"`);
    if (c.status === 'RETIRED') throw new LedgerError('CERTIFICATE_RETIRED', `certificate "${certificate_id}" is retired and can no longer move`);
    if (c.owner_id !== user_id) throw new LedgerError('CERTIFICATE_NOT_OWNED', `certificate "${certificate_id}" is not owned by user ${user_id}`);
    return c;
  }

  transfer(event_id: string, certificate_id: string, from_user_id: number, to_user_id: number, now_ms: number): CertificateEvent {
    const prior = this.replayed(event_id, certificate_id, 'TRANSFER', from_user_id, to_user_id);
    if (prior !== null) return prior;
    const c = this.owned(certificate_id, from_user_id);
    const e = this.makeEvent(event_id, c.id, 'TRANSFER', from_user_id, to_user_id, c.energy_wh, now_ms);
    c.owner_id = to_user_id;
    return this.append(withFields(e, { hash: hashEvent(e, c) }), c);
  }

  retire(event_id: string, certificate_id: string, user_id: number, now_ms: number): CertificateEvent {
    const prior = this.replayed(event_id, certificate_id, 'RETIRE', user_id, null);
    if (prior !== null) return prior;
    const c = this.owned(certificate_id, user_id);
    const e = this.makeEvent(event_id, c.id, 'RETIRE', user_id, null, c.energy_wh, now_ms);
    c.status = 'RETIRED';
    c.retired_at_ms = now_ms;
    return this.append(withFields(e, { hash: hashEvent(e, c) }), c);
  }

  private makeEvent(
    event_id: string, certificate_id: string, kind: CertificateEventKind, from: number | null, to: number | null, energy_wh: number, at_ms: number,
  ): Omit<CertificateEvent, 'hash'> {
    if (event_id.length === 0 || event_id.length > 128) throw new LedgerError('INVALID_TRANSFER', `certificate event id must be 1..128 characters`);
    return { seq: this.events.length + 1, event_id, certificate_id, kind, from_user_id: from, to_user_id: to, energy_wh, at_ms, prev_hash: this.last_hash };
  }

  private append(e: CertificateEvent, c: Certificate): CertificateEvent {
    this.events.push(e);
    this.eventsById.set(e.event_id, e);
    this.onEvent?.(e, c);
    return e;
  }

  /** Restores a certificate and the chain from storage; the caller verifies afterwards. */
  restore(certs: Certificate[], events: CertificateEvent[]): void {
    for (const c of certs) {
      this.byId.set(c.id, c);
      this.byTrade.set(c.trade_id, c);
      this.issued_wh_total += c.energy_wh;
    }
    for (const e of events) {
      this.events.push(e);
      this.eventsById.set(e.event_id, e);
    }
  }

  /** Checks the links of the last `count` events only (cheap, for use after every step). */
  verifyTail(count: number): ChainVerdict {
    const from = Math.max(0, this.events.length - count);
    return this.verifyRange(from, from === 0 ? GENESIS_HASH : this.events[from - 1].hash, null);
  }

  /**
   * Recomputes the whole chain and replays it: every hash matches, every link points at the
   * previous hash, and the replayed owner, status and amounts equal the live certificates.
   */
  verifyChain(): ChainVerdict {
    const replay = new Map<string, { owner: number; retired: boolean; wh: number }>();
    const verdict = this.verifyRange(0, GENESIS_HASH, replay);
    if (!verdict.ok) return verdict;
    if (replay.size !== this.byId.size) return { ok: false, seq: this.events.length, reason: `chain issues ${replay.size} certificates, registry holds ${this.byId.size}` };
    for (const [id, r] of replay) {
      const c = this.byId.get(id);
      if (c === undefined || c.owner_id !== r.owner || (c.status === 'RETIRED') !== r.retired || c.energy_wh !== r.wh) {
        return { ok: false, seq: this.events.length, reason: `certificate ${id} differs from its history` };
      }
    }
    return verdict;
  }

  private verifyRange(from: number, prevHash: string, replay: Map<string, { owner: number; retired: boolean; wh: number }> | null): ChainVerdict {
    let prev = prevHash;
    for (let i = from; i < this.events.length; i++) {
      const e = this.events[i];
      if (e.seq !== i + 1) return { ok: false, seq: e.seq, reason: `event ${i + 1} carries seq ${e.seq}` };
      if (e.prev_hash !== prev) return { ok: false, seq: e.seq, reason: `event ${e.seq} does not link to the previous hash` };
      const c = this.byId.get(e.certificate_id) ?? null;
      if (c === null) return { ok: false, seq: e.seq, reason: `event ${e.seq} names unknown certificate ${e.certificate_id}` };
      const { hash, ...rest } = e;
      if (hashEvent(rest, c) !== hash) return { ok: false, seq: e.seq, reason: `event ${e.seq} does not match its hash` };
      if (e.kind === 'ISSUE' && c.hash !== hash) return { ok: false, seq: e.seq, reason: `certificate ${c.id} does not carry its issue hash` };
      if (replay !== null && !replayEvent(replay, e)) return { ok: false, seq: e.seq, reason: `event ${e.seq} is not a legal move` };
      prev = hash;
    }
    return { ok: true, events: this.events.length };
  }
}

function replayEvent(replay: Map<string, { owner: number; retired: boolean; wh: number }>, e: CertificateEvent): boolean {
  const r = replay.get(e.certificate_id);
  if (e.kind === 'ISSUE') {
    if (r !== undefined || e.to_user_id === null) return false;
    replay.set(e.certificate_id, { owner: e.to_user_id, retired: false, wh: e.energy_wh });
    return true;
  }
  if (r === undefined || r.retired || r.owner !== e.from_user_id || r.wh !== e.energy_wh) return false;
  if (e.kind === 'TRANSFER') {
    if (e.to_user_id === null) return false;
    r.owner = e.to_user_id;
  } else {
    r.retired = true;
  }
  return true;
}

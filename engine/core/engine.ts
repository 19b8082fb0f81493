// The matching engine of one zone: a pure, deterministic state machine. Commands in, events out;
// no I/O, no clock (time is each command's ts_ms), no randomness. Rules: MARKET-RULES.md.
//
// Data layout (docs/engine.md has the details):
// - orders live in pooled 64-byte records (one cache line) of one ArrayBuffer (float64 and int32
//   views); a free list recycles slots; order_id -> slot is a ring of slots indexed by the id's low
//   bits (verified by the record, overflow in a hash), so cancel by id is O(1); client order ids
//   are a (fingerprint, slot) table verified against the record;
// - a resting order sits on one intrusive doubly-linked list, its price level's FIFO. Operator
//   paths that need seq order over the zone (halt, gate closure, mass cancel) scan the pool and
//   sort instead of keeping zone/user lists that would cost cache misses on every cancel and fill;
// - a book is one delivery interval; each book has one sub-book per (side, source): buys for ANY,
//   SOLAR, WIND, BATTERY, HYDRO and sells of the four sources. A sub-book is a sorted array of
//   price levels, best at the end (so taking or removing the best level is O(1)); a level is a slot
//   in the level pool holding its FIFO head/tail, total Wh and count; a direct-mapped cache finds
//   the level of a (sub-book, price) without a search;
// - events are written into a reused Float64Array (EVENT_WIDTH cells each) and decoded to plain
//   objects on request (events.ts), so the matching loop allocates nothing.

import {
  ANY,
  BUY,
  C_AMEND,
  C_HALT,
  C_MASS_CANCEL,
  C_SELF_TRADE,
  C_UNFILLED,
  C_USER,
  E_ACCEPTED,
  E_AMENDED,
  E_BOOK_LEVEL,
  E_CANCELLED,
  E_EXPIRED,
  E_FILL,
  E_GATE_CLOSED,
  E_INTERVAL_OPENED,
  E_REJECTED,
  E_SELLER_LIMIT_SET,
  E_ZONE_CONFIGURED,
  E_ZONE_STATUS,
  EVENT_WIDTH,
  K_AMEND,
  K_CANCEL,
  K_CONFIGURE_ZONE,
  K_EXPIRE_DUE,
  K_GATE_CLOSE,
  K_HALT,
  K_MAINTENANCE,
  K_MASS_CANCEL,
  K_OPEN_INTERVAL,
  K_PLACE,
  K_RESUME,
  K_SET_SELLER_LIMIT,
  K_UNKNOWN,
  ORDER_TYPES,
  R_BAD_LOT,
  R_BAD_TICK,
  R_DUPLICATE_CLIENT_ORDER_ID,
  R_FOK_NOT_FILLABLE,
  R_INTERVAL_CLOSED,
  R_INTERVAL_EXISTS,
  R_INVALID_COMMAND,
  R_INVALID_ORDER,
  R_POST_ONLY_WOULD_MATCH,
  R_PRICE_OUT_OF_BAND,
  R_QTY_OUT_OF_RANGE,
  R_SELLER_CAPACITY_EXCEEDED,
  R_TOO_MANY_OPEN_ORDERS,
  R_UNKNOWN_INTERVAL,
  R_UNKNOWN_ORDER,
  R_UNKNOWN_ZONE,
  R_ZONE_HALTED,
  SELL,
  SIDES,
  SOURCES,
  ST_ACTIVE,
  STP_BOTH,
  STP_MODES,
  STP_OLDEST,
  T_FOK,
  T_LIMIT,
  T_POST_ONLY,
  X_GATE_CLOSE,
  X_GOOD_TILL_TIME,
  ZONE_STATUSES,
  isNonNegativeInt,
  isPositiveInt,
  isSafeInt,
  orderTypeCode,
  policyCode,
  sourceCode,
  statusCode,
  stpCode,
} from './codes.js';
import { decodeEvent } from './events.js';
import { hashString, StreamHash } from './hash.js';
import {
  CHECKPOINT_HASH_PREFIX,
  fmix32,
  LANE_A_MUL,
  LANE_A_SEED,
  LANE_B_MUL,
  LANE_B_SEED,
  mixNumber,
  mixWord,
  putVarint,
  SNAPSHOT_MAGIC,
  SNAPSHOT_PREFIX,
  type SnapshotHeader,
} from './snapshot.js';
import { IntMap } from './int-map.js';
import { FpSlotTable } from './slot-table.js';
import type {
  AmendCommand,
  CancelCommand,
  Command,
  ConfigureZoneCommand,
  EngineEvent,
  EngineSnapshot,
  EventType,
  GateCloseCommand,
  HaltCommand,
  IntervalView,
  L2Level,
  L2Snapshot,
  L3Snapshot,
  MaintenanceCommand,
  MassCancelCommand,
  OpenIntervalCommand,
  OrderView,
  PlaceCommand,
  SellerView,
  SetSellerLimitCommand,
  Side,
  Source,
  ZoneConfig,
} from './types.js';

/** Limits (TigerBeetle style: everything has one, and it is tested). */
export const MAX_OPEN_ORDERS_PER_ZONE = 1 << 24;
export const MAX_CLIENT_ORDER_ID_LENGTH = 64;
/** Books per engine; the seller key packs the book index into 20 bits. */
export const MAX_INTERVALS_PER_ZONE = 1 << 20;

// Order record layout: one 64-byte record (one cache line) per slot: float64 fields at
// of[slot * OW + F_*], int32 fields at oi[slot * IW + I_*] (two views of one buffer). The price is
// the level's, the user id is the user slot's, the total is filled + remaining, and the expiry
// lives in a side array (read only for good-till-time orders).
const ORDER_BYTES = 64;
const OW = 8; // float64 cells per record
const IW = 16; // int32 cells per record
const F_ID = 0;
const F_LEFT = 1; // remaining Wh
const F_FILLED = 2;
const F_SEQ = 3;
const I_NEXT = 8; // level FIFO
const I_PREV = 9;
const I_LEVEL = 10;
const I_USLOT = 11;
const I_SELLER = 12;
const I_BOOK = 13;
const I_FLAGS = 14; // side | source << 1 | type << 4 | stp << 7 | has expiry << 9
const I_COID_FP = 15; // the client order id's fingerprint (its entry in the client order id table)

function packFlags(side: number, source: number, type: number, stp: number, gtd: boolean): number {
  return side | (source << 1) | (type << 4) | (stp << 7) | (gtd ? 512 : 0);
}
const flSide = (fl: number): number => fl & 1;
const flSource = (fl: number): number => (fl >> 1) & 7;
const flType = (fl: number): number => (fl >> 4) & 7;
const flStp = (fl: number): number => (fl >> 7) & 3;
const flGtd = (fl: number): boolean => (fl & 512) !== 0;

const LV_CACHE_CELLS = 4096;
const USER_CACHE_CELLS = 4096;
/** executeBatch looks this many commands ahead. */
const PREFETCH_GROUP = 8;
const lvCacheCell = (subIdx: number, price: number): number => ((price | 0) + Math.imul(subIdx, 40503)) & (LV_CACHE_CELLS - 1);
const SUBS_PER_BOOK = 10; // side * 5 + source; (SELL, ANY) unused
const NONE = -1;
/** Cells of the old order id ring moved per new order while the ring doubles. */
const ID_CELLS_PER_STEP = 2;
const PAGE_BYTES = 4096;
/**
 * Cells of a spare client order id table emptied per new order: the next rebuild of the same size
 * is at least a quarter of its cells in new orders away (the table starts with the open orders, a
 * quarter of its cells at most, and is rebuilt at half), so 4 would do; 16 (two cache lines) leaves
 * a margin.
 */
const COID_CLEAR_STEP = 16;
const NO_I32 = new Int32Array(0);
const NO_F64 = new Float64Array(0);

class SubBook {
  /** Priority key per level, ascending; the best level is at index n - 1. BUY: price, SELL: -price. */
  keys = new Float64Array(8);
  lvls = new Int32Array(8);
  n = 0;
}

/** A level's priority key in its sub-book: BUY sub-books (0..4) by price, SELL ones by -price. */
const levelKey = (subIdx: number, price: number): number => (subIdx % SUBS_PER_BOOK < 5 ? price : -price);

/** Lowest index i in keys[0..n) with keys[i] >= key (n when none). */
function lowerBound(keys: Float64Array, n: number, key: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function growF64(a: Float64Array, n: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(n);
  b.set(a);
  return b;
}
function growI32(a: Int32Array, n: number): Int32Array<ArrayBuffer> {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}
function growU8(a: Uint8Array, n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  b.set(a);
  return b;
}
function num(x: unknown): number {
  return typeof x === 'number' && Number.isSafeInteger(x) ? x : 0;
}
function str(x: unknown): string {
  return typeof x === 'string' ? x : '';
}

export interface ZoneEngineOptions {
  /**
   * Open orders to size the pools and indexes for at start (they still grow by doubling past it).
   * Sizing up front keeps growth (and the GC it triggers) out of the matching loop.
   */
  initial_order_slots?: number;
  initial_event_slots?: number;
  /** Cells of the order id ring (default: initial_order_slots, rounded up to a power of two). */
  order_id_ring_cells?: number;
  /** Initial live orders the client order id table is sized for (it doubles as needed). */
  client_order_id_cells?: number;
}

export class ZoneEngine {
  readonly zoneId: number;

  // zone configuration
  private configured = false;
  private stepTicks = 1;
  private lotWh = 1;
  private bandMin = 0;
  private bandMax = 0;
  private minQty = 1;
  private maxQty = 1;
  private maxOpenPerUser = 0;
  private status = ST_ACTIVE;

  // counters
  private nextSeq = 1;
  private eventSeq = 0;
  private tradeSeq = 0;
  private lastTs = 0;

  // orders (struct of arrays)
  private oCap: number;
  /** Order records, one 64-byte record per slot: 4 float64 fields, then 8 int32 fields (views of one buffer). */
  private of: Float64Array;
  private oi: Int32Array;
  private oCoid: string[] = [];
  /** Good-till time per slot (0 = none); read only for orders flagged as having one. */
  private oExp: Float64Array;
  // The next pool, taken while the pool fills its second half and faulted in one page per new
  // slot: growing is then one copy into memory already mapped (first touches of fresh pages cost
  // ~10-20 µs each on our VMs: faulting a 64 MB pool in one go took ~180 ms).
  private nextOi: Int32Array = NO_I32;
  private nextExp: Float64Array = NO_F64;
  /** Where the next page of nextOi, then of nextExp, to touch starts. */
  private faultOi = 0;
  private faultExp = 0;
  private orderFree = NONE;
  private orderTop = 0;
  private openCount = 0;
  // order id -> slot: a ring of slots indexed by the id's low bits (the sequencer's ids are
  // consecutive, so live orders rarely share a cell); the slot's record holds the id that verifies
  // a hit. An open order whose cell is needed by a newer id moves to idOverflow.
  private idRing: Int32Array;
  private idMask: number;
  private idOverflow = new IntMap(64);
  // The ring doubles with the pool, its cells moved over a few per new order instead of in one
  // pass: until then the old ring's cells from idMoved on are still the live ones. When not
  // growing, idOld is idRing and idMoved is 0, so lookups need no other branch.
  private idOld: Int32Array;
  private idOldMask: number;
  private idMoved = 0;

  // price levels
  private lvCap = 1024;
  private lvPrice = new Float64Array(1024);
  private lvQty = new Float64Array(1024);
  private lvCount = new Int32Array(1024);
  private lvHead = new Int32Array(1024);
  private lvTail = new Int32Array(1024);
  private lvSub = new Int32Array(1024);
  private lvTouch = new Int32Array(1024);
  private lvFree = NONE;
  /** (sub-book, price) -> level, direct-mapped: most orders join an existing level without a search. Verified on use. */
  private lvCache = new Int32Array(LV_CACHE_CELLS).fill(NONE);
  private lvTop = 0;

  // books (one per delivery interval)
  private bookCapN = 16;
  private bookN = 0;
  private bookInterval = new Float64Array(16);
  private bookCapacity = new Float64Array(16);
  private bookMatched = new Float64Array(16);
  private bookClosed = new Uint8Array(16);
  private bookOpen = new Int32Array(16);
  private intervalIndex = new IntMap(64);
  private subs: (SubBook | null)[] = [];

  // users
  private uCap = 256;
  private userN = 0;
  private uId = new Float64Array(256);
  private uOpen = new Int32Array(256);
  private userIndex = new IntMap(256);
  private uCache = new Int32Array(USER_CACHE_CELLS).fill(NONE);
  private lastIv = -1;
  private lastBook = NONE;
  // client order ids of open orders: a 32-bit fingerprint of (user, id) -> slot, every candidate
  // verified against the slot's own record (open, same user, same id). Entries are not removed when
  // an order closes (that would be one more random memory access per fill and cancel): a stale
  // entry costs nothing unless its fingerprint matches, and the table is rebuilt from the open
  // orders when stale entries fill it. The rebuild runs a few slots per new order: until it has
  // scanned them all, open orders in slots from coidScan on are in coidOld (the full table, which
  // takes their new entries too), the others in coidTable; lookups check both. When not
  // rebuilding, coidOld is coidTable and coidScan is 0.
  private coidTable: FpSlotTable;
  private coidOld: FpSlotTable;
  private coidScan = 0;
  /** Slots scanned per new order during a rebuild: enough that it ends before coidOld fills. */
  private coidStep = 0;
  // The table a rebuild retired, when the next rebuild may use one of its size: emptied
  // COID_CLEAR_STEP cells per new order (cells below coidCleared are empty) and taken by that
  // rebuild once empty, so a rebuild at a steady size neither faults in fresh memory (~20 µs a
  // page on our VMs: 2,048 pages for 1 M cells) nor clears on one command.
  private coidSpare: FpSlotTable | null = null;
  private coidCleared = 0;

  // sellers: per (user, book) limit, sold and open sell Wh
  private sCap = 256;
  private sellerN = 0;
  private sUser = new Float64Array(256);
  private sBook = new Int32Array(256);
  private sLimit = new Float64Array(256); // -1 = no limit
  private sSold = new Float64Array(256);
  private sOpen = new Float64Array(256);
  private sellerIndex = new IntMap(256);
  /** Seller slots of closed intervals, for reuse (sBook = NONE marks them). */
  private sellerFree: number[] = [];

  // good-till-time expiry: a min-heap on expiry with lazy deletion (stale entries are skipped)
  private hCap = 64;
  private hN = 0;
  private hExp = new Float64Array(64);
  private hId = new Float64Array(64);
  private hSlot = new Int32Array(64);
  private liveGtd = 0;
  private nextDueMs = Infinity;
  private due: number[] = [];

  // executeBatch: per command of the batch, where its events end and its ts; look-ahead scratch
  private batchN = 0;
  private batchEnds = new Int32Array(256);
  private batchTs = new Float64Array(256);
  private pfCmds: (object | undefined)[] = new Array<object | undefined>(PREFETCH_GROUP).fill(undefined);
  private pfFps = new Int32Array(PREFETCH_GROUP);
  private pfSlots = new Int32Array(PREFETCH_GROUP);
  private pfCmd: object | undefined = undefined;
  private pfFp = 0;
  /** Where the look-ahead loads go (read, never used: it keeps them from being optimised away). */
  private sink = 0;

  // events of the current command
  private evCap: number;
  private ev: Float64Array;
  private evStr: string[] = [];
  private evN = 0;
  private evCmd = K_UNKNOWN;

  // levels touched by the current command (emitted as BOOK_LEVEL at its end)
  private epoch = 1;
  private touched = new Int32Array(64);
  private touchedN = 0;
  private pendingFree = new Int32Array(64);
  private pendingN = 0;

  // scratch: candidate sub-books and FOK cursors
  private cand: SubBook[] = [new SubBook(), new SubBook(), new SubBook(), new SubBook()];
  private curPos = new Int32Array(4);
  private curSlot = new Int32Array(4);

  // the incoming (taker) order
  private tkId = 0;
  private tkUser = 0;
  private tkUslot = NONE;
  private tkCoid = '';
  private tkCoidFp = 0;
  private tkSide = BUY;
  private tkSource = ANY;
  private tkType = T_LIMIT;
  private tkStp = 0;
  private tkPrice = 0;
  private tkLeft = 0;
  private tkFilled = 0;
  private tkTotal = 0;
  private tkSeq = 0;
  private tkExpire = 0;
  private tkBook = 0;
  private tkSlot = NONE;
  private tkSeller = NONE;

  constructor(zone_id: number, options: ZoneEngineOptions = {}) {
    if (!isPositiveInt(zone_id)) throw new RangeError(`zone_id must be a positive safe integer, got ${zone_id}`);
    this.zoneId = zone_id;
    const n = Math.max(16, options.initial_order_slots ?? 1024);
    this.oCap = n;
    const buf = new ArrayBuffer(n * ORDER_BYTES);
    this.of = new Float64Array(buf);
    this.oi = new Int32Array(buf);
    this.oExp = new Float64Array(n);
    let ring = 1024;
    while (ring < (options.order_id_ring_cells ?? n)) ring *= 2;
    this.idRing = new Int32Array(ring).fill(NONE);
    this.idMask = ring - 1;
    this.idOld = this.idRing;
    this.idOldMask = this.idMask;
    this.coidTable = new FpSlotTable(options.client_order_id_cells ?? n >> 1);
    this.coidOld = this.coidTable;
    // the first rebuild that keeps the table's size takes this one (touched below)
    this.coidSpare = new FpSlotTable(options.client_order_id_cells ?? n >> 1);
    this.coidCleared = this.coidSpare.mask + 1;
    this.evCap = Math.max(64, options.initial_event_slots ?? 1024);
    this.ev = new Float64Array(this.evCap * EVENT_WIDTH);
    // Touch every page of the pools now: a first touch in the matching loop is a page fault, a
    // multi-microsecond stall that lands in the latency tail (thousands of them while a pool fills).
    this.oi.fill(0);
    this.coidTable.cells.fill(0);
    this.coidSpare.cells.fill(0);
    const coids: string[] = [];
    for (let i = 0; i < n; i++) coids.push('');
    this.oCoid = coids;
    this.ev.fill(0);
  }

  // ===========================================================================================
  // Commands

  /**
   * Runs one command. Returns how many events it produced; they stay readable (events(),
   * eventTypeAt()) until the next execute. Never throws on bad input: bad commands are REJECTED.
   */
  execute(cmd: Command): number {
    this.evN = 0;
    this.batchN = 0;
    this.step(cmd);
    return this.evN;
  }

  /**
   * Runs cmds[from..to) in order, with exactly the events and state of execute() on each in turn.
   * The events of all of them stay readable (eventCount, events(), event(i), eventCell) until the
   * next execute/executeBatch; batchEventEnd(k) is where the events of cmds[from + k] end. Returns
   * the number of events. Faster than execute() in a loop: it looks at the next few commands first
   * and starts the memory loads their index probes will need (client order id table cell, order id
   * ring cell, the order's record), so those cache misses overlap instead of queuing one after the
   * other. Keep batches small (the event buffer holds all their events): tens to hundreds.
   */
  executeBatch(cmds: readonly Command[], from = 0, to = cmds.length): number {
    this.evN = 0;
    this.batchN = 0;
    if (to - from > this.batchEnds.length) {
      let n = this.batchEnds.length;
      while (n < to - from) n *= 2;
      this.batchEnds = new Int32Array(n);
      this.batchTs = new Float64Array(n);
    }
    const pfCmd = this.pfCmds;
    const pfFp = this.pfFps;
    const pfSlot = this.pfSlots;
    let sink = 0;
    for (let g = from; g < to; g += PREFETCH_GROUP) {
      const end = g + PREFETCH_GROUP < to ? g + PREFETCH_GROUP : to;
      // 1. the client order id fingerprints of the group's PLACEs, the ring cells of its CANCELs
      const ring = this.idRing;
      const rmask = this.idMask;
      const old = this.idOld;
      const omask = this.idOldMask;
      const moved = this.idMoved;
      for (let k = g; k < end; k++) {
        const c = cmds[k] as Partial<PlaceCommand> & { type: string };
        const j = k - g;
        pfCmd[j] = undefined;
        pfSlot[j] = NONE;
        if (c.type === 'PLACE') {
          const coid = c.client_order_id;
          const uid = c.user_id;
          if (typeof coid === 'string' && typeof uid === 'number') {
            pfFp[j] = coidFp(uid, coid);
            pfCmd[j] = c;
          }
        } else if (c.type === 'CANCEL') {
          const id = c.order_id;
          if (typeof id === 'number') {
            const oc = (id | 0) & omask;
            pfSlot[j] = oc < moved ? ring[(id | 0) & rmask] : old[oc];
          }
        }
      }
      // 2. their client order id table cells, back to back (independent loads: they overlap)
      const cells = this.coidTable.cells;
      const cmask = this.coidTable.mask;
      for (let j = 0; j < end - g; j++) if (pfCmd[j] !== undefined) sink ^= cells[2 * (pfFp[j] & cmask) + 1];
      // 3. the records of the orders the CANCELs name
      const oi = this.oi;
      for (let j = 0; j < end - g; j++) if (pfSlot[j] >= 0) sink ^= oi[pfSlot[j] * IW + I_PREV];
      // 4. run them
      for (let k = g; k < end; k++) {
        const j = k - g;
        this.pfCmd = pfCmd[j];
        this.pfFp = pfFp[j];
        this.step(cmds[k]);
        this.batchEnds[this.batchN] = this.evN;
        this.batchTs[this.batchN++] = this.lastTs;
      }
      this.pfCmd = undefined;
    }
    this.sink = sink;
    return this.evN;
  }

  /** After executeBatch: the end (exclusive event index) of the events of the k-th command of the batch. */
  batchEventEnd(k: number): number {
    if (k < 0 || k >= this.batchN) throw new RangeError(`command ${k} out of range (0..${this.batchN - 1})`);
    return this.batchEnds[k];
  }

  /** Runs one command, appending its events to the buffer. */
  private step(cmd: Command): void {
    this.epoch = (this.epoch + 1) | 0;
    const ts = cmd.ts_ms;
    const kind = commandKind(cmd.type);
    this.evCmd = kind;
    if (!isSafeInt(ts)) {
      this.rejectCommand(cmd, kind === K_PLACE || kind === K_CANCEL || kind === K_AMEND ? R_INVALID_ORDER : R_INVALID_COMMAND);
      return;
    }
    this.lastTs = ts;
    // Good-till-time orders expire before anything else the command does once its ts reaches them.
    if (ts >= this.nextDueMs) this.expireDue(ts);
    switch (kind) {
      case K_PLACE:
        this.place(cmd as PlaceCommand, ts);
        break;
      case K_CANCEL:
        this.cancel(cmd as CancelCommand);
        break;
      case K_AMEND:
        this.amend(cmd as AmendCommand);
        break;
      case K_MASS_CANCEL:
        this.massCancel(cmd as MassCancelCommand);
        break;
      case K_EXPIRE_DUE:
        break; // expiry already ran above
      case K_CONFIGURE_ZONE:
        this.configure(cmd as ConfigureZoneCommand);
        break;
      case K_OPEN_INTERVAL:
        this.openInterval(cmd as OpenIntervalCommand);
        break;
      case K_GATE_CLOSE:
        this.gateClose(cmd as GateCloseCommand);
        break;
      case K_HALT:
        this.halt((cmd as HaltCommand).policy, 1, true);
        break;
      case K_MAINTENANCE:
        this.halt((cmd as MaintenanceCommand).policy ?? 'KEEP_RESTING', 2, true);
        break;
      case K_RESUME:
        this.halt('KEEP_RESTING', ST_ACTIVE, false);
        break;
      case K_SET_SELLER_LIMIT:
        this.setSellerLimit(cmd as SetSellerLimitCommand);
        break;
      default:
        this.rejectCommand(cmd, R_INVALID_COMMAND);
    }
    if (this.touchedN > 0) this.flushLevels();
  }

  /** Runs one command and returns its events as plain objects. */
  apply(cmd: Command): EngineEvent[] {
    this.execute(cmd);
    return this.events();
  }

  /** The events of the last command, decoded to plain objects. */
  events(): EngineEvent[] {
    const out: EngineEvent[] = new Array(this.evN);
    for (let i = 0; i < this.evN; i++) out[i] = this.event(i);
    return out;
  }

  event(i: number): EngineEvent {
    if (i < 0 || i >= this.evN) throw new RangeError(`event ${i} out of range (0..${this.evN - 1})`);
    let ts = this.lastTs;
    if (this.batchN > 0) {
      // the ts of the batch command that produced event i
      let lo = 0;
      let hi = this.batchN - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.batchEnds[mid] <= i) lo = mid + 1;
        else hi = mid;
      }
      ts = this.batchTs[lo];
    }
    return decodeEvent(this.ev, i * EVENT_WIDTH, this.evStr[i], this.zoneId, ts);
  }

  get eventCount(): number {
    return this.evN;
  }

  /** The type of event i of the last command, without decoding it. */
  eventTypeAt(i: number): EventType {
    return EVENT_NAMES[this.ev[i * EVENT_WIDTH]];
  }

  /**
   * The event buffer itself: EVENT_WIDTH cells per event (layout in events.ts), events 0 ..
   * eventCount - 1 of the last command. Read only, and only until the next command (it is reused,
   * and replaced when it grows). For encoders that write events without decoding them.
   */
  eventBuffer(): Float64Array {
    return this.ev;
  }

  /** The client order id of event i, for the types that carry one (undefined or stale for others). */
  eventString(i: number): string | undefined {
    return this.evStr[i];
  }

  /** Raw cell of event i (for consumers that read the buffer without decoding; layout in events.ts). */
  eventCell(i: number, cell: number): number {
    return this.ev[i * EVENT_WIDTH + cell];
  }

  // -------------------------------------------------------------------------------------------
  // PLACE

  private place(c: PlaceCommand, ts: number): void {
    const oid = c.order_id;
    const uid = c.user_id;
    const coid = c.client_order_id;
    const side = c.side === 'BUY' ? BUY : c.side === 'SELL' ? SELL : NONE;
    const src = sourceCode(c.source);
    const type = orderTypeCode(c.order_type);
    const stp = stpCode(c.stp);
    const price = c.price_ticks;
    const qty = c.qty_wh;
    const exp = c.expire_at_ms === undefined ? 0 : c.expire_at_ms;
    const canRest = type === T_LIMIT || type === T_POST_ONLY;
    if (
      !isPositiveInt(oid) ||
      !isPositiveInt(uid) ||
      typeof coid !== 'string' ||
      coid.length === 0 ||
      coid.length > MAX_CLIENT_ORDER_ID_LENGTH ||
      !isPositiveInt(c.zone_id) ||
      !isPositiveInt(c.interval_id) ||
      side === NONE ||
      src === NONE ||
      type === NONE ||
      stp === NONE ||
      (side === SELL && src === ANY) ||
      !isPositiveInt(qty) ||
      !isSafeInt(price) ||
      (exp !== 0 && !(canRest && isPositiveInt(exp) && exp > ts)) ||
      this.slotOfId(oid) !== NONE // an open order already has this id
    ) {
      return this.rejectOrder(c, R_INVALID_ORDER);
    }
    if (!this.configured || c.zone_id !== this.zoneId) return this.rejectOrder(c, R_UNKNOWN_ZONE);
    const iv = c.interval_id;
    const book = iv === this.lastIv ? this.lastBook : this.bookOf(iv);
    if (book === NONE) return this.rejectOrder(c, R_UNKNOWN_INTERVAL);
    if (this.status !== ST_ACTIVE) return this.rejectOrder(c, R_ZONE_HALTED);
    if (this.bookClosed[book] !== 0) return this.rejectOrder(c, R_INTERVAL_CLOSED);
    let us = this.userSlot(uid);
    // executeBatch already hashed this command's client order id while looking ahead
    const coidKey = c === this.pfCmd ? this.pfFp : coidFp(uid, coid);
    if (us !== NONE && this.findCoid(coidKey, uid, coid) !== NONE) return this.rejectOrder(c, R_DUPLICATE_CLIENT_ORDER_ID);
    if (price < this.bandMin || price > this.bandMax) return this.rejectOrder(c, R_PRICE_OUT_OF_BAND);
    if (price % this.stepTicks !== 0) return this.rejectOrder(c, R_BAD_TICK);
    if (qty < this.minQty || qty > this.maxQty) return this.rejectOrder(c, R_QTY_OUT_OF_RANGE);
    if (qty % this.lotWh !== 0) return this.rejectOrder(c, R_BAD_LOT);
    if (canRest && ((us === NONE ? 0 : this.uOpen[us]) >= this.maxOpenPerUser || this.openCount >= MAX_OPEN_ORDERS_PER_ZONE)) {
      return this.rejectOrder(c, R_TOO_MANY_OPEN_ORDERS);
    }
    let seller = NONE;
    if (side === SELL && us !== NONE) {
      seller = this.sellerIndex.get(sellerKey(us, book));
      if (seller !== NONE) {
        const limit = this.sLimit[seller];
        if (limit >= 0 && this.sOpen[seller] + this.sSold[seller] + qty > limit) {
          return this.rejectOrder(c, R_SELLER_CAPACITY_EXCEEDED);
        }
      }
    }
    // The taker state is needed by the POST_ONLY and FOK checks.
    this.tkSide = side;
    this.tkSource = src;
    this.tkBook = book;
    this.tkPrice = price;
    this.tkUslot = us;
    this.tkStp = stp;
    if (type === T_POST_ONLY && this.crosses()) return this.rejectOrder(c, R_POST_ONLY_WOULD_MATCH);
    if (type === T_FOK && !this.fokFillable(qty)) return this.rejectOrder(c, R_FOK_NOT_FILLABLE);

    // Accepted.
    if (us === NONE) us = this.newUser(uid);
    if (side === SELL && seller === NONE) seller = this.newSeller(us, book);
    this.tkId = oid;
    this.tkUser = uid;
    this.tkUslot = us;
    this.tkCoid = coid;
    this.tkCoidFp = coidKey;
    this.tkType = type;
    this.tkLeft = qty;
    this.tkFilled = 0;
    this.tkTotal = qty;
    this.tkSeq = this.nextSeq++;
    this.tkExpire = exp;
    this.tkSlot = NONE;
    this.tkSeller = seller;
    this.emitAccepted();
    const killed = type === T_POST_ONLY ? false : this.match();
    this.finishTaker(killed);
  }

  /** After matching: rest, cancel or release the incoming order (MARKET-RULES "Matching"). */
  private finishTaker(killed: boolean): void {
    const slot = this.tkSlot;
    if (killed || this.tkLeft === 0) {
      if (slot !== NONE) this.releaseOrder(slot);
      return;
    }
    if (this.tkType === T_LIMIT || this.tkType === T_POST_ONLY) {
      this.rest();
      return;
    }
    // IOC, MARKET (FOK never gets here with a remainder): the remainder is cancelled, whatever stopped it.
    this.emitTakerCancel(C_UNFILLED);
    if (slot !== NONE) this.releaseOrder(slot);
  }

  // -------------------------------------------------------------------------------------------
  // Matching

  /** Fills the compatible sub-books of the other side into this.cand; returns how many. */
  private candidates(): number {
    const subs = this.subs;
    const base = this.tkBook * SUBS_PER_BOOK;
    const cand = this.cand;
    let cn = 0;
    if (this.tkSide === BUY) {
      // A BUY for X matches SELLs of X; a BUY for ANY matches every SELL.
      if (this.tkSource === ANY) {
        for (let s = 1; s <= 4; s++) {
          const sb = subs[base + 5 + s];
          if (sb != null && sb.n > 0) cand[cn++] = sb;
        }
      } else {
        const sb = subs[base + 5 + this.tkSource];
        if (sb != null && sb.n > 0) cand[cn++] = sb;
      }
    } else {
      // A SELL of X matches BUYs for X and BUYs for ANY.
      const sb = subs[base + this.tkSource];
      if (sb != null && sb.n > 0) cand[cn++] = sb;
      const sa = subs[base + ANY];
      if (sa != null && sa.n > 0) cand[cn++] = sa;
    }
    return cn;
  }

  /** The lowest priority key the taker accepts: BUY at P takes asks with -ask >= -P; SELL at P takes bids >= P. */
  private minKey(): number {
    return this.tkSide === BUY ? -this.tkPrice : this.tkPrice;
  }

  /** POST_ONLY: does any compatible resting order cross the price? (owner and capacity do not matter) */
  private crosses(): boolean {
    const cn = this.candidates();
    const minKey = this.minKey();
    for (let i = 0; i < cn; i++) {
      const sb = this.cand[i];
      if (sb.keys[sb.n - 1] >= minKey) return true;
    }
    return false;
  }

  /**
   * The matching loop (MARKET-RULES "One matching step"). Returns true when self-trade prevention
   * cancelled the incoming remainder.
   */
  private match(): boolean {
    const cn = this.candidates();
    if (cn === 0) return false;
    const cand = this.cand;
    const minKey = this.minKey();
    const book = this.tkBook;
    const lvHead = this.lvHead;
    const of = this.of;
    for (;;) {
      if (this.tkLeft <= 0) return false;
      let bestKey = -Infinity;
      let bestSlot = NONE;
      let bestSeq = 0;
      for (let i = 0; i < cn; i++) {
        const sb = cand[i];
        const n = sb.n;
        if (n === 0) continue;
        const k = sb.keys[n - 1];
        if (k < minKey || k < bestKey) continue;
        const slot = lvHead[sb.lvls[n - 1]];
        const seq = of[slot * OW + F_SEQ];
        if (k > bestKey || seq < bestSeq) {
          bestKey = k;
          bestSlot = slot;
          bestSeq = seq;
        }
      }
      if (bestSlot === NONE) return false;
      const capLeft = this.bookCapacity[book] - this.bookMatched[book];
      // No capacity left: stop before self-trade prevention is considered.
      if (capLeft <= 0) return false;
      if (this.oi[bestSlot * IW + I_USLOT] === this.tkUslot) {
        if (this.tkStp === STP_OLDEST) {
          this.closeResting(bestSlot, E_CANCELLED, C_SELF_TRADE);
          continue;
        }
        if (this.tkStp === STP_BOTH) this.closeResting(bestSlot, E_CANCELLED, C_SELF_TRADE);
        // CANCEL_NEWEST / CANCEL_BOTH: the incoming remainder is cancelled, for every order type.
        this.emitTakerCancel(C_SELF_TRADE);
        this.tkLeft = 0;
        return true;
      }
      this.fill(bestSlot, capLeft);
    }
  }

  /** Fills min(incoming left, resting left, capacity left) at the resting order's price. */
  private fill(slot: number, capLeft: number): void {
    const makerLeft = this.of[slot * OW + F_LEFT];
    let q = this.tkLeft < makerLeft ? this.tkLeft : makerLeft;
    if (capLeft < q) q = capLeft;
    const lvl = this.oi[slot * IW + I_LEVEL];
    this.of[slot * OW + F_LEFT] = makerLeft - q;
    this.of[slot * OW + F_FILLED] += q;
    this.lvQty[lvl] -= q;
    this.touch(lvl);
    this.tkLeft -= q;
    this.tkFilled += q;
    this.bookMatched[this.tkBook] += q;
    if (this.tkSide === BUY) {
      const s = this.oi[slot * IW + I_SELLER];
      this.sOpen[s] -= q;
      this.sSold[s] += q;
    } else {
      this.sSold[this.tkSeller] += q;
    }
    // FILL event
    const f = this.emit(E_FILL, this.bookInterval[this.tkBook]);
    const ev = this.ev;
    ev[f + 3] = ++this.tradeSeq;
    ev[f + 4] = this.of[slot * OW + F_ID];
    ev[f + 5] = this.uId[this.oi[slot * IW + I_USLOT]];
    ev[f + 6] = this.tkId;
    ev[f + 7] = this.tkUser;
    ev[f + 8] = this.lvPrice[lvl];
    ev[f + 9] = q;
    ev[f + 10] = this.tkSide === BUY ? flSource(this.oi[slot * IW + I_FLAGS]) : this.tkSource;
    ev[f + 11] = this.tkSide;
    ev[f + 12] = makerLeft - q;
    ev[f + 13] = this.tkLeft;
    if (makerLeft === q) {
      this.unlinkFromLevel(slot);
      this.releaseOrder(slot);
    }
  }

  /**
   * FOK dry run: the same loop as match(), self-trade prevention and capacity included, without
   * changing anything. True when the whole quantity would fill.
   */
  private fokFillable(qty: number): boolean {
    const cn = this.candidates();
    const cand = this.cand;
    const pos = this.curPos;
    const cur = this.curSlot;
    for (let i = 0; i < cn; i++) {
      pos[i] = cand[i].n - 1;
      cur[i] = this.lvHead[cand[i].lvls[pos[i]]];
    }
    const minKey = this.minKey();
    let cap = this.bookCapacity[this.tkBook] - this.bookMatched[this.tkBook];
    let left = qty;
    for (;;) {
      if (left <= 0) return true;
      let best = NONE;
      let bestKey = -Infinity;
      let bestSeq = 0;
      for (let i = 0; i < cn; i++) {
        if (cur[i] === NONE) continue;
        const k = cand[i].keys[pos[i]];
        if (k < minKey || k < bestKey) continue;
        const s = this.of[(cur[i]) * OW + F_SEQ];
        if (k > bestKey || s < bestSeq) {
          best = i;
          bestKey = k;
          bestSeq = s;
        }
      }
      if (best === NONE) return false;
      if (cap <= 0) return false;
      const slot = cur[best];
      if (this.oi[slot * IW + I_USLOT] === this.tkUslot) {
        if (this.tkStp !== STP_OLDEST) return false; // the incoming remainder would be cancelled
      } else {
        let q = left < this.of[slot * OW + F_LEFT] ? left : this.of[slot * OW + F_LEFT];
        if (cap < q) q = cap;
        left -= q;
        cap -= q;
      }
      // advance the cursor
      const next = this.oi[slot * IW + I_NEXT];
      if (next !== NONE) cur[best] = next;
      else {
        const p = --pos[best];
        cur[best] = p >= 0 ? this.lvHead[cand[best].lvls[p]] : NONE;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Resting orders

  /** Puts the incoming order's remainder on the book (new slot, or its own slot after an amend). */
  private rest(): void {
    let slot = this.tkSlot;
    if (slot === NONE) {
      if (this.coidOld !== this.coidTable) this.scanCoids();
      else if ((this.coidTable.size + 1) * 2 > this.coidTable.mask + 1) this.startCoidRebuild();
      else if (this.coidSpare !== null && this.coidCleared <= this.coidSpare.mask) this.clearCoidSpare();
      slot = this.allocOrder();
    }
    const of = this.of; // after allocOrder: growing the pool replaces the views
    const oi = this.oi;
    if (slot !== this.tkSlot) {
      const us = this.tkUslot;
      const gtd = this.tkExpire !== 0;
      const o = slot * IW;
      of[slot * OW + F_ID] = this.tkId;
      of[slot * OW + F_SEQ] = this.tkSeq;
      oi[o + I_USLOT] = us;
      oi[o + I_BOOK] = this.tkBook;
      oi[o + I_SELLER] = this.tkSeller;
      oi[o + I_FLAGS] = packFlags(this.tkSide, this.tkSource, this.tkType, this.tkStp, gtd);
      oi[o + I_COID_FP] = this.tkCoidFp;
      this.oCoid[slot] = this.tkCoid;
      this.indexId(this.tkId, slot);
      if (slot < this.coidScan) this.coidTable.add(this.tkCoidFp, slot);
      else this.coidOld.put(this.tkCoidFp, slot);
      this.uOpen[us]++;
      this.openCount++;
      this.bookOpen[this.tkBook]++;
      if (gtd) {
        this.oExp[slot] = this.tkExpire;
        this.liveGtd++;
        this.heapPush(this.tkExpire, this.tkId, slot);
      }
    }
    of[slot * OW + F_LEFT] = this.tkLeft;
    of[slot * OW + F_FILLED] = this.tkFilled;
    if (this.tkSide === SELL) this.sOpen[this.tkSeller] += this.tkLeft;
    this.linkToLevel(slot, this.tkPrice);
  }

  /** Cancels (E_CANCELLED) or expires (E_EXPIRED) a resting order with the given reason/cause. */
  private closeResting(slot: number, evType: number, why: number): void {
    const o = slot * IW;
    const f = this.emit(evType, this.bookInterval[this.oi[o + I_BOOK]]);
    const ev = this.ev;
    const left = this.of[slot * OW + F_LEFT];
    ev[f + 3] = this.of[slot * OW + F_ID];
    ev[f + 4] = this.uId[this.oi[o + I_USLOT]];
    ev[f + 5] = why;
    ev[f + 6] = left;
    ev[f + 7] = this.of[slot * OW + F_FILLED];
    this.evStr[this.evN - 1] = this.oCoid[slot];
    if (flSide(this.oi[o + I_FLAGS]) === SELL) this.sOpen[this.oi[o + I_SELLER]] -= left;
    this.unlinkFromLevel(slot);
    this.releaseOrder(slot);
  }

  private allocOrder(): number {
    let slot = this.orderFree;
    if (slot !== NONE) {
      this.orderFree = this.oi[slot * IW + I_NEXT];
      return slot;
    }
    if (this.orderTop === this.oCap) this.growOrders();
    else if (this.orderTop >= this.oCap >> 1) this.prepareOrders();
    return this.orderTop++;
  }

  /** Forgets a closed order: indexes, counts, slot. It must already be off its level. */
  private releaseOrder(slot: number): void {
    const o = slot * IW;
    const us = this.oi[o + I_USLOT];
    this.unindexId(this.of[slot * OW + F_ID], slot);
    this.uOpen[us]--;
    this.openCount--;
    this.bookOpen[this.oi[o + I_BOOK]]--;
    if (flGtd(this.oi[o + I_FLAGS])) this.liveGtd--;
    this.of[slot * OW + F_ID] = 0;
    this.oi[o + I_NEXT] = this.orderFree;
    this.orderFree = slot;
  }

  // -------------------------------------------------------------------------------------------
  // Order id index

  /** Slot of the open order with this id, or NONE. */
  private slotOfId(id: number): number {
    const oc = (id | 0) & this.idOldMask;
    const s = oc < this.idMoved ? this.idRing[(id | 0) & this.idMask] : this.idOld[oc];
    if (s !== NONE && this.of[s * OW + F_ID] === id) return s;
    if (this.idOverflow.size === 0) return NONE;
    return this.idOverflow.get(id);
  }

  /** Indexes a new open order (its record already holds its id). */
  private indexId(id: number, slot: number): void {
    const oc = (id | 0) & this.idOldMask;
    const ring = oc < this.idMoved ? this.idRing : this.idOld;
    const c = oc < this.idMoved ? (id | 0) & this.idMask : oc;
    const held = ring[c];
    // Ring cells only ever point at open orders: an older one still open moves to the overflow.
    if (held !== NONE) this.idOverflow.set(this.of[held * OW + F_ID], held);
    ring[c] = slot;
    if (this.idOld !== this.idRing) this.moveIdCells();
  }

  private unindexId(id: number, slot: number): void {
    const oc = (id | 0) & this.idOldMask;
    const ring = oc < this.idMoved ? this.idRing : this.idOld;
    const c = oc < this.idMoved ? (id | 0) & this.idMask : oc;
    if (ring[c] === slot) ring[c] = NONE;
    else this.idOverflow.delete(id);
  }

  /** Starts doubling the ring (when the pool outgrows it); indexId moves the cells over. */
  private growIdRing(): void {
    while (this.idOld !== this.idRing) this.moveIdCells(); // never in practice: a move ends long before the next growth
    // Fresh (zeroed) memory: every cell of it is written by moveIdCells before it is read.
    this.idRing = new Int32Array(this.idOld.length * 2);
    this.idMask = this.idRing.length - 1;
  }

  /**
   * Moves ID_CELLS_PER_STEP cells of the old ring into the new one. Old cell c holds ids whose new
   * cell is c or c + old length, so a move never collides. The pool doubles when the ring does, so
   * the next growth is at least old-length new orders away: a move of 2 cells per order ends first.
   */
  private moveIdCells(): void {
    const old = this.idOld;
    const ring = this.idRing;
    const n = old.length;
    let c = this.idMoved;
    const end = c + ID_CELLS_PER_STEP < n ? c + ID_CELLS_PER_STEP : n;
    for (; c < end; c++) {
      const s = old[c];
      ring[c] = NONE;
      ring[c + n] = NONE;
      if (s !== NONE) ring[(this.of[s * OW + F_ID] | 0) & this.idMask] = s;
    }
    if (c === n) {
      this.idOld = ring;
      this.idOldMask = this.idMask;
      this.idMoved = 0;
    } else this.idMoved = c;
  }

  // -------------------------------------------------------------------------------------------
  // Client order id index

  /** Slot of the user's open order with this client order id (fp = coidFp(user, id)), or NONE. */
  private findCoid(fp: number, uid: number, coid: string): number {
    const t = this.coidTable;
    for (let c = t.find(fp); c >= 0; c = t.find(fp, c)) {
      const slot = t.slotAt(c);
      if (this.of[slot * OW + F_ID] !== 0 && this.uId[this.oi[slot * IW + I_USLOT]] === uid && this.oCoid[slot] === coid) return slot;
    }
    return this.coidOld === t ? NONE : this.findCoidOld(fp, uid, coid);
  }

  /** findCoid in the table being retired (during a rebuild: open orders in slots not scanned yet). */
  private findCoidOld(fp: number, uid: number, coid: string): number {
    const t = this.coidOld;
    for (let c = t.find(fp); c >= 0; c = t.find(fp, c)) {
      const slot = t.slotAt(c);
      if (this.of[slot * OW + F_ID] !== 0 && this.uId[this.oi[slot * IW + I_USLOT]] === uid && this.oCoid[slot] === coid) return slot;
    }
    return NONE;
  }

  /**
   * Starts dropping the stale entries: a new table (twice as big if the open orders fill a quarter
   * of this one) that scanCoids fills from the open orders, a few slots per new order.
   */
  private startCoidRebuild(): void {
    const cap = this.coidTable.mask + 1;
    const grow = (this.openCount + 1) * 4 > cap;
    const spare = this.coidSpare;
    this.coidOld = this.coidTable;
    if (!grow && spare !== null && this.coidCleared > spare.mask) this.coidTable = spare;
    else this.coidTable = new FpSlotTable(grow ? cap : cap >> 1);
    this.coidSpare = null;
    // coidOld is half full; it takes at most orderTop / (step - 1) more entries (those of the new
    // orders in slots not scanned yet) before the scan ends: a sixteenth of its cells at most. A
    // short scan also keeps short the stretch where a lookup that misses probes both tables.
    this.coidStep = 2 + Math.ceil((this.orderTop * 16) / cap);
    this.scanCoids();
  }

  /** Indexes the open orders of the next coidStep slots in the new table; the end of the scan retires the old one. */
  private scanCoids(): void {
    const t = this.coidTable;
    let s = this.coidScan;
    const end = s + this.coidStep < this.orderTop ? s + this.coidStep : this.orderTop;
    for (; s < end; s++) if (this.of[s * OW + F_ID] !== 0) t.add(this.oi[s * IW + I_COID_FP], s);
    if (s === this.orderTop) {
      // a table of the new one's size is what the next rebuild needs unless that one doubles
      if (this.coidOld.mask === t.mask) {
        this.coidSpare = this.coidOld;
        this.coidCleared = 0;
      }
      this.coidOld = t;
      this.coidScan = 0;
    } else this.coidScan = s;
  }

  private clearCoidSpare(): void {
    const t = this.coidSpare as FpSlotTable;
    const to = this.coidCleared + COID_CLEAR_STEP <= t.mask + 1 ? this.coidCleared + COID_CLEAR_STEP : t.mask + 1;
    t.clearCells(this.coidCleared, to);
    this.coidCleared = to;
  }

  // -------------------------------------------------------------------------------------------
  // Price levels

  private subBook(idx: number): SubBook {
    let sb = this.subs[idx];
    if (sb == null) {
      sb = new SubBook();
      this.subs[idx] = sb;
    }
    return sb;
  }

  /** Appends the order to the FIFO of its (book, side, source, price) level, creating the level. */
  private linkToLevel(slot: number, price: number): void {
    const fl = this.oi[slot * IW + I_FLAGS];
    const side = flSide(fl);
    const subIdx = this.oi[slot * IW + I_BOOK] * SUBS_PER_BOOK + side * 5 + flSource(fl);
    const cc = lvCacheCell(subIdx, price);
    let lvl = this.lvCache[cc];
    if (lvl === NONE || this.lvCount[lvl] === 0 || this.lvSub[lvl] !== subIdx || this.lvPrice[lvl] !== price) {
      lvl = this.levelFor(subIdx, price);
      this.lvCache[cc] = lvl;
    }
    const t = this.lvTail[lvl];
    this.oi[slot * IW + I_LEVEL] = lvl;
    this.oi[slot * IW + I_PREV] = t;
    this.oi[slot * IW + I_NEXT] = NONE;
    if (t !== NONE) this.oi[t * IW + I_NEXT] = slot;
    else this.lvHead[lvl] = slot;
    this.lvTail[lvl] = slot;
    this.lvQty[lvl] += this.of[slot * OW + F_LEFT];
    this.lvCount[lvl]++;
    this.touch(lvl);
  }

  /** The level of a sub-book at a price, created (and inserted in price order) if missing. */
  private levelFor(subIdx: number, price: number): number {
    const sb = this.subBook(subIdx);
    const key = levelKey(subIdx, price);
    const n = sb.n;
    if (n > 0 && sb.keys[n - 1] === key) return sb.lvls[n - 1];
    const keys = sb.keys;
    const lo = lowerBound(keys, n, key);
    if (lo < n && keys[lo] === key) return sb.lvls[lo];
    const lvl = this.allocLevel(subIdx, price);
    if (n === keys.length) {
      sb.keys = growF64(sb.keys, n * 2);
      sb.lvls = growI32(sb.lvls, n * 2);
    }
    if (lo < n) {
      sb.keys.copyWithin(lo + 1, lo, n);
      sb.lvls.copyWithin(lo + 1, lo, n);
    }
    sb.keys[lo] = key;
    sb.lvls[lo] = lvl;
    sb.n = n + 1;
    return lvl;
  }

  /** Takes the order off its level's FIFO (its remaining Wh leave the level); drops an emptied level. */
  private unlinkFromLevel(slot: number): void {
    const lvl = this.oi[slot * IW + I_LEVEL];
    const p = this.oi[slot * IW + I_PREV];
    const n = this.oi[slot * IW + I_NEXT];
    if (p !== NONE) this.oi[p * IW + I_NEXT] = n;
    else this.lvHead[lvl] = n;
    if (n !== NONE) this.oi[n * IW + I_PREV] = p;
    else this.lvTail[lvl] = p;
    this.lvQty[lvl] -= this.of[slot * OW + F_LEFT];
    this.touch(lvl);
    if (--this.lvCount[lvl] === 0) this.removeLevel(lvl);
  }

  private removeLevel(lvl: number): void {
    const sb = this.subs[this.lvSub[lvl]] as SubBook;
    const n = sb.n;
    if (sb.lvls[n - 1] === lvl) sb.n = n - 1;
    else {
      const lo = lowerBound(sb.keys, n, levelKey(this.lvSub[lvl], this.lvPrice[lvl]));
      sb.keys.copyWithin(lo, lo + 1, n);
      sb.lvls.copyWithin(lo, lo + 1, n);
      sb.n = n - 1;
    }
    // The slot is recycled only after this command's BOOK_LEVEL events are written.
    if (this.pendingN === this.pendingFree.length) this.pendingFree = growI32(this.pendingFree, this.pendingN * 2);
    this.pendingFree[this.pendingN++] = lvl;
  }

  private allocLevel(subIdx: number, price: number): number {
    let lvl = this.lvFree;
    if (lvl !== NONE) this.lvFree = this.lvHead[lvl];
    else {
      if (this.lvTop === this.lvCap) this.growLevels();
      lvl = this.lvTop++;
    }
    this.lvPrice[lvl] = price;
    this.lvQty[lvl] = 0;
    this.lvCount[lvl] = 0;
    this.lvHead[lvl] = NONE;
    this.lvTail[lvl] = NONE;
    this.lvSub[lvl] = subIdx;
    this.lvTouch[lvl] = this.epoch - 1;
    return lvl;
  }

  private touch(lvl: number): void {
    if (this.lvTouch[lvl] === this.epoch) return;
    this.lvTouch[lvl] = this.epoch;
    if (this.touchedN === this.touched.length) this.touched = growI32(this.touched, this.touchedN * 2);
    this.touched[this.touchedN++] = lvl;
  }

  /** Level (index into the level pool) of a sub-book at a price, or NONE. */
  private findLevel(subIdx: number, price: number): number {
    const sb = this.subs[subIdx];
    if (sb == null || sb.n === 0) return NONE;
    const cached = this.lvCache[lvCacheCell(subIdx, price)];
    if (cached !== NONE && this.lvCount[cached] !== 0 && this.lvSub[cached] === subIdx && this.lvPrice[cached] === price) return cached;
    const key = levelKey(subIdx, price);
    const keys = sb.keys;
    const lo = lowerBound(keys, sb.n, key);
    return lo < sb.n && keys[lo] === key ? sb.lvls[lo] : NONE;
  }

  /** One BOOK_LEVEL event per level the command touched, with the level's final totals. */
  private flushLevels(): void {
    const touched = this.touched;
    for (let i = 0; i < this.touchedN; i++) {
      const lvl = touched[i];
      const subIdx = this.lvSub[lvl];
      const book = (subIdx / SUBS_PER_BOOK) | 0;
      const within = subIdx - book * SUBS_PER_BOOK;
      const side = within < 5 ? BUY : SELL;
      const source = within - side * 5;
      const price = this.lvPrice[lvl];
      let live = lvl;
      if (this.lvCount[lvl] === 0) live = this.findLevel(subIdx, price); // re-created in the same command?
      const srcQty = live === NONE ? 0 : this.lvQty[live];
      const srcCount = live === NONE ? 0 : this.lvCount[live];
      let total = srcQty;
      const base = book * SUBS_PER_BOOK + side * 5;
      for (let s = side === BUY ? 0 : 1; s <= 4; s++) {
        if (s === source) continue;
        const other = this.findLevel(base + s, price);
        if (other !== NONE) total += this.lvQty[other];
      }
      const f = this.emit(E_BOOK_LEVEL, this.bookInterval[book]);
      const ev = this.ev;
      ev[f + 3] = side;
      ev[f + 4] = source;
      ev[f + 5] = price;
      ev[f + 6] = total;
      ev[f + 7] = srcQty;
      ev[f + 8] = srcCount;
    }
    this.touchedN = 0;
    for (let i = 0; i < this.pendingN; i++) {
      const lvl = this.pendingFree[i];
      this.lvHead[lvl] = this.lvFree;
      this.lvFree = lvl;
    }
    this.pendingN = 0;
  }

  // -------------------------------------------------------------------------------------------
  // CANCEL, AMEND, MASS_CANCEL

  private cancel(c: CancelCommand): void {
    if (!isPositiveInt(c.order_id) || !isPositiveInt(c.user_id)) return this.rejectOrder(c, R_INVALID_ORDER);
    const slot = this.slotOfId(c.order_id);
    // Another user's order answers exactly like a finished one: no hint that it exists.
    if (slot === NONE || this.uId[this.oi[slot * IW + I_USLOT]] !== c.user_id) return this.rejectOrder(c, R_UNKNOWN_ORDER);
    this.closeResting(slot, E_CANCELLED, C_USER);
  }

  private amend(c: AmendCommand): void {
    const newPrice = c.price_ticks;
    const newQty = c.qty_wh;
    if (
      !isPositiveInt(c.order_id) ||
      !isPositiveInt(c.user_id) ||
      (newPrice === undefined && newQty === undefined) ||
      (newPrice !== undefined && !isSafeInt(newPrice)) ||
      (newQty !== undefined && !isNonNegativeInt(newQty))
    ) {
      return this.rejectOrder(c, R_INVALID_ORDER);
    }
    const slot = this.slotOfId(c.order_id);
    if (slot === NONE || this.uId[this.oi[slot * IW + I_USLOT]] !== c.user_id) return this.rejectOrder(c, R_UNKNOWN_ORDER);
    if (this.status !== ST_ACTIVE) return this.rejectOrder(c, R_ZONE_HALTED); // reductions too
    const oldPrice = this.lvPrice[this.oi[slot * IW + I_LEVEL]];
    const filled = this.of[slot * OW + F_FILLED];
    const oldTotal = filled + this.of[slot * OW + F_LEFT];
    const price = newPrice === undefined ? oldPrice : newPrice;
    const total = newQty === undefined ? oldTotal : newQty;
    // A new total at or below the filled quantity cancels the remainder.
    if (total <= filled) return this.closeResting(slot, E_CANCELLED, C_AMEND);
    if (newPrice !== undefined) {
      if (price < this.bandMin || price > this.bandMax) return this.rejectOrder(c, R_PRICE_OUT_OF_BAND);
      if (price % this.stepTicks !== 0) return this.rejectOrder(c, R_BAD_TICK);
    }
    if (newQty !== undefined) {
      if (total < this.minQty || total > this.maxQty) return this.rejectOrder(c, R_QTY_OUT_OF_RANGE);
      if (total % this.lotWh !== 0) return this.rejectOrder(c, R_BAD_LOT);
    }
    const fl = this.oi[slot * IW + I_FLAGS];
    const side = flSide(fl);
    const seller = this.oi[slot * IW + I_SELLER];
    const increase = total - oldTotal;
    if (side === SELL && increase > 0) {
      const limit = this.sLimit[seller];
      if (limit >= 0 && this.sOpen[seller] + this.sSold[seller] + increase > limit) {
        return this.rejectOrder(c, R_SELLER_CAPACITY_EXCEEDED);
      }
    }
    const keep = price === oldPrice && total <= oldTotal;
    const type = flType(fl);
    if (!keep && type === T_POST_ONLY) {
      this.tkSide = side;
      this.tkSource = flSource(fl);
      this.tkBook = this.oi[slot * IW + I_BOOK];
      this.tkPrice = price;
      if (this.crosses()) return this.rejectOrder(c, R_POST_ONLY_WOULD_MATCH); // left unchanged
    }
    const newLeft = total - filled;
    if (keep) {
      // Same price, total not above the old one: priority kept.
      const delta = this.of[slot * OW + F_LEFT] - newLeft;
      const lvl = this.oi[slot * IW + I_LEVEL];
      this.of[slot * OW + F_LEFT] = newLeft;
      this.lvQty[lvl] -= delta;
      this.touch(lvl);
      if (side === SELL) this.sOpen[seller] -= delta;
      this.emitAmended(slot, price, true);
      return;
    }
    // Priority lost: off the book, new seq, then it matches again as an incoming order of its type.
    if (side === SELL) this.sOpen[seller] -= this.of[slot * OW + F_LEFT];
    this.unlinkFromLevel(slot);
    this.of[slot * OW + F_LEFT] = newLeft;
    this.of[slot * OW + F_SEQ] = this.nextSeq++;
    this.emitAmended(slot, price, false);
    this.tkId = this.of[slot * OW + F_ID];
    this.tkUslot = this.oi[slot * IW + I_USLOT];
    this.tkUser = this.uId[this.tkUslot];
    this.tkCoid = this.oCoid[slot];
    this.tkSide = side;
    this.tkSource = flSource(fl);
    this.tkType = type;
    this.tkStp = flStp(fl);
    this.tkPrice = price;
    this.tkLeft = newLeft;
    this.tkFilled = filled;
    this.tkTotal = total;
    this.tkSeq = this.of[slot * OW + F_SEQ];
    this.tkExpire = flGtd(fl) ? this.oExp[slot] : 0;
    this.tkBook = this.oi[slot * IW + I_BOOK];
    this.tkSlot = slot;
    this.tkSeller = seller;
    const killed = type === T_POST_ONLY ? false : this.match();
    this.finishTaker(killed);
  }

  private massCancel(c: MassCancelCommand): void {
    const scope = c.scope;
    if (scope === 'USER' || scope === 'USER_ZONE') {
      if (!isPositiveInt(c.user_id)) return this.rejectCommand(c, R_INVALID_COMMAND);
      if (scope === 'USER_ZONE' && c.zone_id !== this.zoneId) return this.rejectCommand(c, R_UNKNOWN_ZONE);
      const us = this.userIndex.get(c.user_id);
      if (us === NONE) return;
      const oi = this.oi;
      for (const s of this.openSlotsInSeqOrder((slot) => oi[slot * IW + I_USLOT] === us)) this.closeResting(s, E_CANCELLED, C_MASS_CANCEL);
      return;
    }
    if (scope === 'INTERVAL') {
      if (!isPositiveInt(c.interval_id)) return this.rejectCommand(c, R_INVALID_COMMAND);
      if (c.zone_id !== undefined && c.zone_id !== this.zoneId) return this.rejectCommand(c, R_UNKNOWN_ZONE);
      const book = this.intervalIndex.get(c.interval_id);
      if (book === NONE) return this.rejectCommand(c, R_UNKNOWN_INTERVAL);
      this.closeBookOrders(book, E_CANCELLED, C_MASS_CANCEL);
      return;
    }
    this.rejectCommand(c, R_INVALID_COMMAND);
  }

  /** Closes every open order of one book (or all books when book is NONE), in seq order. */
  private closeBookOrders(book: number, evType: number, why: number): void {
    const oi = this.oi;
    const slots = this.openSlotsInSeqOrder((s) => book === NONE || oi[s * IW + I_BOOK] === book);
    for (const s of slots) this.closeResting(s, evType, why);
  }

  /**
   * Open order slots passing `keep`, in seq order. A scan of the pool: the operator paths (halt,
   * gate closure, mass cancel, snapshots) pay O(pool) so that the order hot path keeps no zone or
   * user lists (each costs two cache misses per cancel or fill).
   */
  private openSlotsInSeqOrder(keep: (slot: number) => boolean): number[] {
    const of = this.of;
    const out: number[] = [];
    for (let s = 0; s < this.orderTop; s++) if (of[s * OW + F_ID] !== 0 && keep(s)) out.push(s);
    return out.sort((a, b) => of[a * OW + F_SEQ] - of[b * OW + F_SEQ]);
  }

  // -------------------------------------------------------------------------------------------
  // Good-till-time expiry

  /** Expires every good-till-time order whose expiry <= ts, in (expiry, seq) order. */
  private expireDue(ts: number): void {
    const due = this.due;
    due.length = 0;
    while (this.hN > 0 && this.hExp[0] <= ts) {
      const exp = this.hExp[0];
      const id = this.hId[0];
      const slot = this.hSlot[0];
      this.heapPop();
      // Stale entries (order closed, slot reused) are skipped.
      if (this.of[slot * OW + F_ID] === id && flGtd(this.oi[slot * IW + I_FLAGS]) && this.oExp[slot] === exp) due.push(slot);
    }
    if (due.length > 1) {
      const of = this.of;
      const oExp = this.oExp;
      due.sort((a, b) => oExp[a] - oExp[b] || of[a * OW + F_SEQ] - of[b * OW + F_SEQ]);
    }
    for (let i = 0; i < due.length; i++) {
      const slot = due[i];
      if (this.of[slot * OW + F_ID] !== 0) this.closeResting(slot, E_EXPIRED, X_GOOD_TILL_TIME);
    }
    this.nextDueMs = this.hN > 0 ? this.hExp[0] : Infinity;
  }

  private heapPush(exp: number, id: number, slot: number): void {
    if (this.hN > 2 * this.liveGtd + 1024) this.heapRebuild(); // drop stale entries
    if (this.hN === this.hCap) {
      this.hCap *= 2;
      this.hExp = growF64(this.hExp, this.hCap);
      this.hId = growF64(this.hId, this.hCap);
      this.hSlot = growI32(this.hSlot, this.hCap);
    }
    let i = this.hN++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.hExp[p] <= exp) break;
      this.hExp[i] = this.hExp[p];
      this.hId[i] = this.hId[p];
      this.hSlot[i] = this.hSlot[p];
      i = p;
    }
    this.hExp[i] = exp;
    this.hId[i] = id;
    this.hSlot[i] = slot;
    if (exp < this.nextDueMs) this.nextDueMs = exp;
  }

  private heapPop(): void {
    const n = --this.hN;
    if (n === 0) return;
    const exp = this.hExp[n];
    const id = this.hId[n];
    const slot = this.hSlot[n];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && this.hExp[c + 1] < this.hExp[c]) c++;
      if (this.hExp[c] >= exp) break;
      this.hExp[i] = this.hExp[c];
      this.hId[i] = this.hId[c];
      this.hSlot[i] = this.hSlot[c];
      i = c;
    }
    this.hExp[i] = exp;
    this.hId[i] = id;
    this.hSlot[i] = slot;
  }

  private heapRebuild(): void {
    this.hN = 0;
    this.nextDueMs = Infinity;
    const live = this.liveGtd;
    this.liveGtd = -1_000_000_000; // no recursive rebuild while re-pushing
    for (let s = 0; s < this.orderTop; s++) {
      if (this.of[s * OW + F_ID] !== 0 && flGtd(this.oi[s * IW + I_FLAGS])) this.heapPush(this.oExp[s], this.of[s * OW + F_ID], s);
    }
    this.liveGtd = live;
  }

  // -------------------------------------------------------------------------------------------
  // Operator commands

  private configure(c: ConfigureZoneCommand): void {
    if (c.zone_id !== this.zoneId) return this.rejectCommand(c, R_UNKNOWN_ZONE);
    const status = c.status === undefined ? this.status : statusCode(c.status);
    if (
      !isPositiveInt(c.price_step_ticks) ||
      !isPositiveInt(c.lot_wh) ||
      !isSafeInt(c.band_min_ticks) ||
      !isSafeInt(c.band_max_ticks) ||
      c.band_min_ticks > c.band_max_ticks ||
      !isPositiveInt(c.min_qty_wh) ||
      !isPositiveInt(c.max_qty_wh) ||
      c.min_qty_wh > c.max_qty_wh ||
      !isNonNegativeInt(c.max_open_orders_per_user) ||
      status < 0
    ) {
      return this.rejectCommand(c, R_INVALID_COMMAND);
    }
    this.configured = true;
    this.stepTicks = c.price_step_ticks;
    this.lotWh = c.lot_wh;
    this.bandMin = c.band_min_ticks;
    this.bandMax = c.band_max_ticks;
    this.minQty = c.min_qty_wh;
    this.maxQty = c.max_qty_wh;
    this.maxOpenPerUser = c.max_open_orders_per_user;
    this.status = status;
    const f = this.emit(E_ZONE_CONFIGURED, 0);
    const ev = this.ev;
    ev[f + 3] = this.stepTicks;
    ev[f + 4] = this.lotWh;
    ev[f + 5] = this.bandMin;
    ev[f + 6] = this.bandMax;
    ev[f + 7] = this.minQty;
    ev[f + 8] = this.maxQty;
    ev[f + 9] = this.maxOpenPerUser;
    ev[f + 10] = this.status;
  }

  private openInterval(c: OpenIntervalCommand): void {
    if (!this.configured) return this.rejectCommand(c, R_UNKNOWN_ZONE);
    if (!isPositiveInt(c.interval_id) || !isNonNegativeInt(c.capacity_wh)) return this.rejectCommand(c, R_INVALID_COMMAND);
    if (this.intervalIndex.get(c.interval_id) !== NONE) return this.rejectCommand(c, R_INTERVAL_EXISTS);
    if (this.bookN >= MAX_INTERVALS_PER_ZONE) return this.rejectCommand(c, R_INVALID_COMMAND);
    this.addBook(c.interval_id, c.capacity_wh, 0, false);
    const f = this.emit(E_INTERVAL_OPENED, c.interval_id);
    this.ev[f + 3] = c.capacity_wh;
  }

  private addBook(intervalId: number, capacityWh: number, matchedWh: number, closed: boolean): number {
    if (this.bookN === this.bookCapN) {
      const n = this.bookCapN * 2;
      this.bookInterval = growF64(this.bookInterval, n);
      this.bookCapacity = growF64(this.bookCapacity, n);
      this.bookMatched = growF64(this.bookMatched, n);
      this.bookClosed = growU8(this.bookClosed, n);
      this.bookOpen = growI32(this.bookOpen, n);
      this.bookCapN = n;
    }
    const book = this.bookN++;
    this.bookInterval[book] = intervalId;
    this.bookCapacity[book] = capacityWh;
    this.bookMatched[book] = matchedWh;
    this.bookClosed[book] = closed ? 1 : 0;
    this.bookOpen[book] = 0;
    for (let i = 0; i < SUBS_PER_BOOK; i++) this.subs.push(null);
    this.intervalIndex.set(intervalId, book);
    return book;
  }

  /** Gate closure: every open order of the book EXPIRES; later orders for it are INTERVAL_CLOSED. Final. */
  private gateClose(c: GateCloseCommand): void {
    if (!isPositiveInt(c.interval_id)) return this.rejectCommand(c, R_INVALID_COMMAND);
    const book = this.intervalIndex.get(c.interval_id);
    if (book === NONE) return this.rejectCommand(c, R_UNKNOWN_INTERVAL);
    if (this.bookClosed[book] !== 0) return this.rejectCommand(c, R_INTERVAL_CLOSED);
    this.bookClosed[book] = 1;
    const f = this.emit(E_GATE_CLOSED, c.interval_id);
    this.ev[f + 3] = this.bookOpen[book];
    this.closeBookOrders(book, E_EXPIRED, X_GATE_CLOSE);
    this.retireBook(book);
  }

  /**
   * Forgets what a closed book no longer needs: its sellers (limit, sold and open Wh per user; no
   * order can be placed or amended in it again) and its empty sub-books. A zone opens 96 books a
   * day; without this, sellers (one per user per interval) and sub-books would pile up for the
   * life of the zone, and with them the snapshot and every state hash. The interval itself stays
   * known (closed), so a late order is still INTERVAL_CLOSED.
   */
  private retireBook(book: number): void {
    for (let s = 0; s < this.sellerN; s++) {
      if (this.sBook[s] !== book) continue;
      this.sellerIndex.delete(sellerKey(this.userIndex.get(this.sUser[s]), book));
      this.sBook[s] = NONE;
      this.sellerFree.push(s);
    }
    // every order of the book has just expired, so its sub-books are empty (one that is not stays)
    for (let i = 0; i < SUBS_PER_BOOK; i++) {
      const sb = this.subs[book * SUBS_PER_BOOK + i];
      if (sb != null && sb.n === 0) this.subs[book * SUBS_PER_BOOK + i] = null;
    }
  }

  /** HALT / MAINTENANCE / RESUME. CANCEL_RESTING cancels every open order of the zone in seq order. */
  private halt(policy: unknown, status: number, cancels: boolean): void {
    const p = policyCode(policy);
    if (!this.configured) return this.rejectCommand({} as Command, R_UNKNOWN_ZONE);
    if (p < 0) return this.rejectCommand({} as Command, R_INVALID_COMMAND);
    this.status = status;
    const f = this.emit(E_ZONE_STATUS, 0);
    this.ev[f + 3] = status;
    this.ev[f + 4] = p;
    if (cancels && p === 0) this.closeBookOrders(NONE, E_CANCELLED, C_HALT);
  }

  private setSellerLimit(c: SetSellerLimitCommand): void {
    const limit = c.limit_wh;
    if (!isPositiveInt(c.user_id) || !isPositiveInt(c.interval_id) || !(limit === null || isNonNegativeInt(limit))) {
      return this.rejectCommand(c, R_INVALID_COMMAND);
    }
    const book = this.intervalIndex.get(c.interval_id);
    if (book === NONE) return this.rejectCommand(c, R_UNKNOWN_INTERVAL);
    if (this.bookClosed[book] !== 0) return this.rejectCommand(c, R_INTERVAL_CLOSED); // its sellers are retired
    let us = this.userIndex.get(c.user_id);
    if (us === NONE) us = this.newUser(c.user_id);
    let s = this.sellerIndex.get(sellerKey(us, book));
    if (s === NONE) s = this.newSeller(us, book);
    this.sLimit[s] = limit === null ? -1 : limit;
    const f = this.emit(E_SELLER_LIMIT_SET, c.interval_id);
    this.ev[f + 3] = c.user_id;
    this.ev[f + 4] = limit === null ? -1 : limit;
  }

  /** Book of an interval id (NONE if unknown); remembers the last hit (books are never removed). */
  private bookOf(iv: number): number {
    const book = this.intervalIndex.get(iv);
    if (book !== NONE) {
      this.lastIv = iv;
      this.lastBook = book;
    }
    return book;
  }

  /** User slot of a user id (NONE if unknown), through a direct-mapped cache (user slots are never removed). */
  private userSlot(uid: number): number {
    const cell = (uid | 0) & (USER_CACHE_CELLS - 1);
    const cached = this.uCache[cell];
    if (cached !== NONE && this.uId[cached] === uid) return cached;
    const us = this.userIndex.get(uid);
    if (us !== NONE) this.uCache[cell] = us;
    return us;
  }

  private newUser(uid: number): number {
    if (this.userN === this.uCap) {
      const n = this.uCap * 2;
      this.uId = growF64(this.uId, n);
      this.uOpen = growI32(this.uOpen, n);
      this.uCap = n;
    }
    const us = this.userN++;
    this.uId[us] = uid;
    this.uOpen[us] = 0;
    this.userIndex.set(uid, us);
    return us;
  }

  private newSeller(us: number, book: number): number {
    if (this.sellerFree.length > 0) return this.initSeller(this.sellerFree.pop()!, us, book);
    if (this.sellerN === this.sCap) {
      const n = this.sCap * 2;
      this.sUser = growF64(this.sUser, n);
      this.sBook = growI32(this.sBook, n);
      this.sLimit = growF64(this.sLimit, n);
      this.sSold = growF64(this.sSold, n);
      this.sOpen = growF64(this.sOpen, n);
      this.sCap = n;
    }
    return this.initSeller(this.sellerN++, us, book);
  }

  private initSeller(s: number, us: number, book: number): number {
    this.sUser[s] = this.uId[us];
    this.sBook[s] = book;
    this.sLimit[s] = -1;
    this.sSold[s] = 0;
    this.sOpen[s] = 0;
    this.sellerIndex.set(sellerKey(us, book), s);
    return s;
  }

  // -------------------------------------------------------------------------------------------
  // Event writing

  private emit(type: number, intervalId: number): number {
    if (this.evN === this.evCap) {
      this.evCap *= 2;
      this.ev = growF64(this.ev, this.evCap * EVENT_WIDTH);
    }
    const f = this.evN++ * EVENT_WIDTH;
    this.ev[f] = type;
    this.ev[f + 1] = ++this.eventSeq;
    this.ev[f + 2] = intervalId;
    return f;
  }

  private emitAccepted(): void {
    const f = this.emit(E_ACCEPTED, this.bookInterval[this.tkBook]);
    const ev = this.ev;
    ev[f + 3] = this.tkId;
    ev[f + 4] = this.tkUser;
    ev[f + 5] = this.tkSide;
    ev[f + 6] = this.tkSource;
    ev[f + 7] = this.tkType;
    ev[f + 8] = this.tkStp;
    ev[f + 9] = this.tkPrice;
    ev[f + 10] = this.tkTotal;
    ev[f + 11] = this.tkSeq;
    ev[f + 12] = this.tkExpire;
    this.evStr[this.evN - 1] = this.tkCoid;
  }

  private emitTakerCancel(reason: number): void {
    const f = this.emit(E_CANCELLED, this.bookInterval[this.tkBook]);
    const ev = this.ev;
    ev[f + 3] = this.tkId;
    ev[f + 4] = this.tkUser;
    ev[f + 5] = reason;
    ev[f + 6] = this.tkLeft;
    ev[f + 7] = this.tkFilled;
    this.evStr[this.evN - 1] = this.tkCoid;
  }

  private emitAmended(slot: number, price: number, kept: boolean): void {
    const f = this.emit(E_AMENDED, this.bookInterval[this.oi[slot * IW + I_BOOK]]);
    const ev = this.ev;
    ev[f + 3] = this.of[slot * OW + F_ID];
    ev[f + 4] = this.uId[this.oi[slot * IW + I_USLOT]];
    ev[f + 5] = price;
    ev[f + 6] = this.of[slot * OW + F_FILLED] + this.of[slot * OW + F_LEFT];
    ev[f + 7] = this.of[slot * OW + F_LEFT];
    ev[f + 8] = this.of[slot * OW + F_SEQ];
    ev[f + 9] = kept ? 1 : 0;
    ev[f + 10] = this.of[slot * OW + F_FILLED];
    this.evStr[this.evN - 1] = this.oCoid[slot];
  }

  private rejectOrder(c: PlaceCommand | CancelCommand | AmendCommand, reason: number): void {
    const place = c as Partial<PlaceCommand>;
    const f = this.emit(E_REJECTED, num(place.interval_id));
    const ev = this.ev;
    ev[f + 3] = num(c.order_id);
    ev[f + 4] = num(c.user_id);
    ev[f + 5] = reason;
    ev[f + 6] = this.evCmd;
    this.evStr[this.evN - 1] = str(place.client_order_id);
  }

  private rejectCommand(c: Command, reason: number): void {
    const any = c as unknown as Record<string, unknown>;
    const f = this.emit(E_REJECTED, num(any.interval_id));
    const ev = this.ev;
    ev[f + 3] = num(any.order_id);
    ev[f + 4] = num(any.user_id);
    ev[f + 5] = reason;
    ev[f + 6] = this.evCmd;
    this.evStr[this.evN - 1] = str(any.client_order_id);
  }

  // -------------------------------------------------------------------------------------------
  // Growth

  /** With the pool half full or more: takes the next pool and faults in one more page of it. */
  private prepareOrders(): void {
    if (this.nextOi === NO_I32) {
      const n = this.oCap * 2;
      this.nextOi = new Int32Array(n * IW);
      this.nextExp = new Float64Array(n);
      this.faultOi = 0;
      this.faultExp = 0;
    }
    // 72 bytes a slot of the next pool (n = 2 × oCap slots): ~n / 57 pages, over the oCap / 2 new
    // slots to come, one a slot is done in time.
    if (this.faultOi < this.nextOi.length) {
      this.nextOi[this.faultOi] = 0;
      this.faultOi += PAGE_BYTES >> 2;
    } else if (this.faultExp < this.nextExp.length) {
      this.nextExp[this.faultExp] = 0;
      this.faultExp += PAGE_BYTES >> 3;
    }
  }

  /**
   * The pool is full: copies it into the next one (taken and faulted in since it was half full:
   * orderTop only ever steps by one through allocOrder), and starts doubling the id ring if the
   * pool outgrows it. The copy is the one O(n) step left: 72 bytes a slot at memory speed.
   */
  private growOrders(): void {
    const buf = this.nextOi.buffer;
    new Uint8Array(buf).set(new Uint8Array(this.of.buffer));
    this.of = new Float64Array(buf);
    this.oi = new Int32Array(buf);
    this.nextExp.set(this.oExp);
    this.oExp = this.nextExp;
    this.nextOi = NO_I32;
    this.nextExp = NO_F64;
    this.oCap *= 2;
    if (this.idRing.length < this.oCap) this.growIdRing();
  }

  private growLevels(): void {
    const n = this.lvCap * 2;
    this.lvPrice = growF64(this.lvPrice, n);
    this.lvQty = growF64(this.lvQty, n);
    this.lvCount = growI32(this.lvCount, n);
    this.lvHead = growI32(this.lvHead, n);
    this.lvTail = growI32(this.lvTail, n);
    this.lvSub = growI32(this.lvSub, n);
    this.lvTouch = growI32(this.lvTouch, n);
    this.lvCap = n;
  }

  // ===========================================================================================
  // Queries (not on the hot path; they allocate)

  config(): ZoneConfig | null {
    if (!this.configured) return null;
    return {
      zone_id: this.zoneId,
      price_step_ticks: this.stepTicks,
      lot_wh: this.lotWh,
      band_min_ticks: this.bandMin,
      band_max_ticks: this.bandMax,
      min_qty_wh: this.minQty,
      max_qty_wh: this.maxQty,
      max_open_orders_per_user: this.maxOpenPerUser,
      status: ZONE_STATUSES[this.status],
    };
  }

  /** Open orders in this zone. */
  get openOrderCount(): number {
    return this.openCount;
  }

  /** How many open orders are good till a time (expire_at_ms). */
  get openGoodTillTimeCount(): number {
    return this.liveGtd;
  }

  /** The open order with this id, or undefined (finished orders are forgotten). */
  order(order_id: number): OrderView | undefined {
    const slot = this.slotOfId(order_id);
    return slot === NONE ? undefined : this.view(slot);
  }

  /** A user's open orders in this zone, in seq order. */
  openOrdersOfUser(user_id: number): OrderView[] {
    const us = this.userIndex.get(user_id);
    const out: OrderView[] = [];
    if (us === NONE) return out;
    const oi = this.oi;
    for (const s of this.openSlotsInSeqOrder((slot) => oi[slot * IW + I_USLOT] === us)) out.push(this.view(s));
    return out;
  }

  /**
   * The open order of user_id with this client order id in this zone, or undefined. Client order ids
   * are unique per user across all zones; the engine enforces it within its zone, and the runtime
   * asks every zone engine of the user (or keeps its own index) before routing a PLACE.
   */
  orderIdByClientOrderId(user_id: number, client_order_id: string): number | undefined {
    const us = this.userIndex.get(user_id);
    if (us === NONE) return undefined;
    const slot = this.findCoid(coidFp(user_id, client_order_id), user_id, client_order_id);
    return slot === NONE ? undefined : this.of[slot * OW + F_ID];
  }

  /** Every open order of the zone in seq order. */
  openOrders(): OrderView[] {
    const out: OrderView[] = [];
    for (const s of this.openSlotsInSeqOrder(() => true)) out.push(this.view(s));
    return out;
  }

  interval(interval_id: number): IntervalView | undefined {
    const book = this.intervalIndex.get(interval_id);
    return book === NONE ? undefined : this.intervalView(book);
  }

  intervals(): IntervalView[] {
    const out: IntervalView[] = [];
    for (let b = 0; b < this.bookN; b++) out.push(this.intervalView(b));
    return out.sort((a, b) => a.interval_id - b.interval_id);
  }

  seller(user_id: number, interval_id: number): SellerView | undefined {
    const us = this.userIndex.get(user_id);
    const book = this.intervalIndex.get(interval_id);
    if (us === NONE || book === NONE) return undefined;
    const s = this.sellerIndex.get(sellerKey(us, book));
    return s === NONE ? undefined : this.sellerView(s);
  }

  /** L2: aggregated levels per side, best first; with `source`, only orders naming that source. */
  l2(interval_id: number, options: { source?: Source; depth?: number } = {}): L2Snapshot {
    const book = this.intervalIndex.get(interval_id);
    const out: L2Snapshot = { interval_id, bids: [], asks: [] };
    if (book === NONE) return out;
    const only = options.source === undefined ? NONE : sourceCode(options.source);
    const depth = options.depth ?? Infinity;
    for (let side = BUY; side <= SELL; side++) {
      const agg = new Map<number, L2Level>();
      for (let s = side === BUY ? 0 : 1; s <= 4; s++) {
        if (only !== NONE && s !== only) continue;
        const sb = this.subs[book * SUBS_PER_BOOK + side * 5 + s];
        if (sb == null) continue;
        for (let i = 0; i < sb.n; i++) {
          const lvl = sb.lvls[i];
          const price = this.lvPrice[lvl];
          const cur = agg.get(price);
          if (cur === undefined) agg.set(price, { price_ticks: price, qty_wh: this.lvQty[lvl], order_count: this.lvCount[lvl] });
          else {
            cur.qty_wh += this.lvQty[lvl];
            cur.order_count += this.lvCount[lvl];
          }
        }
      }
      const levels = [...agg.values()].sort((a, b) => (side === BUY ? b.price_ticks - a.price_ticks : a.price_ticks - b.price_ticks));
      if (levels.length > depth) levels.length = depth;
      if (side === BUY) out.bids = levels;
      else out.asks = levels;
    }
    return out;
  }

  /** L3: every resting order per side in priority order (best price, then earliest seq, across sources). */
  l3(interval_id: number): L3Snapshot {
    const book = this.intervalIndex.get(interval_id);
    const out: L3Snapshot = { interval_id, bids: [], asks: [] };
    if (book === NONE) return out;
    for (let side = BUY; side <= SELL; side++) {
      const orders: OrderView[] = [];
      for (let s = side === BUY ? 0 : 1; s <= 4; s++) {
        const sb = this.subs[book * SUBS_PER_BOOK + side * 5 + s];
        if (sb == null) continue;
        for (let i = sb.n - 1; i >= 0; i--) {
          for (let o = this.lvHead[sb.lvls[i]]; o !== NONE; o = this.oi[o * IW + I_NEXT]) orders.push(this.view(o));
        }
      }
      orders.sort((a, b) => (side === BUY ? b.price_ticks - a.price_ticks : a.price_ticks - b.price_ticks) || a.seq - b.seq);
      if (side === BUY) out.bids = orders;
      else out.asks = orders;
    }
    return out;
  }

  private view(slot: number): OrderView {
    const fl = this.oi[slot * IW + I_FLAGS];
    return {
      order_id: this.of[slot * OW + F_ID],
      user_id: this.uId[this.oi[slot * IW + I_USLOT]],
      client_order_id: this.oCoid[slot],
      interval_id: this.bookInterval[this.oi[slot * IW + I_BOOK]],
      side: SIDES[flSide(fl)],
      source: SOURCES[flSource(fl)],
      order_type: ORDER_TYPES[flType(fl)],
      stp: STP_MODES[flStp(fl)],
      price_ticks: this.lvPrice[this.oi[slot * IW + I_LEVEL]],
      qty_wh: this.of[slot * OW + F_FILLED] + this.of[slot * OW + F_LEFT],
      remaining_wh: this.of[slot * OW + F_LEFT],
      filled_wh: this.of[slot * OW + F_FILLED],
      seq: this.of[slot * OW + F_SEQ],
      expire_at_ms: flGtd(fl) ? this.oExp[slot] : 0,
    };
  }

  private intervalView(book: number): IntervalView {
    return {
      interval_id: this.bookInterval[book],
      capacity_wh: this.bookCapacity[book],
      matched_wh: this.bookMatched[book],
      closed: this.bookClosed[book] !== 0,
      open_orders: this.bookOpen[book],
    };
  }

  private sellerView(s: number): SellerView {
    return {
      user_id: this.sUser[s],
      interval_id: this.bookInterval[this.sBook[s]],
      limit_wh: this.sLimit[s] < 0 ? null : this.sLimit[s],
      sold_wh: this.sSold[s],
      open_sell_wh: this.sOpen[s],
    };
  }

  // ===========================================================================================
  // Snapshot, restore, hash

  /**
   * The whole state as plain JSON-safe data, canonical: intervals by id, sellers by (interval,
   * user), orders by seq. Internal layout (slots, pools, stale heap entries) is not part of it.
   */
  serialize(): EngineSnapshot {
    return { ...this.snapshotHeader(), orders: this.openOrders() };
  }

  /** Rebuilds an engine from serialize()'s output; it continues exactly as the original would. */
  static restore(snap: EngineSnapshot, options: ZoneEngineOptions = {}): ZoneEngine {
    if (snap.version !== 1) throw new Error(`unsupported engine snapshot version ${String(snap.version)}`);
    const e = new ZoneEngine(snap.zone_id, { initial_order_slots: Math.max(1024, snap.orders.length), ...options });
    if (snap.config !== null) {
      const c = snap.config;
      e.configured = true;
      e.stepTicks = c.price_step_ticks;
      e.lotWh = c.lot_wh;
      e.bandMin = c.band_min_ticks;
      e.bandMax = c.band_max_ticks;
      e.minQty = c.min_qty_wh;
      e.maxQty = c.max_qty_wh;
      e.maxOpenPerUser = c.max_open_orders_per_user;
      e.status = statusCode(c.status);
    }
    e.nextSeq = snap.next_seq;
    e.eventSeq = snap.event_seq;
    e.tradeSeq = snap.trade_seq;
    e.lastTs = snap.last_ts_ms;
    for (const iv of snap.intervals) e.addBook(iv.interval_id, iv.capacity_wh, iv.matched_wh, iv.closed);
    for (const sv of snap.sellers) {
      const book = e.intervalIndex.get(sv.interval_id);
      let us = e.userIndex.get(sv.user_id);
      if (us === NONE) us = e.newUser(sv.user_id);
      const s = e.newSeller(us, book);
      e.sLimit[s] = sv.limit_wh === null ? -1 : sv.limit_wh;
      e.sSold[s] = sv.sold_wh;
    }
    // Orders in seq order: appending each to its level's FIFO rebuilds time priority exactly.
    for (const o of snap.orders) {
      const book = e.intervalIndex.get(o.interval_id);
      let us = e.userIndex.get(o.user_id);
      if (us === NONE) us = e.newUser(o.user_id);
      const side = o.side === 'BUY' ? BUY : SELL;
      let seller = NONE;
      if (side === SELL) {
        seller = e.sellerIndex.get(sellerKey(us, book));
        if (seller === NONE) seller = e.newSeller(us, book);
      }
      e.tkId = o.order_id;
      e.tkUser = o.user_id;
      e.tkUslot = us;
      e.tkCoid = o.client_order_id;
      e.tkCoidFp = coidFp(o.user_id, o.client_order_id);
      e.tkSide = side;
      e.tkSource = sourceCode(o.source);
      e.tkType = orderTypeCode(o.order_type);
      e.tkStp = stpCode(o.stp);
      e.tkPrice = o.price_ticks;
      e.tkLeft = o.remaining_wh;
      e.tkFilled = o.filled_wh;
      e.tkTotal = o.qty_wh;
      e.tkSeq = o.seq;
      e.tkExpire = o.expire_at_ms;
      e.tkBook = book;
      e.tkSlot = NONE;
      e.tkSeller = seller;
      e.rest();
    }
    e.touchedN = 0;
    return e;
  }

  /** Sellers with a limit or any sold/open Wh, by (interval, user): part of the canonical state. */
  private canonicalSellers(): SellerView[] {
    const sellers: SellerView[] = [];
    for (let s = 0; s < this.sellerN; s++) {
      if (this.sBook[s] === NONE) continue; // retired
      if (this.sLimit[s] >= 0 || this.sSold[s] !== 0 || this.sOpen[s] !== 0) sellers.push(this.sellerView(s));
    }
    sellers.sort((a, b) => a.interval_id - b.interval_id || a.user_id - b.user_id);
    return sellers;
  }

  /** serialize() without its orders. */
  private snapshotHeader(): SnapshotHeader {
    return {
      version: 1,
      zone_id: this.zoneId,
      config: this.config(),
      next_seq: this.nextSeq,
      event_seq: this.eventSeq,
      trade_seq: this.tradeSeq,
      last_ts_ms: this.lastTs,
      intervals: this.intervals(),
      sellers: this.canonicalSellers(),
    };
  }

  /**
   * The state as a binary snapshot (format in snapshot.ts; decodeSnapshot() gives back exactly
   * serialize()'s output): captureSnapshot() encoded at once.
   */
  snapshotBytes(): Uint8Array {
    const enc = this.captureSnapshot();
    enc.step(Number.MAX_SAFE_INTEGER);
    return enc.bytes();
  }

  /**
   * A copy of what a snapshot of the current state needs — the records, client order ids and the
   * few tables they point into, and the header — made with block copies and no per-order work,
   * to be encoded later in slices (SnapshotEncoder.step) while this engine runs on. On the
   * matching thread a checkpoint then costs the copy (~5 ms for 292 k open orders) instead of the
   * encoding (~75 ms, most of it the first touch of each client order id string).
   */
  captureSnapshot(): SnapshotEncoder {
    const top = this.orderTop;
    // The copy goes into the previous capture's buffers when it is done with them: a fresh
    // buffer of this size costs a page fault per 4 KB on first touch (~15 µs each in the VMs
    // measured here: ~70–150 ms for a 292 k-order book, against ~5 ms to copy into warm memory).
    let spare = this.captureSpare;
    this.captureSpare = null;
    if (spare === null || spare.records.byteLength < top * ORDER_BYTES) {
      const slots = Math.max(1024, Math.ceil(top * 1.25)); // room for the book to grow before the next checkpoint
      spare = { records: new ArrayBuffer(slots * ORDER_BYTES), exp: new Float64Array(slots), coids: [] };
    }
    new Uint8Array(spare.records).set(new Uint8Array(this.of.buffer, 0, top * ORDER_BYTES));
    spare.exp.set(this.oExp.subarray(0, top));
    const coids = spare.coids;
    const oCoid = this.oCoid;
    for (let k = 0; k < top; k++) coids[k] = oCoid[k]; // (slice() would allocate a fresh array of this size)
    coids.length = top;
    const buffers = spare;
    return new SnapshotEncoder(
      new TextEncoder().encode(JSON.stringify(this.snapshotHeader())),
      this.openCount,
      top,
      buffers.records,
      buffers.exp,
      coids,
      this.uId.slice(0, this.userN),
      this.bookInterval.slice(0, this.bookN),
      this.lvPrice.slice(0, this.lvTop),
      () => {
        this.captureSpare = buffers;
      },
    );
  }

  /** captureSnapshot()'s buffers, back from an encoder that finished with them. */
  private captureSpare: CaptureBuffers | null = null;
  /** One order's fields for checkpointHash(). */
  private readonly hashScratch = new Float64Array(10);

  /**
   * The checkpoint hash ("v2:" + 16 hex digits) of the same canonical state as serialize(): equal
   * for two engines exactly when (up to hash collisions) their serialize() outputs are equal,
   * whatever their internal layout. Unlike stateHash() it needs no sort and no text: the header
   * (config, counters, intervals, sellers) goes through hashString as JSON, and each open order is
   * hashed alone from its record and added to a sum (a multiset hash), in slot order. The runtime
   * journals it at every checkpoint; recovery checks it.
   */
  checkpointHash(): string {
    const head = hashString(JSON.stringify(this.snapshotHeader()));
    const of = this.of;
    const oi = this.oi;
    let sumA = 0;
    let sumB = 0;
    for (let s = 0; s < this.orderTop; s++) {
      const f = s * OW;
      const id = of[f + F_ID];
      if (id === 0) continue;
      const o = s * IW;
      const fl = oi[o + I_FLAGS];
      const user = this.uId[oi[o + I_USLOT]];
      const iv = this.bookInterval[oi[o + I_BOOK]];
      const price = this.lvPrice[oi[o + I_LEVEL]];
      const exp = flGtd(fl) ? this.oExp[s] : 0;
      const w = this.hashScratch;
      w[0] = id;
      w[1] = user;
      w[2] = oi[o + I_COID_FP]; // fingerprint of (user, client order id)
      w[3] = iv;
      w[4] = fl & 0x1ff;
      w[5] = price;
      w[6] = of[f + F_LEFT];
      w[7] = of[f + F_FILLED];
      w[8] = of[f + F_SEQ];
      w[9] = exp;
      let a = LANE_A_SEED;
      let b = LANE_B_SEED;
      for (let k = 0; k < 10; k++) {
        // each field folded to one word (low 32 bits ^ high 32 bits × a constant), into both lanes
        const v = w[k];
        const x = (v >>> 0) ^ Math.imul(Math.floor(v / 4294967296) | 0, 0x9e3779b1);
        a = Math.imul(a ^ x, LANE_A_MUL);
        a ^= a >>> 15;
        b = Math.imul(b ^ x, LANE_B_MUL);
        b ^= b >>> 15;
      }
      sumA = (sumA + fmix32(a)) | 0;
      sumB = (sumB + fmix32(b)) | 0;
    }
    let a = mixWord(LANE_A_SEED, parseInt(head.slice(0, 8), 16) | 0, LANE_A_MUL);
    let b = mixWord(LANE_B_SEED, parseInt(head.slice(8), 16) | 0, LANE_B_MUL);
    a = mixNumber(mixWord(a, sumA, LANE_A_MUL), this.openCount, LANE_A_MUL);
    b = mixNumber(mixWord(b, sumB, LANE_B_MUL), this.openCount, LANE_B_MUL);
    a = fmix32(mixWord(a, b, LANE_A_MUL));
    b = fmix32(mixWord(b, a, LANE_B_MUL));
    return CHECKPOINT_HASH_PREFIX + (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
  }

  /**
   * A stable 64-bit FNV-1a hash (16 hex digits) of the canonical state: the same value as
   * hashString(JSON.stringify(this.serialize())) (journals hold checkpoints of that form), computed
   * by streaming the JSON text of the state into the hash instead of building it. The open orders,
   * nearly all of the text, are read straight from their records (no view objects, no string).
   */
  stateHash(): string {
    const h = new StreamHash();
    h.raw('{"version":1,"zone_id":');
    h.num(this.zoneId);
    h.raw(',"config":');
    h.raw(JSON.stringify(this.config()));
    h.raw(',"next_seq":');
    h.num(this.nextSeq);
    h.raw(',"event_seq":');
    h.num(this.eventSeq);
    h.raw(',"trade_seq":');
    h.num(this.tradeSeq);
    h.raw(',"last_ts_ms":');
    h.num(this.lastTs);
    h.raw(',"intervals":');
    h.raw(JSON.stringify(this.intervals()));
    h.raw(',"sellers":');
    h.raw(JSON.stringify(this.canonicalSellers()));
    h.raw(',"orders":[');
    const of = this.of;
    const oi = this.oi;
    const slots = this.openSlotsInSeqOrder(() => true);
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i];
      const f = slot * OW;
      const n = slot * IW;
      h.raw(i === 0 ? '{"order_id":' : ',{"order_id":');
      h.num(of[f + F_ID]);
      h.raw(',"user_id":');
      h.num(this.uId[oi[n + I_USLOT]]);
      h.raw(',"client_order_id":');
      h.str(this.oCoid[slot]);
      h.raw(',"interval_id":');
      h.num(this.bookInterval[oi[n + I_BOOK]]);
      const fl = oi[n + I_FLAGS];
      h.raw(SIDE_JSON[flSide(fl)]);
      h.raw(SOURCE_JSON[flSource(fl)]);
      h.raw(TYPE_JSON[flType(fl)]);
      h.raw(STP_JSON[flStp(fl)]);
      h.raw(',"price_ticks":');
      h.num(this.lvPrice[oi[n + I_LEVEL]]);
      h.raw(',"qty_wh":');
      h.num(of[f + F_FILLED] + of[f + F_LEFT]);
      h.raw(',"remaining_wh":');
      h.num(of[f + F_LEFT]);
      h.raw(',"filled_wh":');
      h.num(of[f + F_FILLED]);
      h.raw(',"seq":');
      h.num(of[f + F_SEQ]);
      h.raw(',"expire_at_ms":');
      h.num(flGtd(fl) ? this.oExp[slot] : 0);
      h.ch(125); // '}'
    }
    h.raw(']}');
    return h.hex();
  }
}

interface CaptureBuffers {
  records: ArrayBuffer;
  exp: Float64Array;
  coids: string[];
}

/**
 * Encodes a captured state (ZoneEngine.captureSnapshot) as a binary snapshot, a slice at a time.
 * It owns copies only, so the engine may go on matching between slices.
 */
export class SnapshotEncoder {
  private s = 0;
  private p: number;
  private found = 0;
  private out: Uint8Array;
  private readonly f: Float64Array;
  private readonly i: Int32Array;
  private readonly ordersAt: number;

  constructor(
    header: Uint8Array,
    private readonly n: number,
    private readonly top: number,
    records: ArrayBuffer,
    private readonly oExp: Float64Array,
    private readonly coids: string[],
    private readonly uId: Float64Array,
    private readonly bookInterval: Float64Array,
    private readonly lvPrice: Float64Array,
    /** Called once every slot is encoded: the records, expiries and client order ids are no longer read. */
    private readonly onDone: () => void,
  ) {
    this.f = new Float64Array(records);
    this.i = new Int32Array(records);
    this.ordersAt = SNAPSHOT_PREFIX + header.length;
    this.p = this.ordersAt;
    this.out = new Uint8Array(this.p + n * 32 + 256); // ~25-35 bytes per order; grows if short
    const dv = new DataView(this.out.buffer);
    dv.setUint32(0, SNAPSHOT_MAGIC, true);
    dv.setUint32(4, header.length, true);
    dv.setUint32(8, n, true);
    this.out.set(header, SNAPSHOT_PREFIX);
  }

  get done(): boolean {
    return this.s >= this.top;
  }

  /** Encodes the open orders of up to `slots` more slots; returns whether the snapshot is complete. */
  step(slots: number): boolean {
    const f = this.f;
    const oi = this.i;
    const end = Math.min(this.top, this.s + slots);
    let b = this.out;
    let p = this.p;
    for (let s = this.s; s < end; s++) {
      const fo = s * OW;
      if (f[fo + F_ID] === 0) continue;
      const o = s * IW;
      const fl = oi[o + I_FLAGS];
      const coid = this.coids[s];
      if (p + 80 + 3 * coid.length > b.length) {
        const grown = new Uint8Array(Math.max(b.length * 2, p + 80 + 3 * coid.length));
        grown.set(b.subarray(0, p));
        this.out = b = grown;
      }
      p = putVarint(b, p, f[fo + F_ID]);
      p = putVarint(b, p, this.uId[oi[o + I_USLOT]]);
      p = putVarint(b, p, this.bookInterval[oi[o + I_BOOK]]);
      const price = this.lvPrice[oi[o + I_LEVEL]];
      p = putVarint(b, p, price >= 0 ? 2 * price : -2 * price - 1); // zigzag: prices may be negative
      p = putVarint(b, p, f[fo + F_LEFT]);
      p = putVarint(b, p, f[fo + F_FILLED]);
      p = putVarint(b, p, f[fo + F_SEQ]);
      p = putVarint(b, p, flGtd(fl) ? this.oExp[s] : 0);
      p = putVarint(b, p, fl & 0x1ff); // side | source << 1 | type << 4 | stp << 7: the snapshot's codes
      p = putVarint(b, p, coid.length);
      for (let c = 0; c < coid.length; c++) {
        const ch = coid.charCodeAt(c);
        if (ch < 0x80) b[p++] = ch;
        else p = putVarint(b, p, ch);
      }
      this.found++;
    }
    this.s = end;
    this.p = p;
    if (end === this.top && !this.released) {
      this.released = true;
      this.onDone();
    }
    return this.done;
  }

  private released = false;

  /** The snapshot (a view of the encoder's buffer, which it no longer touches). */
  bytes(): Uint8Array {
    if (!this.done) throw new Error('snapshot: not fully encoded yet');
    if (this.found !== this.n) throw new Error(`snapshot: ${this.found} open orders found, ${this.n} counted`);
    new DataView(this.out.buffer).setUint32(12, this.p - this.ordersAt, true);
    return this.out.subarray(0, this.p);
  }
}

/** A 32-bit fingerprint of (user id, client order id): its entry in the client order id table. */
function coidFp(uid: number, coid: string): number {
  let h = Math.imul((uid | 0) ^ 0x811c9dc5, 0x01000193) ^ ((uid * 2.3283064365386963e-10) | 0);
  for (let i = 0; i < coid.length; i++) h = Math.imul(h ^ coid.charCodeAt(i), 0x01000193);
  // final avalanche (murmur3 fmix32), so that the low bits pick a well-spread cell
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

// The JSON text of an order's enum fields, with their keys (stateHash streams it).
const SIDE_JSON = SIDES.map((v) => `,"side":${JSON.stringify(v)}`);
const SOURCE_JSON = SOURCES.map((v) => `,"source":${JSON.stringify(v)}`);
const TYPE_JSON = ORDER_TYPES.map((v) => `,"order_type":${JSON.stringify(v)}`);
const STP_JSON = STP_MODES.map((v) => `,"stp":${JSON.stringify(v)}`);

function sellerKey(us: number, book: number): number {
  return us * MAX_INTERVALS_PER_ZONE + book + 1;
}

function commandKind(type: unknown): number {
  switch (type) {
    case 'PLACE':
      return K_PLACE;
    case 'CANCEL':
      return K_CANCEL;
    case 'AMEND':
      return K_AMEND;
    case 'MASS_CANCEL':
      return K_MASS_CANCEL;
    case 'EXPIRE_DUE':
      return K_EXPIRE_DUE;
    case 'CONFIGURE_ZONE':
      return K_CONFIGURE_ZONE;
    case 'OPEN_INTERVAL':
      return K_OPEN_INTERVAL;
    case 'GATE_CLOSE':
      return K_GATE_CLOSE;
    case 'HALT':
      return K_HALT;
    case 'MAINTENANCE':
      return K_MAINTENANCE;
    case 'RESUME':
      return K_RESUME;
    case 'SET_SELLER_LIMIT':
      return K_SET_SELLER_LIMIT;
    default:
      return K_UNKNOWN;
  }
}

const EVENT_NAMES: EventType[] = [
  'ACCEPTED', // 0 unused
  'ACCEPTED',
  'REJECTED',
  'FILL',
  'CANCELLED',
  'EXPIRED',
  'AMENDED',
  'BOOK_LEVEL',
  'ZONE_STATUS',
  'ZONE_CONFIGURED',
  'INTERVAL_OPENED',
  'GATE_CLOSED',
  'SELLER_LIMIT_SET',
];

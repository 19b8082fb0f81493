// The hand-written JSON of the hottest messages (gateway/wire-json.ts) is byte for byte what
// fast-json-stringify writes from the message's schema (protocol.ts schemaJson), on random
// messages: realistic ones (the fast path) and odd ones (absent/null fields, strings that need
// escaping, unicode, lone surrogates, long strings, negative and huge numbers, non-integers,
// BigInts, toJSON), where either the fast path writes the same bytes or it steps aside.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeMessage, schemaJson, type OutMessage } from '../../gateway/protocol.js';
import { ackText, fillJson, orderJson, placeAckJson, plain } from '../../gateway/wire-json.js';

const RUNS = 20_000;

/** What a frame is: its text, or the error thrown. */
function outcome(f: () => unknown): { ok: unknown } | { err: string } {
  try {
    return { ok: f() };
  } catch (e) {
    return { err: String((e as Error).constructor.name) };
  }
}

const decimal = fc
  .tuple(fc.boolean(), fc.bigInt({ min: 0n, max: 10n ** 18n - 1n }), fc.option(fc.stringMatching(/^[0-9]{1,18}$/), { nil: undefined }))
  .map(([neg, i, frac]) => `${neg ? '-' : ''}${i}${frac === undefined ? '' : '.' + frac}`);
const weirdString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }), // any code point, incl. astral (surrogate pairs)
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }), // lone surrogates, controls
  fc.string({ unit: fc.constantFrom('"', '\\', '\n', '\u0000', '\u001f', '\u007f', '\u2028', 'é', '€', '\ud83d', '\ude00', 'a') }),
  fc.string({ minLength: 40, maxLength: 120 }), // across fast-json-stringify's 42-character branch
  fc.constant(''),
);
const int = fc.oneof(
  fc.integer({ min: 1, max: 2 ** 31 }),
  fc.maxSafeInteger(),
  fc.constantFrom(0, -0, -1, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e21, 1e300, -(2 ** 63)),
);
const oddValue = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  weirdString,
  fc.double(),
  int,
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  fc.boolean(),
);

/** An object of the given fields: mostly the realistic value, sometimes an odd one. */
function shaped(fields: Record<string, fc.Arbitrary<unknown>>, oddness: number): fc.Arbitrary<Record<string, unknown>> {
  const entries = Object.entries(fields).map(([k, a]) => [k, fc.oneof({ weight: oddness, arbitrary: oddValue }, { weight: 100 - oddness, arbitrary: a })] as const);
  return fc.record(Object.fromEntries(entries)).map((o) => {
    const r: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) if (v !== undefined || Math.random() < 0.5) r[k] = v; // absent, or present as undefined
    return r;
  });
}

const clientOrderId = fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,64}$/) }, { weight: 1, arbitrary: weirdString });
const reason = fc.oneof(fc.constant(null), fc.constantFrom('USER', 'STP', 'GATE_CLOSED', 'IOC_REMAINDER', 'EXPIRED'), weirdString);
const orderFields = (): Record<string, fc.Arbitrary<unknown>> => ({
  order_id: int,
  client_order_id: clientOrderId,
  zone_id: fc.integer({ min: 1, max: 1000 }),
  interval_id: int,
  side: fc.constantFrom('BUY', 'SELL'),
  order_type: fc.constantFrom('LIMIT', 'MARKET', 'IOC', 'FOK', 'POST_ONLY'),
  source: fc.constantFrom('ANY', 'SOLAR', 'WIND', 'BATTERY', 'HYDRO'),
  price: decimal,
  qty: decimal,
  filled_qty: decimal,
  remaining_qty: decimal,
  status: fc.constantFrom('ACTIVE', 'PARTIALLY_FILLED', 'MATCHED', 'CANCELLED', 'EXPIRED'),
  reason,
});
const ts = fc.integer({ min: 0, max: 2 ** 45 });

const orderMsg = (oddness: number) => shaped({ ...orderFields(), seq: int, ts }, oddness).map((o) => ({ ...o, type: 'order' }));
const fillMsg = (oddness: number) =>
  shaped(
    {
      trade_id: int,
      order_id: int,
      client_order_id: clientOrderId,
      zone_id: fc.integer({ min: 1, max: 1000 }),
      interval_id: int,
      side: fc.constantFrom('BUY', 'SELL'),
      price: decimal,
      qty: decimal,
      source: fc.constantFrom('SOLAR', 'WIND', 'BATTERY', 'HYDRO'),
      liquidity: fc.constantFrom('MAKER', 'TAKER'),
      seq: int,
      ts,
    },
    oddness,
  ).map((o) => ({ ...o, type: 'fill' }));
const fillItem = (oddness: number) =>
  fc.oneof(
    { weight: 20, arbitrary: shaped({ trade_id: int, price: decimal, qty: decimal, source: fc.constantFrom('SOLAR', 'WIND') }, oddness) },
    { weight: oddness > 0 ? 1 : 0, arbitrary: fc.constantFrom(null, 5, 'x') },
  );
const ackMsg = (oddness: number) =>
  fc
    .tuple(
      shaped(
        {
          req_id: fc.oneof(fc.constant(null), fc.integer(), int, weirdString, fc.stringMatching(/^[a-z0-9-]{1,64}$/)),
          op: fc.constantFrom('place', 'place', 'place', 'cancel', 'amend'),
          ...orderFields(),
        },
        oddness,
      ),
      fc.array(fillItem(oddness), { maxLength: 6 }),
      fc.oneof({ weight: 20, arbitrary: fc.constant(undefined) }, { weight: oddness > 0 ? 1 : 0, arbitrary: fc.constantFrom<unknown>(true, false, 0, 'x', null) }),
      fc.oneof({ weight: 20, arbitrary: fc.constant(undefined) }, { weight: oddness > 0 ? 1 : 0, arbitrary: fc.oneof(fc.integer(), fc.constant(null)) }),
      fc.oneof({ weight: 20, arbitrary: fc.constant('array') }, { weight: oddness > 0 ? 1 : 0, arbitrary: fc.constantFrom<unknown>(undefined, null, 'x', {}) }),
    )
    .map(([o, fills, priority_kept, cancelled, fillsAs]) => {
      const m: Record<string, unknown> = { type: 'ack', ...o, fills: fillsAs === 'array' ? fills : fillsAs };
      if (priority_kept !== undefined) m.priority_kept = priority_kept;
      if (cancelled !== undefined) m.cancelled = cancelled;
      return m;
    });

function same(m: Record<string, unknown>): void {
  const want = outcome(() => schemaJson(m as OutMessage));
  const got = outcome(() => encodeMessage(m as OutMessage, 'json'));
  expect(got).toEqual(want);
}

describe('hand-written JSON = fast-json-stringify, byte for byte', () => {
  it('plain(s) ⇒ JSON.stringify(s) is s in quotes (⇔ without surrogates: a valid pair is left to the schema serialiser)', () => {
    fc.assert(
      fc.property(weirdString, (s) => {
        if (plain(s)) expect(JSON.stringify(s)).toBe(`"${s}"`);
        if (!/[\ud800-\udfff]/.test(s)) expect(plain(s)).toBe(JSON.stringify(s) === `"${s}"`);
      }),
      { numRuns: RUNS },
    );
  });

  for (const [name, gen, fast] of [
    ['order', orderMsg, orderJson],
    ['fill', fillMsg, fillJson],
    ['ack', ackMsg, placeAckJson],
  ] as const) {
    it(`${name}: realistic messages take the fast path and match`, () => {
      fc.assert(
        fc.property(gen(0) as fc.Arbitrary<Record<string, unknown>>, (m) => {
          const text = fast(m);
          if (name !== 'ack' || m.op === 'place' || m.priority_kept === undefined) {
            // clientOrderId/reason may draw a string that needs escaping: then the fast path steps aside
            if (plain(m.client_order_id) && (m.reason === null || plain(m.reason)) && (name !== 'ack' || m.req_id !== undefined)) expect(text).not.toBeNull();
          }
          if (text !== null) {
            expect(text).toBe(schemaJson(m as OutMessage));
            expect(JSON.parse(text)).toEqual(JSON.parse(schemaJson(m as OutMessage)));
          }
          same(m);
        }),
        { numRuns: RUNS },
      );
    });
    it(`${name}: odd messages give the same bytes (or the same error)`, () => {
      fc.assert(fc.property(gen(15) as fc.Arbitrary<Record<string, unknown>>, same), { numRuns: RUNS });
    });
  }

  it('ackText (the place ack ws.ts writes from its fields) = the schema serialiser on the object ws.ts built before', () => {
    fc.assert(
      fc.property(fc.oneof(ackMsg(0), ackMsg(15)) as fc.Arbitrary<Record<string, unknown>>, (m) => {
        if (m.priority_kept !== undefined || m.cancelled !== undefined) return;
        const text = ackText(
          m.req_id, m.op, m.order_id, m.client_order_id, m.zone_id, m.interval_id, m.side, m.order_type, m.source, m.price, m.qty, m.filled_qty, m.remaining_qty,
          m.status, m.reason, m.fills,
        );
        if (text !== null) expect(text).toBe(schemaJson(m as OutMessage));
      }),
      { numRuns: RUNS },
    );
  });

  it('edge cases by hand', () => {
    const base = {
      type: 'order', order_id: 2 ** 53 + 2, client_order_id: 'a"b\\c', zone_id: 1, interval_id: 7, side: 'BUY', order_type: 'LIMIT', source: 'ANY',
      price: '-12.5', qty: '0.001', filled_qty: '0', remaining_qty: '0.001', status: 'ACTIVE', reason: null, seq: 1, ts: 1e21,
    };
    const cases: Record<string, unknown>[] = [
      base,
      { ...base, client_order_id: 'ünï€😀' },
      { ...base, client_order_id: '\ud800x' },
      { ...base, client_order_id: 'x'.repeat(5001) + '"' },
      { ...base, reason: 'a\nb' },
      { ...base, reason: undefined },
      { ...base, price: null },
      { ...base, seq: 3n },
      { ...base, ts: 1.7 },
      { ...base, ts: -1.7 },
      { ...base, order_id: -0 },
      { ...base, toJSON: () => ({ type: 'order', order_id: 1 }) },
      { ...base, type: 'ack', req_id: 'r"1\u0001é', op: 'place', fills: [{ trade_id: 1, price: '-1', qty: '2', source: 'WIND' }] },
      { ...base, type: 'ack', req_id: 12, op: 'place', client_order_id: 'c-1', fills: [] },
      { ...base, type: 'ack', req_id: 2 ** 60, op: 'place', client_order_id: 'c-1', fills: [{ trade_id: 2 ** 53, price: '-0.0001', qty: '1e3', source: 'SOLAR' }, { trade_id: 2, price: '5', qty: '1', source: 'WIND' }] },
      { ...base, type: 'ack', req_id: 1.5, op: 'place', client_order_id: 'c-1', fills: [] },
      { type: 'ack', req_id: null, op: 'cancel', order_id: 5, cancelled: 3 },
      { ...base, type: 'ack', req_id: null, op: 'amend', priority_kept: false },
      { type: 'fill', trade_id: 9, order_id: 1, client_order_id: '\u2028', zone_id: 1, interval_id: 2, side: 'SELL', price: '-0.5', qty: '1', source: 'SOLAR', liquidity: 'MAKER', seq: 4, ts: 5 },
    ];
    for (const c of cases) same(c);
    expect(orderJson(base)).toBeNull(); // a quote in client_order_id: the schema serialiser writes it
    const clean = { ...base, client_order_id: 'c-1' };
    expect(orderJson(clean)).toBe(schemaJson(clean as OutMessage));
    const ack = { ...clean, type: 'ack', req_id: 'r"1', op: 'place', fills: [{ trade_id: 1, price: '-1', qty: '2', source: 'WIND' }] };
    expect(placeAckJson(ack)).toBe(schemaJson(ack as OutMessage));
  });
});

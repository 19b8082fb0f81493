// A small kwx market-making bot: plain `ws` client, no kwx code. It logs in, subscribes to one
// book, keeps a local copy from snapshot + deltas (checking sequence numbers and checksums and
// resyncing when they do not match), and quotes a bid and an ask around the mid.
//
//   KWX_URL=ws://127.0.0.1:8080/ws KWX_KEY_ID=k_... KWX_SECRET=... KWX_ZONE=1 KWX_INTERVAL=7 node examples/bot/bot.mjs
//
// KWX_ALGORITHM=ED25519 with KWX_SECRET = the base64 PKCS#8 private key shown at key creation.
import { createHash, createHmac, createPrivateKey, randomBytes, sign } from 'node:crypto';
import WebSocket from 'ws';

const env = (k, d) => process.env[k] ?? d;
const URL = env('KWX_URL', 'ws://127.0.0.1:8080/ws');
const KEY_ID = env('KWX_KEY_ID');
const SECRET = env('KWX_SECRET');
const ALGORITHM = env('KWX_ALGORITHM', 'HMAC_SHA256');
const ZONE = Number(env('KWX_ZONE', '1'));
const INTERVAL = Number(env('KWX_INTERVAL', '1'));
const SPREAD_TICKS = Number(env('KWX_SPREAD_TICKS', '20'));
const TICK = env('KWX_TICK', '0.0001'); // the zone's tick size, as a decimal string
const QTY = env('KWX_QTY', '1.000');

// ---- signing (docs/protocol.md "Login") ----
function signLogin(ts, nonce) {
  const payload = `kwx-login\n${KEY_ID}\n${ts}\n${nonce}`;
  if (ALGORITHM === 'HMAC_SHA256') {
    const k = createHash('sha256').update(SECRET, 'utf8').digest();
    return createHmac('sha256', k).update(payload).digest('base64');
  }
  const key = createPrivateKey({ key: Buffer.from(SECRET, 'base64'), format: 'der', type: 'pkcs8' });
  return sign(null, Buffer.from(payload), key).toString('base64');
}

// ---- CRC32 checksum of the top 10 levels (docs/protocol.md "Checksum") ----
const TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (s) => {
  let c = 0xffffffff;
  for (let i = 0; i < s.length; i++) c = TABLE[(c ^ s.charCodeAt(i)) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const strip = (s) => {
  const neg = s.startsWith('-');
  const d = (neg ? s.slice(1) : s).replace('.', '').replace(/^0+/, '') || '0';
  return neg && d !== '0' ? `-${d}` : d;
};

const book = { bids: new Map(), asks: new Map(), seq: -1, epoch: '' };
const cmp = (x, y) => (x < y ? -1 : x > y ? 1 : 0);
const sorted = (side) => [...book[side]].sort((a, b) => (side === 'bids' ? cmp(scaled(b[0]), scaled(a[0])) : cmp(scaled(a[0]), scaled(b[0]))));
const checksum = () => {
  let s = '';
  for (const [p, q] of sorted('asks').slice(0, 10)) s += strip(p) + strip(q);
  for (const [p, q] of sorted('bids').slice(0, 10)) s += strip(p) + strip(q);
  return crc32(s);
};

const ws = new WebSocket(URL);
let reqId = 0;
const send = (m) => ws.send(JSON.stringify({ ...m, req_id: ++reqId }));
const quotes = { BUY: null, SELL: null }; // order ids we have resting
const quotedAt = { BUY: null, SELL: null }; // price (in ticks) of our last quote per side
let resyncing = false;

function resync(why) {
  if (resyncing) return;
  resyncing = true;
  console.log(`resync: ${why}`);
  send({ type: 'resync', channel: 'book', zone_id: ZONE, interval_id: INTERVAL });
}

function onBook(m) {
  if (m.snapshot) {
    book.bids = new Map(m.bids);
    book.asks = new Map(m.asks);
    book.seq = m.seq;
    book.epoch = m.epoch;
    resyncing = false;
  } else {
    if (resyncing) return;
    if (m.epoch !== book.epoch || m.seq !== book.seq + 1) return resync(`gap: have ${book.seq}, got ${m.seq}`);
    for (const [side, price, qty] of m.changes) {
      const s = side === 'BUY' ? book.bids : book.asks;
      if (Number(qty) === 0) s.delete(price);
      else s.set(price, qty);
    }
    book.seq = m.seq;
  }
  if (checksum() !== m.checksum) return resync('checksum mismatch');
  requote();
}

// ---- prices: integer ticks, never floats (prices travel as decimal strings) ----
const DECIMALS = (TICK.split('.')[1] ?? '').length;
const scaled = (dec) => {
  // "-0.1234" -> -1234n at DECIMALS places (a price is always a whole number of ticks)
  const neg = dec.startsWith('-');
  const [i, f = ''] = (neg ? dec.slice(1) : dec).split('.');
  const v = BigInt(i + f.padEnd(DECIMALS, '0').slice(0, DECIMALS));
  return neg ? -v : v;
};
const TICK_UNITS = scaled(TICK);
const toTicks = (price) => scaled(price) / TICK_UNITS;
const fromTicks = (ticks) => {
  const v = ticks * TICK_UNITS;
  const abs = (v < 0n ? -v : v).toString().padStart(DECIMALS + 1, '0');
  const s = DECIMALS === 0 ? abs : `${abs.slice(0, -DECIMALS)}.${abs.slice(-DECIMALS)}`;
  return v < 0n ? `-${s}` : s;
};

// Wh in a kWh string with 3 decimals ("1.000" -> 1000n): quantities compared as integers
const wh = (kwh) => {
  const [i, f = ''] = kwh.split('.');
  return BigInt(i + f.padEnd(3, '0').slice(0, 3));
};
/** The best level of a side that is not only our own quote (our quote's size taken off its level). */
function bestOfOthers(side) {
  const own = quotedAt[side === 'bids' ? 'BUY' : 'SELL'];
  return sorted(side).find(([p, q]) => own === null || toTicks(p) !== own || wh(q) > wh(QTY));
}

let lastMid = null; // in ticks
function requote() {
  // the mid of the others' book: our own quotes (which may show on one side before the other)
  // must not move it, or the bot would chase itself
  const bid = bestOfOthers('bids');
  const ask = bestOfOthers('asks');
  // mid rounded down to a whole tick; an empty book quotes around 0.1 (per kWh)
  const mid = bid && ask ? (toTicks(bid[0]) + toTicks(ask[0])) / 2n : bid ? toTicks(bid[0]) : ask ? toTicks(ask[0]) : toTicks('0.1');
  if (lastMid !== null && (mid > lastMid ? mid - lastMid : lastMid - mid) < 5n) return;
  lastMid = mid;
  const orders = [];
  for (const side of ['BUY', 'SELL']) {
    if (quotes[side] !== null) send({ type: 'cancel', order_id: quotes[side] });
    quotes[side] = null;
    const ticks = mid + BigInt(side === 'BUY' ? -SPREAD_TICKS : SPREAD_TICKS);
    quotedAt[side] = ticks;
    orders.push({
      zone_id: ZONE, interval_id: INTERVAL, client_order_id: `bot-${side}-${randomBytes(4).toString('hex')}`,
      side, source: side === 'SELL' ? 'SOLAR' : 'ANY', order_type: 'POST_ONLY', price: fromTicks(ticks), qty: QTY,
    });
  }
  // both quotes in one frame: one reply lists each order's ack or reject (docs/protocol.md, place_batch)
  send({ type: 'place_batch', orders });
}

function onAnswer(m) {
  if (m.type === 'ack') {
    if (m.op === 'place' && (m.status === 'ACTIVE' || m.status === 'PARTIALLY_FILLED')) quotes[m.side] = m.order_id;
  } else if (m.type === 'reject') {
    console.log(`reject ${m.op}: ${m.code} ${m.message}`);
    if (m.op === 'login') process.exit(1);
  }
}

ws.on('open', () => {
  const ts = Date.now();
  const nonce = randomBytes(12).toString('base64url');
  send({ type: 'login', key_id: KEY_ID, ts, nonce, sig: signLogin(ts, nonce), cancel_on_disconnect: true });
});
ws.on('message', (data) => {
  const m = JSON.parse(data.toString());
  switch (m.type) {
    case 'logged_in':
      console.log(`logged in as user ${m.user_id} (${m.role})`);
      send({ type: 'subscribe', channel: 'book', zone_id: ZONE, interval_id: INTERVAL });
      break;
    case 'book':
      onBook(m);
      break;
    case 'ack':
    case 'reject':
      onAnswer(m);
      break;
    case 'batch':
      for (const r of m.results) onAnswer(r);
      break;
    case 'fill':
      console.log(`filled ${m.side} ${m.qty} kWh @ ${m.price}`);
      break;
    case 'balance':
      console.log(`balance ${m.currency}: available ${m.available}, held ${m.held}, escrow ${m.escrow}`);
      break;
    default:
      break;
  }
});
ws.on('close', (code, reason) => {
  console.log(`closed ${code} ${reason}`);
  process.exit(0);
});
process.on('SIGINT', () => ws.close());

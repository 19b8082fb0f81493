// Meter simulator: realistic rooftop-solar production and household load per interval, with
// faults injected on purpose (each labelled with the outcome ingest must give it). Deterministic
// for a seed. Used by test/ingest and bench/ingest.
//
// Solar: a clear-sky bell between sunrise and sunset (day length and peak height follow the
// season, latitude ~50°N), times a cloud factor that drifts as a bounded random walk, so a day
// ramps up and down over several intervals and dips under passing clouds.
// Household: a base load (fridge, standby) + a morning and a larger evening peak + random
// appliance bursts (kettle, oven, washing machine), never negative.

export type SimFault = 'NEGATIVE_VALUE' | 'ABOVE_CAPACITY' | 'SPIKE' | 'CLOCK_SKEW' | 'MALFORMED' | 'GAP' | 'DUPLICATE' | 'DUPLICATE_CONFLICT';
export type SimExpect = 'ACCEPTED' | 'DUPLICATE' | Exclude<SimFault, 'GAP' | 'DUPLICATE'>;

export interface SimReading {
  meter_serial: string;
  interval_start: string;
  interval_minutes: number;
  production_wh: number | string;
  consumption_wh: number | string;
  quality: number;
}

export interface SimItem {
  reading: SimReading;
  /** what ingest must answer for this reading */
  expect: SimExpect;
  fault: SimFault | null;
}

export interface SimMeter {
  serial: string;
  /** meter capacity registered in smart_meters.max_power_w */
  max_power_w: number;
  interval_minutes: number;
  /** installed PV peak (0 = a consumer without panels) */
  pv_peak_w: number;
  /** average base load */
  base_load_w: number;
  seed: number;
}

export interface SimOptions {
  /** probability that a reading carries a fault (default 0) */
  fault_rate?: number;
  /** faults to draw from (default: all) */
  faults?: SimFault[];
}

/** Small fast deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Clear-sky fraction of PV peak at a UTC instant (solar time ≈ UTC: the site is near 0° longitude). */
export function clearSkyFraction(ms: number): number {
  const doy = Math.floor((ms % (365.25 * DAY_MS)) / DAY_MS);
  const season = Math.sin((2 * Math.PI * (doy - 80)) / 365); // +1 midsummer, −1 midwinter
  const dayLengthH = 12 + 4 * season;
  const peak = 0.75 + 0.2 * season;
  const hour = (ms % DAY_MS) / HOUR_MS;
  const sunrise = 12 - dayLengthH / 2;
  const x = (hour - sunrise) / dayLengthH;
  if (x <= 0 || x >= 1) return 0;
  return peak * Math.pow(Math.sin(Math.PI * x), 1.3);
}

/** Household demand profile (W) at an instant, before random bursts. */
export function loadProfileW(ms: number, baseW: number): number {
  const h = (ms % DAY_MS) / HOUR_MS;
  const bump = (centre: number, width: number, height: number): number => height * Math.exp(-((h - centre) ** 2) / (2 * width * width));
  return baseW * (1 + bump(7.5, 1.0, 1.8) + bump(19, 1.8, 3.0) + bump(13, 1.5, 0.6));
}

/** Readings for one meter: `count` consecutive intervals from `fromMs`, faults injected per options. */
export function simulateReadings(meter: SimMeter, fromMs: number, count: number, opts: SimOptions = {}): SimItem[] {
  const r = rng(meter.seed);
  const faults = opts.faults ?? (['NEGATIVE_VALUE', 'ABOVE_CAPACITY', 'SPIKE', 'CLOCK_SKEW', 'MALFORMED', 'GAP', 'DUPLICATE', 'DUPLICATE_CONFLICT'] as SimFault[]);
  const rate = opts.fault_rate ?? 0;
  const m = meter.interval_minutes;
  const stepMs = m * 60_000;
  const capWh = Math.floor((meter.max_power_w * m) / 60);
  const start0 = Math.floor(fromMs / stepMs) * stepMs;
  const out: SimItem[] = [];
  let cloud = 0.8;
  let prevCons: number | null = null;
  let lastAccepted: SimItem | null = null;
  for (let i = 0; i < count; i++) {
    const t = start0 + i * stepMs;
    cloud = Math.min(1, Math.max(0.15, cloud + (r() - 0.5) * 0.25));
    const pvW = meter.pv_peak_w * clearSkyFraction(t + stepMs / 2) * cloud;
    let loadW = loadProfileW(t + stepMs / 2, meter.base_load_w) * (0.85 + 0.3 * r());
    if (r() < 0.08) loadW += 1000 + 1500 * r(); // an appliance burst
    // the meter registers net flows: export when PV exceeds load, import otherwise
    const netW = pvW - loadW;
    const prod = Math.min(capWh, Math.round((Math.max(0, netW) * m) / 60));
    const cons = Math.min(capWh, Math.round((Math.max(0, -netW) * m) / 60));
    const reading: SimReading = {
      meter_serial: meter.serial,
      interval_start: new Date(t).toISOString(),
      interval_minutes: m,
      production_wh: prod,
      consumption_wh: cons,
      quality: 0,
    };
    let item: SimItem = { reading, expect: 'ACCEPTED', fault: null };
    if (rate > 0 && r() < rate) {
      const fault = faults[Math.floor(r() * faults.length)];
      const injected = inject(fault, item, capWh, prevCons, lastAccepted, r);
      if (injected === 'skip') {
        prevCons = null;
        continue;
      }
      if (injected !== null) {
        out.push(...injected);
        const ok = injected.find((x) => x.expect === 'ACCEPTED');
        if (ok !== undefined) {
          lastAccepted = ok;
          prevCons = Number(ok.reading.consumption_wh);
        } else prevCons = null;
        continue;
      }
    }
    out.push(item);
    lastAccepted = item;
    prevCons = cons;
    item = { reading, expect: 'ACCEPTED', fault: null };
  }
  return out;
}

/** Replaces or accompanies a good reading with a faulty one; 'skip' drops it (a gap); null = not applicable here. */
function inject(fault: SimFault, good: SimItem, capWh: number, prevCons: number | null, lastAccepted: SimItem | null, r: () => number): SimItem[] | 'skip' | null {
  const g = good.reading;
  const bad = (reading: SimReading, expect: SimExpect): SimItem => ({ reading, expect, fault });
  switch (fault) {
    case 'GAP':
      return 'skip';
    case 'NEGATIVE_VALUE':
      return [bad({ ...g, consumption_wh: -1 - Math.floor(r() * 500) }, 'NEGATIVE_VALUE')];
    case 'ABOVE_CAPACITY':
      return [bad({ ...g, production_wh: capWh + 1 + Math.floor(r() * capWh) }, 'ABOVE_CAPACITY')];
    case 'SPIKE':
      // from near idle to the full register in one interval
      if (prevCons === null || prevCons > capWh * 0.05) return null;
      return [bad({ ...g, consumption_wh: capWh }, 'SPIKE')];
    case 'CLOCK_SKEW':
      // a year ahead: in the future for any simulated window within the last year
      return [good, bad({ ...g, interval_start: new Date(Date.parse(g.interval_start) + 366 * DAY_MS).toISOString() }, 'CLOCK_SKEW')];
    case 'MALFORMED':
      return [bad({ ...g, production_wh: `${g.production_wh}.5` }, 'MALFORMED')];
    case 'DUPLICATE':
      if (lastAccepted === null) return null;
      return [good, { reading: { ...lastAccepted.reading }, expect: 'DUPLICATE', fault }];
    case 'DUPLICATE_CONFLICT':
      if (lastAccepted === null) return null;
      return [good, bad({ ...lastAccepted.reading, consumption_wh: Number(lastAccepted.reading.consumption_wh) + 7 }, 'DUPLICATE_CONFLICT')];
  }
}

/** Inverter AC power telemetry (W) every `stepMs` for a PV system of `pvPeakW`, with a cloud walk. */
export function simulateInverterPower(deviceSerial: string, pvPeakW: number, fromMs: number, count: number, stepMs: number, seed: number) {
  const r = rng(seed);
  let cloud = 0.8;
  const out: { device_serial: string; metric: string; value: number; unit: string; time: string }[] = [];
  for (let i = 0; i < count; i++) {
    const t = fromMs + i * stepMs;
    cloud = Math.min(1, Math.max(0.15, cloud + (r() - 0.5) * 0.1));
    out.push({ device_serial: deviceSerial, metric: 'ac_power', value: Math.round(pvPeakW * clearSkyFraction(t) * cloud * 10) / 10, unit: 'W', time: new Date(t).toISOString() });
  }
  return out;
}

/** CSV body for readings (header + one line per reading). */
export function readingsCsv(readings: SimReading[]): string {
  const cols = ['meter_serial', 'interval_start', 'interval_minutes', 'production_wh', 'consumption_wh', 'quality'] as const;
  return [cols.join(','), ...readings.map((x) => cols.map((c) => String(x[c])).join(','))].join('\n') + '\n';
}

export function readingsNdjson(readings: SimReading[]): string {
  return readings.map((x) => JSON.stringify(x)).join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// CLI: stream one simulated meter to a running kwx over the WebSocket, resending on slow_down.
//   node dist/bench/meter-sim.js --url ws://127.0.0.1:8080/ingest/stream --token <meter token> \
//     --serial <serial> [--hours 24] [--max-power-w 12000] [--pv-peak-w 6000] [--fault-rate 0.05] [--per-message 4]
async function main(argv: string[]): Promise<void> {
  const opt = (name: string, def?: string): string => {
    const i = argv.indexOf(`--${name}`);
    if (i >= 0 && argv[i + 1] !== undefined) return argv[i + 1];
    if (def === undefined) throw new Error(`--${name} is required`);
    return def;
  };
  const { default: WebSocket } = await import('ws');
  const hours = Number(opt('hours', '24'));
  const perMessage = Math.max(1, Number(opt('per-message', '4')));
  const meter: SimMeter = {
    serial: opt('serial'),
    max_power_w: Number(opt('max-power-w', '12000')),
    interval_minutes: 15,
    pv_peak_w: Number(opt('pv-peak-w', '6000')),
    base_load_w: 350,
    seed: Number(opt('seed', '1')),
  };
  const items = simulateReadings(meter, Date.now() - hours * HOUR_MS, hours * 4, { fault_rate: Number(opt('fault-rate', '0')) });
  const ws = new WebSocket(opt('url'), { headers: { authorization: `Bearer ${opt('token')}` } });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
  });
  const outcome = new Map<string, number>();
  const ask = (msg: object): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()) as Record<string, unknown>));
      ws.send(JSON.stringify(msg));
    });
  for (let i = 0; i < items.length; i += perMessage) {
    const readings = items.slice(i, i + perMessage).map((x) => x.reading);
    for (;;) {
      const reply = await ask({ id: i, readings });
      if (reply.type === 'slow_down') {
        await new Promise((r) => setTimeout(r, Number(reply.retry_after_ms ?? 1000)));
        continue;
      }
      if (reply.type === 'ack') {
        const accepted = Number(reply.accepted);
        outcome.set('ACCEPTED', (outcome.get('ACCEPTED') ?? 0) + accepted);
        for (const r of reply.results as { status: string; code?: string }[]) outcome.set(r.code ?? r.status, (outcome.get(r.code ?? r.status) ?? 0) + 1);
      } else outcome.set(String(reply.code), (outcome.get(String(reply.code)) ?? 0) + readings.length);
      break;
    }
  }
  ws.close();
  const expected = new Map<string, number>();
  for (const it of items) expected.set(it.expect, (expected.get(it.expect) ?? 0) + 1);
  console.log(JSON.stringify({ sent: items.length, outcome: Object.fromEntries(outcome), expected: Object.fromEntries(expected) }, null, 2));
}

if (process.argv[1] !== undefined && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}

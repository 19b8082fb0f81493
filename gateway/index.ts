// Front door of the gateway. The process entry (gateway/main.ts) calls attachGateway once the
// HTTP server and the database are up:
//
//   const gw = await attachGateway({ app: server.app, sql, metrics, log, config, runtime, ledger });
//   ... on shutdown: await gw.close();
//
// With a runtime (or backend) it also runs the market-data publisher (engine events → bus) and
// takes orders; without one it serves market data and private streams from the bus only.
import type { TemplatedApp } from 'uWebSockets.js';
import type { Registry } from 'prom-client';
import type { Config } from '../schema/config.js';
import type { Sql } from '../schema/db.js';
import type { Logger } from '../schema/log.js';
import type { Ledger } from '../ledger/ledger.js';
import { attachAdmin } from './admin.js';
import { ledgerFunds, runtimeBackend, unlimitedFunds, type Funds, type RuntimeLike, type TradingBackend } from './backend.js';
import { startLedgerSync, type LedgerSync } from './ledger-sync.js';
import { createInProcessBus, createRedisBus, type Bus } from './bus.js';
import { createGatewayMetrics, type GatewayMetrics } from './gateway-metrics.js';
import { DEFAULT_LIMITS, type GatewayLimits } from './limits.js';
import { startPublisher, type Publisher } from './publisher.js';
import { attachWebSocket, type WsEndpoint } from './ws.js';
import { createZoneCatalog, type ZoneCatalog } from './zones.js';

export interface GatewayOptions {
  app: TemplatedApp;
  sql: Sql;
  metrics: Registry;
  log?: Logger;
  /** redis_url: null → in-process bus. */
  config?: Pick<Config, 'redis_url'>;
  /** The engine runtime (engine/runtime startRuntime()); or give `backend` directly. */
  runtime?: RuntimeLike & { status(): { zones: { zone_id: number }[]; backlog_rows?: number; inflight_commands?: number } };
  backend?: TradingBackend;
  /** The ledger (holds, escrow, balances); or give `funds` directly. Without either, buys are not funded-checked. */
  ledger?: Ledger;
  /**
   * The ledger's LedgerStore (anything with `flush(): Promise<unknown>`). With it, every ack, reject,
   * fill/order/balance notification and admin deposit/withdrawal waits until the ledger changes it
   * reports are durable (one coalesced flush per event-loop turn covers every order of that turn),
   * and with a `runtime` the ledger is replayed from the journal and reconciled with the book at start.
   */
  ledgerStore?: { flush(): Promise<unknown> };
  funds?: Funds;
  /** A bus made elsewhere (tests); else one from config.redis_url. */
  bus?: Bus;
  /** Redis key/channel prefix (one exchange per prefix). Default "kwx:". */
  redis_prefix?: string;
  /** Run the market-data publisher here (default: when there is a backend). Exactly one process per exchange publishes. */
  publish?: boolean;
  limits?: Partial<GatewayLimits>;
  /** WebSocket path; default /ws. */
  ws_path?: string;
  now?: () => number;
}

export interface Gateway {
  bus: Bus;
  catalog: ZoneCatalog;
  publisher: Publisher | null;
  funds: Funds;
  metrics: GatewayMetrics;
  ws: WsEndpoint;
  limits: GatewayLimits;
  /** Ledger ↔ journal synchronisation (null without a ledger or a backend). */
  ledgerSync: LedgerSync | null;
  close(): Promise<void>;
}

export async function attachGateway(o: GatewayOptions): Promise<Gateway> {
  const now = o.now ?? Date.now;
  const limits: GatewayLimits = { ...DEFAULT_LIMITS, ...o.limits };
  const ownBus = o.bus === undefined;
  const redisUrl = o.config?.redis_url ?? null;
  const bus = o.bus ?? (redisUrl !== null ? createRedisBus(redisUrl, { prefix: o.redis_prefix }) : createInProcessBus());
  const catalog = createZoneCatalog(o.sql);
  await catalog.refresh();
  const backend = o.backend ?? (o.runtime !== undefined ? runtimeBackend(o.runtime) : null);
  let funds = o.funds;
  let sync: LedgerSync | null = null;
  if (funds === undefined && o.ledger !== undefined) {
    await configureLedgerZones(o.sql, o.ledger, catalog, now());
    const store = o.ledgerStore;
    const lf = ledgerFunds(o.ledger, {
      minorUnits: (c) => catalog.minorUnits(c),
      currencies: () => catalog.currencyList(),
      now,
      flush: store === undefined ? undefined : () => store.flush(),
      log: o.log,
      onUnfunded: (zone_id, order_id, user_id) => {
        void backend?.submit(zone_id, { type: 'CANCEL', order_id, user_id });
      },
    });
    funds = lf;
    if (backend !== null) {
      sync = await startLedgerSync({
        sql: o.sql, backend, funds: lf, flush: store === undefined ? undefined : () => store.flush(), journal: o.runtime !== undefined && o.backend === undefined, log: o.log,
      });
    }
  }
  funds ??= unlimitedFunds();
  let ws: WsEndpoint | null = null;
  const runtime = o.runtime;
  const metrics = createGatewayMetrics(o.metrics, {
    buffered: () => ws?.bufferedBytes() ?? 0,
    runtime: runtime === undefined ? undefined : () => {
      const s = runtime.status() as { backlog_rows?: number; inflight_commands?: number };
      return { backlog_rows: s.backlog_rows ?? 0, inflight_commands: s.inflight_commands ?? 0 };
    },
  });
  const publisher = backend !== null && o.publish !== false ? await startPublisher({ backend, funds, bus, catalog, now }) : null;
  ws = attachWebSocket({ app: o.app, sql: o.sql, bus, catalog, limits, metrics, backend, funds, orders: publisher?.orders ?? null, now, path: o.ws_path });
  const ledger = funds === o.funds ? undefined : o.ledger;
  const zoneCreated = async (zone_id: number): Promise<boolean> => {
    // catalog and ledger first: the zone's first events and orders need its currency and fees
    await catalog.load(zone_id);
    if (ledger !== undefined) await configureLedgerZones(o.sql, ledger, catalog, now());
    return backend?.startZone === undefined ? false : backend.startZone(zone_id);
  };
  attachAdmin({ app: o.app, sql: o.sql, bus, catalog, limits, metrics, backend, funds, orders: publisher?.orders ?? null, now, zoneCreated });
  o.log?.info('gateway attached', { bus: bus.kind, publisher: publisher !== null, trading: backend !== null });
  const endpoint = ws;
  return {
    bus,
    catalog,
    publisher,
    funds,
    metrics,
    ws: endpoint,
    limits,
    ledgerSync: sync,
    async close() {
      endpoint.close();
      publisher?.stop();
      await sync?.stop();
      if (ownBus) await bus.close();
    },
  };
}

/** Gives the ledger each zone's pricing (currency, tick, fee in force) if it does not have it yet. */
async function configureLedgerZones(sql: Sql, ledger: Ledger, catalog: ZoneCatalog, now_ms: number): Promise<void> {
  for (const z of catalog.all()) {
    try {
      ledger.zone(z.zone_id);
      continue;
    } catch {
      // not configured yet
    }
    const [fee] = await sql<{ fee_bps: number; fee_per_kwh_minor: string }[]>`
      select fee_bps, fee_per_kwh_minor from fee_schedules where (zone_id = ${z.zone_id} or zone_id is null) and effective_from <= now()
      order by (zone_id is null), effective_from desc limit 1`;
    ledger.configureZone(
      { zone_id: z.zone_id, currency: z.currency, minor_units: z.minor_units, tick_size: z.unit.tick_size, fee_bps: fee?.fee_bps ?? 0, fee_per_kwh_minor: BigInt(fee?.fee_per_kwh_minor ?? 0) },
      now_ms,
    );
  }
}

export { createCoreBackend, ledgerFunds, runtimeBackend, unlimitedFunds } from './backend.js';
export type { TradingBackend, Funds, CoreBackend } from './backend.js';
export { createInProcessBus, createRedisBus } from './bus.js';
export type { Bus } from './bus.js';
export { createApiKey, loginMessage, adminHeaders, signPayload } from './auth.js';
export { DEFAULT_LIMITS } from './limits.js';

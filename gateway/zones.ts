// Zone facts the edge needs to turn decimals into integers: tick size (price unit) and currency.
// Read from grid_zones; refreshed when an admin changes a zone or a client names an unknown one.
import type { Sql } from '../schema/db.js';
import { priceUnit, type PriceUnit } from './units.js';

export interface ZoneInfo {
  zone_id: number;
  code: string;
  status: string;
  currency: string;
  minor_units: number;
  unit: PriceUnit;
}

export interface ZoneCatalog {
  get(zone_id: number): ZoneInfo | undefined;
  /** Looks the zone up in the database if it is not known yet. */
  load(zone_id: number): Promise<ZoneInfo | undefined>;
  refresh(): Promise<void>;
  minorUnits(currency: string): number;
  all(): ZoneInfo[];
  /** The zones' currencies (one array, rebuilt only when a new currency appears: read per balance update). */
  currencyList(): readonly string[];
}

interface ZoneRow {
  id: string;
  code: string;
  status: string;
  currency: string;
  currency_minor_units: number;
  tick_size: string;
}

function toInfo(r: ZoneRow): ZoneInfo {
  return { zone_id: Number(r.id), code: r.code, status: r.status, currency: r.currency, minor_units: r.currency_minor_units, unit: priceUnit(r.tick_size) };
}

export function createZoneCatalog(sql: Sql): ZoneCatalog {
  const zones = new Map<number, ZoneInfo>();
  const currencies = new Map<string, number>();
  let list: readonly string[] = [];
  const put = (z: ZoneInfo): void => {
    zones.set(z.zone_id, z);
    if (!currencies.has(z.currency)) list = [...currencies.keys(), z.currency];
    currencies.set(z.currency, z.minor_units);
  };
  return {
    get: (id) => zones.get(id),
    async load(id) {
      const known = zones.get(id);
      if (known !== undefined) return known;
      const rows = await sql<ZoneRow[]>`select id, code, status, currency, currency_minor_units, tick_size::text as tick_size from grid_zones where id = ${id}`;
      if (rows.length === 0) return undefined;
      const z = toInfo(rows[0]);
      put(z);
      return z;
    },
    async refresh() {
      const rows = await sql<ZoneRow[]>`select id, code, status, currency, currency_minor_units, tick_size::text as tick_size from grid_zones`;
      for (const r of rows) put(toInfo(r));
    },
    minorUnits: (c) => currencies.get(c) ?? 2,
    all: () => [...zones.values()],
    currencyList: () => list,
  };
}

/** A catalog from fixed data (bench, tests without a database). */
export function staticZoneCatalog(list: ZoneInfo[]): ZoneCatalog {
  const zones = new Map(list.map((z) => [z.zone_id, z]));
  return {
    get: (id) => zones.get(id),
    load: async (id) => zones.get(id),
    refresh: async () => {},
    minorUnits: (c) => list.find((z) => z.currency === c)?.minor_units ?? 2,
    all: () => [...zones.values()],
    currencyList: () => [...new Set(list.map((z) => z.currency))],
  };
}

// Daily partitions of meter_readings and device_telemetry: created ahead by a timer, and on
// demand (ingest_create_partitions) before a batch writes into a day that has none yet.
import type { Sql } from '../schema/db.js';

export type PartitionedTable = 'meter_readings' | 'device_telemetry';
const DAY_MS = 86_400_000;

export class Partitions {
  private readonly known = new Set<string>();

  constructor(private readonly sql: Sql) {}

  /** Forgets what is known (after a write found no partition: one was dropped behind our back). */
  reset(): void {
    this.known.clear();
  }

  async load(): Promise<void> {
    const rows = await this.sql<{ relname: string }[]>`
      select c.relname from pg_inherits i
      join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
      where p.relname in ('meter_readings', 'device_telemetry')`;
    for (const r of rows) this.known.add(r.relname);
  }

  /** Ensures partitions for every UTC day from `fromMs` to `toMs`; returns how many were created. */
  async ensure(table: PartitionedTable, fromMs: number, toMs: number): Promise<number> {
    let missing = false;
    for (let d = Math.floor(fromMs / DAY_MS); d <= Math.floor(toMs / DAY_MS); d++) {
      if (!this.known.has(partitionName(table, d * DAY_MS))) {
        missing = true;
        break;
      }
    }
    if (!missing) return 0;
    const [row] = await this.sql<{ n: number }[]>`
      select ingest_create_partitions(${table}, ${new Date(fromMs)}::timestamptz, ${new Date(toMs)}::timestamptz) as n`;
    for (let d = Math.floor(fromMs / DAY_MS); d <= Math.floor(toMs / DAY_MS); d++) this.known.add(partitionName(table, d * DAY_MS));
    return row.n;
  }

  async ensureAhead(nowMs: number, daysAhead: number): Promise<number> {
    const a = await this.ensure('meter_readings', nowMs - DAY_MS, nowMs + daysAhead * DAY_MS);
    const b = await this.ensure('device_telemetry', nowMs - DAY_MS, nowMs + daysAhead * DAY_MS);
    return a + b;
  }
}

export function partitionName(table: PartitionedTable, ms: number): string {
  const d = new Date(ms);
  const ymd = `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}${String(d.getUTCDate()).padStart(2, '0')}`;
  return `${table}_p${ymd}`;
}

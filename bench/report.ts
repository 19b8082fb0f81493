import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/results/ in the source tree, whether we run from dist/bench or bench/. */
export function resultsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${join('dist', 'bench')}`) ? join(here, '..', '..') : join(here, '..');
  return join(root, 'bench', 'results');
}

export type Row = Record<string, string | number>;

/** Prints rows as an aligned text table. */
export function printTable(title: string, rows: Row[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const cell = (v: string | number): string =>
    typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(2)) : v;
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c] ?? '').length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padStart(widths[i])).join('  ');
  console.log(`\n${title}`);
  console.log(line(cols));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(cols.map((c) => cell(r[c] ?? ''))));
}

/** Writes bench/results/<name>.json as {"metrics": {...}, ...extra}. */
export function writeResults(name: string, metrics: Record<string, number>, extra: Record<string, unknown> = {}): string {
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  const body = {
    metrics,
    ...extra,
    machine: { node: process.version, platform: process.platform, arch: process.arch },
    measured_at: new Date().toISOString(),
  };
  writeFileSync(file, JSON.stringify(body, null, 2) + '\n');
  console.log(`\nwrote ${file}`);
  return file;
}

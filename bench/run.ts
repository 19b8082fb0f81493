// Entry point for `npm run bench -- <name> [...]`: runs one or more benchmarks by name.
// Each benchmark module exports `run(args: string[]): Promise<void>` and writes its own
// bench/results/<name>.json through bench/report.ts.
type BenchModule = { run(args: string[]): Promise<void> };
const NAMES = ['engine', 'pipeline', 'ledger', 'gateway', 'ingest'] as const;
// A computed specifier keeps each benchmark optional at build time.
const load = (name: string): Promise<BenchModule> => import(`./${name}.js`) as Promise<BenchModule>;
const BENCHMARKS: Record<string, () => Promise<BenchModule>> = Object.fromEntries(NAMES.map((n) => [n, () => load(n)]));

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  const names = name === undefined || name === 'all' ? Object.keys(BENCHMARKS) : [name];
  for (const n of names) {
    const load = BENCHMARKS[n];
    if (load === undefined) {
      console.error(`unknown benchmark "${n}"; choose one of: ${Object.keys(BENCHMARKS).join(', ')}, all`);
      process.exit(2);
    }
    let mod: BenchModule;
    try {
      mod = await load();
    } catch (err) {
      console.error(`benchmark "${n}" is not available: ${(err as Error).message}`);
      process.exitCode = 1;
      continue;
    }
    await mod.run(rest);
  }
}

await main();

import { collectDefaultMetrics, Registry } from 'prom-client';

/** One registry per process; modules register their metrics on it (no per-user labels). */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service: 'kwx' });
  collectDefaultMetrics({ register: registry });
  return registry;
}

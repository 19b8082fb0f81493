// The gateway's Prometheus metrics (no per-user labels: labels are message types, ops, codes, routes).
import { Counter, Gauge, Histogram, exponentialBuckets, type Registry } from 'prom-client';

export interface GatewayMetrics {
  messages: Counter<'type' | 'outcome'>;
  message_seconds: Histogram<'type'>;
  acks: Counter<'op'>;
  rejects: Counter<'op' | 'code'>;
  ack_latency: Histogram<'op'>;
  admin_requests: Counter<'route' | 'status'>;
  admin_seconds: Histogram<'route'>;
  connections: Gauge;
  subscriptions: Gauge;
  buffered_bytes: Gauge;
  dropped_sends: Counter;
  conflated_updates: Counter;
  slow_consumer_disconnects: Counter;
  resyncs: Counter<'reason'>;
  engine_match_seconds: Histogram;
  journal_batch_size: Histogram;
  journal_commit_seconds: Histogram;
  journal_backlog_rows: Gauge;
  engine_inflight_commands: Gauge;
}

function once<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function createGatewayMetrics(registry: Registry, collect: { buffered?: () => number; runtime?: () => { backlog_rows: number; inflight_commands: number } | null } = {}): GatewayMetrics {
  const r = [registry];
  const latency = exponentialBuckets(0.0001, 2, 16);
  return {
    messages: once(registry, 'kwx_ws_messages_total', () => new Counter({ name: 'kwx_ws_messages_total', help: 'WebSocket messages received, by type and outcome (ok, reject, error)', labelNames: ['type', 'outcome'], registers: r })),
    message_seconds: once(registry, 'kwx_ws_message_duration_seconds', () => new Histogram({ name: 'kwx_ws_message_duration_seconds', help: 'Time from a message arriving to its reply', labelNames: ['type'], buckets: latency, registers: r })),
    acks: once(registry, 'kwx_order_acks_total', () => new Counter({ name: 'kwx_order_acks_total', help: 'Trading requests acknowledged, by op', labelNames: ['op'], registers: r })),
    rejects: once(registry, 'kwx_order_rejects_total', () => new Counter({ name: 'kwx_order_rejects_total', help: 'Requests rejected, by op and code', labelNames: ['op', 'code'], registers: r })),
    ack_latency: once(registry, 'kwx_order_ack_latency_seconds', () => new Histogram({ name: 'kwx_order_ack_latency_seconds', help: 'Submit to committed result, by op', labelNames: ['op'], buckets: latency, registers: r })),
    admin_requests: once(registry, 'kwx_admin_requests_total', () => new Counter({ name: 'kwx_admin_requests_total', help: 'Admin HTTP requests by route and status', labelNames: ['route', 'status'], registers: r })),
    admin_seconds: once(registry, 'kwx_admin_request_duration_seconds', () => new Histogram({ name: 'kwx_admin_request_duration_seconds', help: 'Admin HTTP request duration by route', labelNames: ['route'], registers: r })),
    connections: once(registry, 'kwx_ws_connections', () => new Gauge({ name: 'kwx_ws_connections', help: 'Open WebSocket connections', registers: r })),
    subscriptions: once(registry, 'kwx_ws_subscriptions', () => new Gauge({ name: 'kwx_ws_subscriptions', help: 'Market-data subscriptions over all connections', registers: r })),
    buffered_bytes: once(registry, 'kwx_ws_buffered_bytes', () => new Gauge({
      name: 'kwx_ws_buffered_bytes', help: 'Bytes buffered for sending over all connections', registers: r,
      collect() { if (collect.buffered) this.set(collect.buffered()); },
    })),
    dropped_sends: once(registry, 'kwx_ws_dropped_sends_total', () => new Counter({ name: 'kwx_ws_dropped_sends_total', help: 'Sends uWS dropped (send returned 2)', registers: r })),
    conflated_updates: once(registry, 'kwx_ws_conflated_updates_total', () => new Counter({ name: 'kwx_ws_conflated_updates_total', help: 'Book updates not sent to a slow consumer (replaced by a snapshot when it drains)', registers: r })),
    slow_consumer_disconnects: once(registry, 'kwx_ws_slow_consumer_disconnects_total', () => new Counter({ name: 'kwx_ws_slow_consumer_disconnects_total', help: 'Connections closed because too many bytes were buffered', registers: r })),
    resyncs: once(registry, 'kwx_md_resyncs_total', () => new Counter({ name: 'kwx_md_resyncs_total', help: 'Book snapshots sent to resynchronise (gap on the bus, client request, after conflation)', labelNames: ['reason'], registers: r })),
    engine_match_seconds: once(registry, 'kwx_engine_match_latency_seconds', () => new Histogram({ name: 'kwx_engine_match_latency_seconds', help: 'Engine matching time per command (fed by the runtime)', buckets: latency, registers: r })),
    journal_batch_size: once(registry, 'kwx_journal_batch_size', () => new Histogram({ name: 'kwx_journal_batch_size', help: 'Commands per journal batch (fed by the runtime)', buckets: exponentialBuckets(1, 2, 14), registers: r })),
    journal_commit_seconds: once(registry, 'kwx_journal_commit_seconds', () => new Histogram({ name: 'kwx_journal_commit_seconds', help: 'Journal batch commit latency (fed by the runtime)', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: r })),
    journal_backlog_rows: once(registry, 'kwx_journal_backlog_rows', () => new Gauge({
      name: 'kwx_journal_backlog_rows', help: 'Uncommitted journal rows', registers: r,
      collect() { const s = collect.runtime?.(); if (s) this.set(s.backlog_rows); },
    })),
    engine_inflight_commands: once(registry, 'kwx_engine_inflight_commands', () => new Gauge({
      name: 'kwx_engine_inflight_commands', help: 'Commands submitted and not yet committed', registers: r,
      collect() { const s = collect.runtime?.(); if (s) this.set(s.inflight_commands); },
    })),
  };
}

import type { HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Registry } from 'prom-client';
import { loadUws } from './uws.js';

/** What /health reports: `starting` (503) until every part is up, then `ok` (200), `stopping` (503) on shutdown. */
export type HealthState = 'starting' | 'ok' | 'stopping';

export interface HttpServer {
  app: TemplatedApp;
  /** The bound port (useful with port 0). */
  port: number;
  setHealth(state: HealthState, detail?: Record<string, unknown>): void;
  close(): void;
}

/**
 * Writes a complete response in one cork. uWS responses must be written synchronously or after
 * onAborted has been registered; callers that respond later use `respondLater`.
 */
export function sendJson(res: HttpResponse, status: string, body: unknown, headers: Record<string, string> = {}): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json');
    for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
    res.end(JSON.stringify(body));
  });
}

/** Marks a response as pending an async answer; returns a function that reports whether the client went away. */
export function respondLater(res: HttpResponse): () => boolean {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  return () => aborted;
}

/** Starts the uWS app with /health and /metrics, listening on host:port. */
export async function startHttpServer(opts: { host: string; port: number; metrics: Registry; version: string }): Promise<HttpServer> {
  const uws = loadUws();
  const app = uws.App();
  let health: HealthState = 'starting';
  let healthDetail: Record<string, unknown> = {};
  const startedAt = Date.now();

  app.get('/health', (res) => {
    const body = { status: health, version: opts.version, uptime_s: Math.floor((Date.now() - startedAt) / 1000), ...healthDetail };
    sendJson(res, health === 'ok' ? '200 OK' : '503 Service Unavailable', body, health === 'ok' ? {} : { 'retry-after': '1' });
  });

  app.get('/metrics', (res) => {
    const isAborted = respondLater(res);
    opts.metrics.metrics().then(
      (text) => {
        if (isAborted()) return;
        res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', opts.metrics.contentType).end(text));
      },
      (err: Error) => {
        if (!isAborted()) sendJson(res, '500 Internal Server Error', { code: 'INTERNAL', message: err.message });
      },
    );
  });

  app.any('/*', (res, req) => {
    sendJson(res, '404 Not Found', { code: 'NOT_FOUND', message: `no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}` });
  });

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(opts.host, opts.port, (sock) => {
      if (sock === false) reject(new Error(`cannot listen on ${opts.host}:${opts.port} (in use or not permitted); set PORT to a free port`));
      else resolve(sock);
    });
  });
  const port = uws.us_socket_local_port(listenSocket as unknown as Parameters<typeof uws.us_socket_local_port>[0]);

  return {
    app,
    port,
    setHealth(state, detail = {}) {
      health = state;
      healthDetail = detail;
    },
    close() {
      uws.us_listen_socket_close(listenSocket);
    },
  };
}

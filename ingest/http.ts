// HTTP batch endpoints and the meter/device WebSocket stream, mounted on the gateway's uWS app.
//
//   POST {base}/readings    meter token; body JSON | NDJSON | CSV | MessagePack (by Content-Type)
//   POST {base}/telemetry   device token; same formats
//   WS   {base}/stream      meter or device token; text frames JSON, binary frames MessagePack
//
// Tokens: `Authorization: Bearer <token>` (HTTP and the WS upgrade) or `?token=` on the WS URL.
import type uWS from 'uWebSockets.js';
import { encode as msgpackEncode } from '@msgpack/msgpack';
import type { Logger } from '../schema/log.js';
import { IngestError, type IngestService } from './service.js';
import type { Principal } from './tokens.js';
import type { BatchReport, BodyFormat } from './types.js';

export interface IngestRouteDeps {
  service: IngestService;
  log: Logger;
  /** URL prefix (default "/ingest") */
  base_path?: string;
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  411: '411 Length Required',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

const FORMATS: Record<string, BodyFormat> = {
  'application/json': 'json',
  'application/x-ndjson': 'ndjson',
  'application/ndjson': 'ndjson',
  'application/jsonl': 'ndjson',
  'text/csv': 'csv',
  'application/csv': 'csv',
  'application/msgpack': 'msgpack',
  'application/x-msgpack': 'msgpack',
  'application/vnd.msgpack': 'msgpack',
};

export function formatOf(contentType: string): BodyFormat | null {
  const base = contentType.split(';')[0].trim().toLowerCase();
  if (base === '') return 'json';
  return FORMATS[base] ?? null;
}

function bearer(header: string): string | null {
  const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
  return m === null ? null : m[1];
}

interface WsData {
  principal: Principal;
  /** the token the stream was opened with: verified again (cached) for every message */
  token: string;
  /** settles when the previous message's token check has */
  verified: Promise<void>;
  closed: boolean;
  seq: number;
}

export function registerIngestRoutes(app: uWS.TemplatedApp, deps: IngestRouteDeps): void {
  const base = deps.base_path ?? '/ingest';
  const { service, log } = deps;
  const limits = service.limits;

  const batch = (kind: 'readings' | 'telemetry') => (res: uWS.HttpResponse, req: uWS.HttpRequest): void => {
    // everything from req must be read before the first await
    const token = bearer(req.getHeader('authorization'));
    const format = formatOf(req.getHeader('content-type'));
    const lengthHeader = req.getHeader('content-length');
    const full = /(^|&)report=full(&|$)/.test(req.getQuery() ?? '');
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      if (aborted) return;
      aborted = true;
      res.cork(() => {
        res.writeStatus(STATUS_TEXT[status] ?? `${status} Error`).writeHeader('content-type', 'application/json');
        for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
        res.end(JSON.stringify(body));
      });
    };
    const fail = (err: unknown): void => {
      if (err instanceof IngestError) {
        const headers: Record<string, string> = err.retry_after_s !== undefined ? { 'retry-after': String(err.retry_after_s) } : {};
        reply(err.http_status, { error: { code: err.code, message: err.message } }, headers);
      } else {
        log.error('ingest request failed', { error: (err as Error).message });
        reply(500, { error: { code: 'INTERNAL', message: 'internal error' } });
      }
    };
    if (token === null) return fail(new IngestError('UNAUTHORIZED', 'send the meter or device token as "Authorization: Bearer <token>"', 401));
    if (format === null) {
      return fail(new IngestError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json, application/x-ndjson, text/csv or application/msgpack', 415));
    }
    const declared = lengthHeader === '' ? null : Number(lengthHeader);
    if (declared !== null && Number.isFinite(declared) && declared > limits.max_body_bytes) {
      return fail(new IngestError('BODY_TOO_LARGE', `body is ${declared} bytes, at most ${limits.max_body_bytes} are accepted`, 413));
    }
    readBody(res, limits.max_body_bytes, (body) => {
      if (body === null) return fail(new IngestError('BODY_TOO_LARGE', `body is larger than ${limits.max_body_bytes} bytes`, 413));
      void (async () => {
        const principal = await service.authenticate(token);
        if (principal === null) throw new IngestError('UNAUTHORIZED', 'the token is not valid', 401);
        const report =
          kind === 'readings'
            ? await service.submitReadings(principal, body, format, { full_report: full })
            : await service.submitTelemetry(principal, body, format, { full_report: full });
        reply(200, httpReport(report));
      })().catch(fail);
    });
  };

  app.post(`${base}/readings`, batch('readings'));
  app.post(`${base}/telemetry`, batch('telemetry'));

  app.ws<WsData>(`${base}/stream`, {
    maxPayloadLength: limits.max_ws_message_bytes,
    idleTimeout: 120,
    maxBackpressure: 4 * 1024 * 1024,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const token = bearer(req.getHeader('authorization')) ?? new URLSearchParams(req.getQuery() ?? '').get('token');
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      const deny = (): void => {
        if (aborted) return;
        res.cork(() => {
          res.writeStatus('401 Unauthorized').writeHeader('content-type', 'application/json');
          res.end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'a valid meter or device token is required' } }));
        });
      };
      if (token === null) return deny();
      service.authenticate(token).then(
        (principal) => {
          if (principal === null) return deny();
          if (aborted) return;
          res.cork(() => res.upgrade<WsData>({ principal, token, verified: Promise.resolve(), closed: false, seq: 0 }, key, protocol, extensions, context));
        },
        (err) => {
          log.error('ws auth failed', { error: (err as Error).message });
          deny();
        },
      );
    },
    message: (ws, message, isBinary) => {
      const data = ws.getUserData();
      const seq = ++data.seq;
      const body = new Uint8Array(message.slice(0));
      const format: BodyFormat = isBinary ? 'msgpack' : 'json';
      const id = isBinary ? null : peekId(body);
      const send = (msg: Record<string, unknown>): void => {
        if (data.closed) return;
        ws.cork(() => {
          if (isBinary) ws.send(msgpackEncode(msg), true);
          else ws.send(JSON.stringify(msg), false);
        });
      };
      const submit = data.principal.kind === 'meter' ? service.submitReadings : service.submitTelemetry;
      // a token rotated or revoked since the upgrade ends the stream (at once after
      // invalidateIngestToken, else when the cached verification expires)
      // one verification after the other, so that messages reach submit (which queues them per
      // meter) in arrival order
      const verified = data.verified.then(() => service.authenticate(data.token));
      data.verified = verified.then(
        () => {},
        () => {},
      );
      verified.then((p) => {
        if (p === null || p.kind !== data.principal.kind || p.id !== data.principal.id) {
          throw new IngestError('UNAUTHORIZED', 'the token of this stream is no longer valid (rotated or revoked); reconnect with the new token', 401);
        }
        return submit(data.principal, body, format);
      }).then(
        (report) => send({ type: 'ack', seq, ...httpReport(report) }),
        (err) => {
          if (err instanceof IngestError && (err.code === 'QUEUE_FULL' || err.code === 'STORAGE_UNAVAILABLE' || err.code === 'SHUTTING_DOWN')) {
            send({ type: 'slow_down', seq, id, code: err.code, message: err.message, retry_after_ms: (err.retry_after_s ?? 1) * 1000 });
          } else if (err instanceof IngestError) {
            send({ type: 'error', seq, id, code: err.code, message: err.message });
            if (err.code === 'UNAUTHORIZED' && !data.closed) {
              data.closed = true;
              ws.end(4401, 'token no longer valid');
            }
          } else {
            log.error('ws message failed', { error: (err as Error).message });
            send({ type: 'error', seq, id, code: 'INTERNAL', message: 'internal error' });
          }
        },
      );
    },
    close: (ws) => {
      ws.getUserData().closed = true;
    },
  });
}

/** The message id of a JSON envelope whose first key is "id" (so that a refusal can name it before decoding). */
function peekId(body: Uint8Array): string | number | null {
  const head = Buffer.from(body.buffer, body.byteOffset, Math.min(body.byteLength, 96)).toString('latin1');
  const m = /^\s*\{\s*"id"\s*:\s*(?:(-?\d{1,15})|"([^"\\]{0,64})")/.exec(head);
  if (m === null) return null;
  return m[1] !== undefined ? Number(m[1]) : m[2];
}

function httpReport(r: BatchReport): Record<string, unknown> {
  return {
    id: r.id ?? null,
    received: r.received,
    accepted: r.accepted,
    duplicates: r.duplicates,
    rejected: r.rejected,
    conflicts: r.conflicts,
    results: r.results,
  };
}

/** Collects the body into one buffer of its own (transferable to a worker); null when over maxBytes. */
function readBody(res: uWS.HttpResponse, maxBytes: number, done: (body: Uint8Array | null) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  res.onData((chunk, isLast) => {
    if (!over) {
      size += chunk.byteLength;
      if (size > maxBytes) over = true;
      else chunks.push(Buffer.from(chunk.slice(0)));
    }
    if (!isLast) return;
    if (over) return done(null);
    const body = new Uint8Array(new ArrayBuffer(size));
    let off = 0;
    for (const c of chunks) {
      body.set(c, off);
      off += c.byteLength;
    }
    done(body);
  });
}

// Body decoding: JSON (array, or an envelope {id, readings|telemetry: [...]}), NDJSON, CSV (header
// row) and MessagePack (same shapes as JSON). Runs in the decode worker.
import { isAscii } from 'node:buffer';
import { decode as msgpackDecode } from '@msgpack/msgpack';
import type { BodyError, BodyFormat } from './types.js';

/** A decoded item: an object whose fields are still unchecked, or a per-item parse error. */
export type RawItem = Record<string, unknown> | { __malformed: string };

export interface RawBatch {
  envelope_id: string | number | null;
  items: RawItem[];
  error: BodyError | null;
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The body as text; invalid UTF-8 throws. An all-ASCII body (the common case) is read as latin1,
 * which for ASCII is the same text and far cheaper than the validating UTF-8 decoder.
 */
function text(body: Uint8Array): string {
  if (isAscii(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('latin1');
  return textDecoder.decode(body);
}

export function decodeBody(format: BodyFormat, body: Uint8Array, listKey: 'readings' | 'telemetry', maxItems: number): RawBatch {
  let batch: RawBatch;
  try {
    switch (format) {
      case 'json':
        batch = fromValue(JSON.parse(text(body)), listKey);
        break;
      case 'msgpack':
        batch = fromValue(msgpackDecode(body), listKey);
        break;
      case 'ndjson':
        batch = fromNdjson(text(body));
        break;
      case 'csv':
        batch = fromCsv(text(body));
        break;
    }
  } catch (err) {
    return { envelope_id: null, items: [], error: { code: 'MALFORMED', message: `body is not valid ${format}: ${(err as Error).message}` } };
  }
  if (batch.error === null && batch.items.length > maxItems) {
    return { envelope_id: batch.envelope_id, items: [], error: { code: 'BATCH_TOO_LARGE', message: `batch has ${batch.items.length} items, at most ${maxItems} are allowed` } };
  }
  return batch;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

function fromValue(value: unknown, listKey: 'readings' | 'telemetry'): RawBatch {
  if (Array.isArray(value)) return { envelope_id: null, items: value.map(asItem), error: null };
  if (isRecord(value)) {
    const id = value.id;
    const envelope_id = typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? id : null;
    const list = value[listKey];
    if (Array.isArray(list)) return { envelope_id, items: list.map(asItem), error: null };
    if (list === undefined && value.id === undefined) return { envelope_id: null, items: [value], error: null };
    return { envelope_id, items: [], error: { code: 'MALFORMED', message: `expected an array of items or an object with a "${listKey}" array` } };
  }
  return { envelope_id: null, items: [], error: { code: 'MALFORMED', message: `expected an array of items or an object with a "${listKey}" array` } };
}

function asItem(v: unknown): RawItem {
  return isRecord(v) ? v : { __malformed: 'item is not an object' };
}

function fromNdjson(text: string): RawBatch {
  const items: RawItem[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    try {
      items.push(asItem(JSON.parse(t)));
    } catch (err) {
      items.push({ __malformed: `line is not JSON: ${(err as Error).message}` });
    }
  }
  return { envelope_id: null, items, error: null };
}

/** CSV with a header row naming the fields; no quoting is needed for kwx fields (quotes are stripped). */
function fromCsv(text: string): RawBatch {
  const lines = text.split('\n');
  let h = 0;
  while (h < lines.length && lines[h].trim() === '') h++;
  if (h === lines.length) return { envelope_id: null, items: [], error: null };
  const header = splitCsvLine(lines[h]);
  if (header.length === 0 || header.some((c) => !/^[a-z_]+$/.test(c))) {
    return { envelope_id: null, items: [], error: { code: 'MALFORMED', message: 'CSV header must name the fields, e.g. meter_serial,interval_start,interval_minutes,production_wh,consumption_wh,quality' } };
  }
  const items: RawItem[] = [];
  for (let i = h + 1; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const cells = splitCsvLine(line);
    if (cells.length !== header.length) {
      items.push({ __malformed: `CSV line ${i + 1} has ${cells.length} fields, the header has ${header.length}` });
      continue;
    }
    const item: Record<string, unknown> = {};
    for (let c = 0; c < header.length; c++) if (cells[c] !== '') item[header[c]] = cells[c];
    items.push(item);
  }
  return { envelope_id: null, items, error: null };
}

function splitCsvLine(line: string): string[] {
  return line
    .replace(/\r$/, '')
    .split(',')
    .map((c) => {
      const t = c.trim();
      return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
    });
}

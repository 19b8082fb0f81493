import { describe, expect, it } from 'vitest';
import { decodeBody } from '../../ingest/decode.js';
import { parseTime } from '../../ingest/validate.js';

describe('body text', () => {
  it('ASCII, UTF-8 with non-ASCII text and a BOM decode to the same items; invalid UTF-8 is MALFORMED', () => {
    const enc = new TextEncoder();
    const ascii = decodeBody('json', enc.encode('[{"meter_serial":"M-1","production_wh":1}]'), 'readings', 10);
    expect(ascii).toEqual({ envelope_id: null, items: [{ meter_serial: 'M-1', production_wh: 1 }], error: null });
    const utf8 = decodeBody('ndjson', enc.encode('{"meter_serial":"MÉTER-ü-1","production_wh":1}\n'), 'readings', 10);
    expect(utf8.items).toEqual([{ meter_serial: 'MÉTER-ü-1', production_wh: 1 }]);
    const bom = decodeBody('json', new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode('[{"a":1}]')]), 'readings', 10);
    expect(bom.items).toEqual([{ a: 1 }]);
    const bad = decodeBody('csv', new Uint8Array([...enc.encode('meter_serial\nM'), 0xff, 0x0a]), 'readings', 10);
    expect(bad.error?.code).toBe('MALFORMED');
  });
});

describe('parseTime', () => {
  it('the toISOString shape gives what Date.parse gives; invalid dates and other shapes take the general path', () => {
    for (const s of ['2026-11-12T23:45:00.000Z', '2024-02-29T00:00:00.999Z', '2000-01-01T00:00:00.001Z', '2026-03-29T01:15:00.000Z']) {
      expect(parseTime(s)).toBe(Date.parse(s));
    }
    for (const s of ['2026-02-30T00:00:00.000Z', '2025-02-29T00:00:00.000Z', '2026-13-01T00:00:00.000Z', '2026-01-01T24:00:00.000Z', '2026-01-01T00:60:00.000Z', '2026-01-01T00:00:00.00xZ']) {
      const t = Date.parse(s);
      expect(parseTime(s)).toBe(Number.isFinite(t) ? t : null);
    }
    expect(parseTime('0999-06-01T00:00:00.000Z')).toBe(Date.parse('0999-06-01T00:00:00.000Z'));
    expect(parseTime('2026-11-12T23:45:00.000+01:00')).toBe(Date.parse('2026-11-12T22:45:00.000Z'));
  });
});

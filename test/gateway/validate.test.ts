// The compiled validators give the same first problem as the plain interpreter they replaced
// (kept below as the reference), on random messages of every protocol type.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IN_SCHEMAS } from '../../gateway/protocol.js';
import { compile, type JsonSchema, type Problem, type Validator } from '../../gateway/validate.js';

// ---- reference: the loop-based validator as it was before the per-schema object checks ----
function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}
function typeMatches(actual: string, wanted: string): boolean {
  return actual === wanted || (wanted === 'number' && actual === 'integer');
}
function reference(schema: JsonSchema, path = ''): Validator {
  const types = schema.type === undefined ? null : Array.isArray(schema.type) ? schema.type : [schema.type];
  const props = schema.properties ? Object.entries(schema.properties).map(([k, s]) => [k, reference(s, path === '' ? k : `${path}.${k}`)] as const) : [];
  const known = new Set(Object.keys(schema.properties ?? {}));
  const re = schema.pattern === undefined ? null : new RegExp(schema.pattern);
  const items = schema.items ? reference(schema.items, `${path}[]`) : null;
  const where = path === '' ? 'message' : `"${path}"`;
  return (v): Problem | null => {
    const t = typeOf(v);
    if (types !== null && !types.some((w) => typeMatches(t, w))) {
      if (!(t === 'integer' || t === 'number') || !types.includes('integer')) return { path, message: `${where} must be ${types.join(' or ')}, got ${t}` };
      return { path, message: `${where} must be an integer, got ${String(v)}` };
    }
    if (schema.const !== undefined && v !== schema.const) return { path, message: `${where} must be ${JSON.stringify(schema.const)}` };
    if (schema.enum !== undefined && !schema.enum.includes(v as string)) return { path, message: `${where} must be one of ${schema.enum.join(', ')}` };
    if (t === 'string') {
      const s = v as string;
      if (schema.minLength !== undefined && s.length < schema.minLength) return { path, message: `${where} must have at least ${schema.minLength} characters` };
      if (schema.maxLength !== undefined && s.length > schema.maxLength) return { path, message: `${where} must have at most ${schema.maxLength} characters` };
      if (re !== null && !re.test(s)) return { path, message: `${where} has the wrong format` };
    } else if (t === 'integer' || t === 'number') {
      const n = v as number;
      if (t === 'integer' && !Number.isSafeInteger(n)) return { path, message: `${where} must be a safe integer` };
      if (schema.minimum !== undefined && n < schema.minimum) return { path, message: `${where} must be ≥ ${schema.minimum}` };
      if (schema.maximum !== undefined && n > schema.maximum) return { path, message: `${where} must be ≤ ${schema.maximum}` };
    } else if (t === 'object') {
      const o = v as Record<string, unknown>;
      for (const r of schema.required ?? []) if (o[r] === undefined) return { path: r, message: `"${path === '' ? r : `${path}.${r}`}" is required` };
      if (schema.additionalProperties === false) {
        for (const k in o) if (Object.hasOwn(o, k) && !known.has(k)) return { path: k, message: `unknown field "${path === '' ? k : `${path}.${k}`}"` };
      }
      for (const [k, check] of props) {
        const x = o[k];
        if (x === undefined) continue;
        const p = check(x);
        if (p !== null) return p;
      }
    } else if (t === 'array') {
      const a = v as unknown[];
      if (schema.minItems !== undefined && a.length < schema.minItems) return { path, message: `${where} must have at least ${schema.minItems} item${schema.minItems === 1 ? '' : 's'}` };
      if (schema.maxItems !== undefined && a.length > schema.maxItems) return { path, message: `${where} must have at most ${schema.maxItems} items` };
      if (items !== null) {
        for (const x of a) {
          const p = items(x);
          if (p !== null) return p;
        }
      }
    }
    return null;
  };
}

const NESTED: JsonSchema = {
  type: 'object', additionalProperties: false, required: ['a'],
  properties: { a: { type: 'integer', minimum: 1 }, b: { type: 'array', maxItems: 3, items: { type: 'object', required: ['x'], additionalProperties: false, properties: { x: { type: 'string', pattern: '^[a-z]+$' }, y: { enum: ['P', 'Q'] } } } } },
};

describe('validate', () => {
  it('the compiled object checks answer as the reference interpreter on random messages of every type (same problem, same order)', () => {
    const schemas: [string, JsonSchema][] = [...Object.entries(IN_SCHEMAS), ['nested', NESTED]];
    const value = fc.oneof(
      fc.constantFrom('place', 'BUY', 'SELL', 'LIMIT', 'ANY', 'SOLAR', '0.1000', '1.000', 'abc', 'b1o1', '', 'x'.repeat(70), '-1', 'P'),
      fc.integer({ min: -3, max: 3 }), fc.constantFrom(1.5, 2 ** 60, Number.NaN), fc.boolean(), fc.constant(null),
      fc.array(fc.record({ x: fc.constantFrom('ab', 'A1', 3), y: fc.constantFrom('P', 'R') }, { requiredKeys: [] }), { maxLength: 4 }),
    );
    for (const [name, schema] of schemas) {
      const keys = [...Object.keys(schema.properties ?? {}), 'extra', 'toString', 'constructor'];
      const compiled = compile(schema);
      const ref = reference(schema);
      fc.assert(
        fc.property(fc.dictionary(fc.constantFrom(...keys), value, { maxKeys: 14 }), fc.boolean(), (d, typed) => {
          const m: Record<string, unknown> = { ...d };
          if (typed && name !== 'nested') m.type = name;
          expect(compiled(m)).toEqual(ref(m));
        }),
        { numRuns: 400 },
      );
      for (const v of [null, [], 'x', 3, {}]) expect(compiled(v)).toEqual(ref(v));
    }
  });
});

// A small JSON-schema validator for the subset the protocol uses (type, required, properties,
// additionalProperties: false, enum, const, minLength, maxLength, pattern, minimum, maximum,
// items, maxItems). Schemas are compiled once; validation returns the first problem or null.

export interface JsonSchema {
  type?: string | string[];
  required?: readonly string[];
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean;
  enum?: readonly (string | number | boolean | null)[];
  const?: string | number | boolean;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  items?: JsonSchema;
  maxItems?: number;
  description?: string;
  nullable?: boolean;
}

export interface Problem {
  path: string;
  message: string;
}

export type Validator = (value: unknown) => Problem | null;

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(actual: string, wanted: string): boolean {
  return actual === wanted || (wanted === 'number' && actual === 'integer');
}

export function compile(schema: JsonSchema, path = ''): Validator {
  const types = schema.type === undefined ? null : Array.isArray(schema.type) ? schema.type : [schema.type];
  const props = schema.properties ? Object.entries(schema.properties).map(([k, s]) => [k, compile(s, path === '' ? k : `${path}.${k}`)] as const) : [];
  const known = new Set(Object.keys(schema.properties ?? {}));
  const re = schema.pattern === undefined ? null : new RegExp(schema.pattern);
  const items = schema.items ? compile(schema.items, `${path}[]`) : null;
  const where = path === '' ? 'message' : `"${path}"`;
  // Precomputed for the per-message path (no closures or arrays made per call).
  const required = schema.required ?? [];
  const propNames = props.map((p) => p[0]);
  const propChecks = props.map((p) => p[1]);
  const closed = schema.additionalProperties === false;
  const typeOk = (t: string): boolean => {
    if (types === null) return true;
    for (let i = 0; i < types.length; i++) if (typeMatches(t, types[i])) return true;
    return false;
  };
  return (v) => {
    const t = typeOf(v);
    if (!typeOk(t)) {
      if (!(t === 'integer' || t === 'number') || !types!.includes('integer')) return { path, message: `${where} must be ${types!.join(' or ')}, got ${t}` };
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
      for (let i = 0; i < required.length; i++) {
        const r = required[i];
        if (o[r] === undefined) return { path: r, message: `"${path === '' ? r : `${path}.${r}`}" is required` };
      }
      if (closed) {
        for (const k in o) if (Object.hasOwn(o, k) && !known.has(k)) return { path: k, message: `unknown field "${path === '' ? k : `${path}.${k}`}"` };
      }
      for (let i = 0; i < propNames.length; i++) {
        const x = o[propNames[i]];
        if (x === undefined) continue;
        const p = propChecks[i](x);
        if (p !== null) return p;
      }
    } else if (t === 'array') {
      const a = v as unknown[];
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

// A small JSON-schema validator for the subset the protocol uses (type, required, properties,
// additionalProperties: false, enum, const, minLength, maxLength, pattern, minimum, maximum,
// items, minItems, maxItems). Schemas are compiled once; validation returns the first problem or null.

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
  minItems?: number;
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
  const objectCheck = props.length > 0 || required.length > 0 || closed ? compileObjectCheck(path, required, propNames, propChecks, known, closed) : null;
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
      if (objectCheck !== null) return objectCheck(v as Record<string, unknown>);
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

/**
 * An object schema's checks as straight-line code (one function per schema, made once): the
 * required fields, then unknown fields, then each property's own validator, in that order and
 * with the same problems as a loop over the field names — but each field is read at a site of
 * its own with its name as a constant, where one loop read every field of every message type at
 * one megamorphic keyed site.
 */
function compileObjectCheck(
  path: string,
  required: readonly string[],
  propNames: readonly string[],
  propChecks: readonly Validator[],
  known: ReadonlySet<string>,
  closed: boolean,
): (o: Record<string, unknown>) => Problem | null {
  const full = (k: string): string => (path === '' ? k : `${path}.${k}`);
  const missing = (i: number): Problem => ({ path: required[i], message: `"${full(required[i])}" is required` });
  const unknown = (k: string): Problem => ({ path: k, message: `unknown field "${full(k)}"` });
  const body: string[] = [];
  required.forEach((r, i) => body.push(`if (o[${JSON.stringify(r)}] === undefined) return missing(${i});`));
  if (closed) body.push('for (const k in o) if (hasOwn(o, k) && !known.has(k)) return unknown(k);');
  body.push('let x; let p;');
  propNames.forEach((n, i) => body.push(`x = o[${JSON.stringify(n)}]; if (x !== undefined && (p = checks[${i}](x)) !== null) return p;`));
  body.push('return null;');
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- generated from the protocol's own schemas, never from input
  const make = new Function('missing', 'unknown', 'known', 'hasOwn', 'checks', `return function check(o) {\n${body.join('\n')}\n};`);
  return make(missing, unknown, known, Object.hasOwn, propChecks) as (o: Record<string, unknown>) => Problem | null;
}

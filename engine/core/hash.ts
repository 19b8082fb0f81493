// FNV-1a over UTF-16 code units, two 32-bit lanes with different offset bases -> 64 bits as hex.
// Used for the engine's state hash: stable across runs, processes and restore.

export function hashString(s: string): string {
  let a = 0x811c9dc5;
  let b = 0xcbf29ce4 ^ 0x5bd1e995;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (a >>> 15);
  }
  return (a >>> 0).toString(16).padStart(8, '0') + (b >>> 0).toString(16).padStart(8, '0');
}

/**
 * The same FNV-1a (2 lanes) as hashString, fed piece by piece: hashing a JSON text while it is
 * "written" gives exactly hashString(text) without building the text (the engine's stateHash
 * streams its canonical state this way: same value as hashString(JSON.stringify(serialize()))).
 */
export class StreamHash {
  private a = 0x811c9dc5;
  private b = 0xcbf29ce4 ^ 0x5bd1e995;
  private readonly digits = new Uint8Array(24);

  /** Feeds the UTF-16 code units of s (raw, no quoting). */
  raw(s: string): void {
    let a = this.a;
    let b = this.b;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x01000193) ^ (a >>> 15);
    }
    this.a = a;
    this.b = b;
  }

  /** Feeds one code unit. */
  ch(c: number): void {
    const a = Math.imul(this.a ^ c, 0x01000193);
    this.a = a;
    this.b = Math.imul(this.b ^ c, 0x01000193) ^ (a >>> 15);
  }

  /** Feeds a number exactly as JSON.stringify writes it. */
  num(n: number): void {
    if (!Number.isSafeInteger(n)) {
      this.raw(JSON.stringify(n)); // non-integers, huge values, NaN/Infinity ("null"): rare
      return;
    }
    if (n < 0) {
      this.ch(45); // '-'
      n = -n;
    }
    const d = this.digits;
    let k = 0;
    if (n <= 0x7fffffff) {
      let m = n | 0;
      do {
        const q = (m / 10) | 0;
        d[k++] = 48 + m - q * 10;
        m = q;
      } while (m !== 0);
    } else {
      let m = n;
      do {
        const q = Math.floor(m / 10);
        d[k++] = 48 + m - q * 10;
        m = q;
      } while (m !== 0);
    }
    let a = this.a;
    let b = this.b;
    while (k > 0) {
      const c = d[--k];
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x01000193) ^ (a >>> 15);
    }
    this.a = a;
    this.b = b;
  }

  /** Feeds a string value exactly as JSON.stringify writes it (quoted, escaped). */
  str(s: string): void {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) {
        this.raw(JSON.stringify(s)); // escapes or surrogates: let JSON decide
        return;
      }
    }
    this.ch(34);
    this.raw(s);
    this.ch(34);
  }

  /** 16 hex digits, as hashString. */
  hex(): string {
    return (this.a >>> 0).toString(16).padStart(8, '0') + (this.b >>> 0).toString(16).padStart(8, '0');
  }
}

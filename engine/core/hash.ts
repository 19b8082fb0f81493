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

import { existsSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT } from '../schema/paths.js';

/**
 * The decode worker file piscina loads (a CommonJS entry that imports dist/ingest/decode-worker.js). Worker threads run plain JavaScript, so:
 * - compiled (production, `node dist/...`): this module is dist/ingest/worker-path.js and the worker
 *   is its sibling dist/ingest/decode-worker.js;
 * - from source (vitest, which transforms only the main thread): the compiled worker at
 *   <repo>/dist/ingest/decode-worker.js — `npm test` runs `npm run build` first; run it yourself
 *   before `npx vitest run test/ingest` after changing ingest/.
 */
export function decodeWorkerFile(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const compiled = here.endsWith(`${sep}dist${sep}ingest`);
  // the CommonJS entry (decode-worker-entry.cts: why) that imports decode-worker.js
  const file = compiled ? join(here, 'decode-worker-entry.cjs') : join(PROJECT_ROOT, 'dist', 'ingest', 'decode-worker-entry.cjs');
  if (!existsSync(file)) {
    throw new Error(`ingest decode worker not found at ${file}: run \`npm run build\` first (workers load compiled JavaScript)`);
  }
  return file;
}

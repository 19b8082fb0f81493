// piscina entry: decodes and validates one batch off the main thread. Loaded as compiled
// JavaScript (dist/ingest/decode-worker.js), see worker-path.ts.
import { runDecodeTask } from './validate.js';
import type { DecodeTask, Decoded } from './types.js';

export default function decodeTask(task: DecodeTask): Decoded {
  return runDecodeTask(task);
}

import { createRequire } from 'node:module';
import type * as UwsTypes from 'uWebSockets.js';

export type Uws = typeof UwsTypes;

/** Node ABI versions for which the pinned uWebSockets.js package ships native binaries. */
export const NATIVE_NODE_ABIS: Readonly<Record<string, string>> = { '93': 'Node 16', '108': 'Node 18', '115': 'Node 20' };

export class UwsUnavailableError extends Error {
  readonly code = 'UWS_NATIVE_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'UwsUnavailableError';
  }
}

/**
 * The pinned uWebSockets.js package silently falls back to a `ws`-based shim whose
 * publish/subscribe do nothing when no native binary matches this Node. kwx refuses to run on
 * the shim: the native module exports `getParts` and `H3App`, the shim does not.
 */
export function assertNativeUws(mod: Record<string, unknown>, abi = process.versions.modules, nodeVersion = process.version): void {
  if (typeof mod.getParts === 'function' && typeof mod.App === 'function' && 'H3App' in mod) return;
  const supported = Object.entries(NATIVE_NODE_ABIS).map(([k, v]) => `${v} (ABI ${k})`).join(', ');
  throw new UwsUnavailableError(
    `uWebSockets.js has no native build for ${nodeVersion} (ABI ${abi}) on ${process.platform}-${process.arch}; ` +
      `kwx needs the native server. Use one of: ${supported}.`,
  );
}

let cached: Uws | undefined;

/** Loads uWebSockets.js and checks that its native build is the one loaded. */
export function loadUws(): Uws {
  if (cached !== undefined) return cached;
  const require = createRequire(import.meta.url);
  const previous = console.warn;
  let mod: Uws;
  try {
    // The package prints its fallback notice through console.warn; keep it out of kwx's logs.
    console.warn = () => {};
    mod = require('uWebSockets.js') as Uws;
  } finally {
    console.warn = previous;
  }
  assertNativeUws(mod as unknown as Record<string, unknown>);
  cached = mod;
  return mod;
}

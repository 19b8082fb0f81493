// Telemetry units: the set a device may send, and conversion between units of one quantity so
// that an alert rule "power < 10 kW" applies to values sent in W.

interface UnitInfo {
  quantity: string;
  /** multiply by this to get the quantity's base unit */
  factor: number;
}

const UNITS: Record<string, UnitInfo> = {
  W: { quantity: 'power', factor: 1 },
  kW: { quantity: 'power', factor: 1e3 },
  MW: { quantity: 'power', factor: 1e6 },
  Wh: { quantity: 'energy', factor: 1 },
  kWh: { quantity: 'energy', factor: 1e3 },
  MWh: { quantity: 'energy', factor: 1e6 },
  var: { quantity: 'reactive_power', factor: 1 },
  kvar: { quantity: 'reactive_power', factor: 1e3 },
  VA: { quantity: 'apparent_power', factor: 1 },
  kVA: { quantity: 'apparent_power', factor: 1e3 },
  V: { quantity: 'voltage', factor: 1 },
  kV: { quantity: 'voltage', factor: 1e3 },
  mA: { quantity: 'current', factor: 1e-3 },
  A: { quantity: 'current', factor: 1 },
  Hz: { quantity: 'frequency', factor: 1 },
  '%': { quantity: 'ratio', factor: 1 },
  degC: { quantity: 'temperature', factor: 1 },
  s: { quantity: 'time', factor: 1 },
  'm/s': { quantity: 'speed', factor: 1 },
  'W/m2': { quantity: 'irradiance', factor: 1 },
  count: { quantity: 'count', factor: 1 },
};

export const KNOWN_UNITS: readonly string[] = Object.keys(UNITS);

export function isKnownUnit(unit: string): boolean {
  return Object.prototype.hasOwnProperty.call(UNITS, unit);
}

/** `value` in `from` expressed in `to`, or null when the units measure different quantities. */
export function convertUnit(value: number, from: string, to: string): number | null {
  if (from === to) return value;
  const a = UNITS[from];
  const b = UNITS[to];
  if (a === undefined || b === undefined || a.quantity !== b.quantity) return null;
  return (value * a.factor) / b.factor;
}

// ingest — meter readings and device telemetry: decode, validate, store, roll up, alert.
// The front door: mount the routes on the gateway's uWS app with a service created here.
export { createIngestService, invalidateIngestToken, IngestError, DEFAULT_LIMITS } from './service.js';
export type { IngestService, IngestServiceOptions, IngestLimits, IngestStats, SubmitOptions } from './service.js';
export { registerIngestRoutes, formatOf } from './http.js';
export type { IngestRouteDeps } from './http.js';
export { issueMeterToken, issueDeviceToken, verifyToken, parseToken } from './tokens.js';
export type { Principal } from './tokens.js';
export { AlertEngine, AlertError, METER_METRICS } from './alerts.js';
export type { Alert, AlertRule, AlertRuleInput, Operator, Severity, SubjectKind } from './alerts.js';
export { REASON_CODES } from './constants.js';
export type { ReasonCode } from './constants.js';
export * as INGEST_LIMITS from './constants.js';
export type { BatchReport, ItemResult, ItemStatus, BodyFormat } from './types.js';
export { KNOWN_UNITS, convertUnit } from './units.js';

// A market-data edge process: a gateway without an engine, fed by the Redis bus. Several of them
// behind a load balancer serve market data and private streams for one exchange; orders go to
// the process that runs the engine (gateway/main.ts). Environment: DATABASE_URL, REDIS_URL
// (required), PORT, HOST, LOG_LEVEL, KWX_REDIS_PREFIX (default "kwx:").
import { loadConfig } from '../schema/config.js';
import { connect } from '../schema/db.js';
import { createLogger } from '../schema/log.js';
import { attachGateway } from './index.js';
import { createMetricsRegistry } from './metrics.js';
import { startHttpServer } from './server.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.log_level, 'kwx-edge');
  if (config.database_url === null || config.redis_url === null) {
    process.stderr.write('kwx-edge: DATABASE_URL and REDIS_URL are required\n');
    process.exit(2);
  }
  const metrics = createMetricsRegistry();
  const server = await startHttpServer({ host: config.host, port: config.port, metrics, version: 'edge' });
  const sql = connect(config.database_url, { max: 4, application: 'kwx-edge' });
  const gw = await attachGateway({ app: server.app, sql, metrics, log, config, redis_prefix: process.env.KWX_REDIS_PREFIX ?? 'kwx:' });
  server.setHealth('ok');
  log.info('listening', { host: config.host, port: server.port });
  const stop = (): void => {
    server.setHealth('stopping');
    void gw.close().then(async () => {
      server.close();
      await sql.end({ timeout: 2 });
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

await main();

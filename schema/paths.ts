import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The repository root, whether this module runs from `schema/` (vitest) or `dist/schema/` (compiled). */
export const PROJECT_ROOT = here.endsWith(`${sep}dist${sep}schema`) ? join(here, '..', '..') : join(here, '..');

export const MIGRATIONS_DIR = join(PROJECT_ROOT, 'schema', 'migrations');

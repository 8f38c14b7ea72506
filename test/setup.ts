// Mocha root hooks: one GPU device for the whole run, with buffer poisoning on, so any kernel that
// leaves an output element unwritten produces NaN and fails its comparison.
// The conv2d autotune's cache file goes to a fresh directory, so every run measures (and no run
// writes into the user's ~/.cache).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { init, engine } from '../src/index.js';

process.env.ATROUS_CACHE_DIR = mkdtempSync(join(tmpdir(), 'atrous-test-cache-'));

export const mochaHooks = {
  async beforeAll(this: unknown) {
    await init();
    engine().pool.poison = true;
  },
};

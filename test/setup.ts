// Mocha root hooks: one GPU device for the whole run, with buffer poisoning on, so any kernel that
// leaves an output element unwritten produces NaN and fails its comparison.
import { init, engine } from '../src/index.js';

export const mochaHooks = {
  async beforeAll(this: unknown) {
    await init();
    engine().pool.poison = true;
  },
};

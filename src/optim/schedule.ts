// Learning-rate schedules.

import { checkNumber, OpError } from '../ops/check.js';

/** The "poly" policy of DeepLab: baseLr * (1 - step / maxSteps)^power, for 0 <= step <= maxSteps. */
export function polyLR(baseLr: number, step: number, maxSteps: number, power = 0.9): number {
  checkNumber('polyLR', 'baseLr', baseLr, { min: 0 });
  checkNumber('polyLR', 'maxSteps', maxSteps, { min: 0 });
  if (maxSteps === 0) throw new OpError('polyLR', `'maxSteps' must be > 0, got 0`);
  checkNumber('polyLR', 'step', step, { min: 0, max: maxSteps });
  checkNumber('polyLR', 'power', power, { min: 0 });
  return baseLr * (1 - step / maxSteps) ** power;
}

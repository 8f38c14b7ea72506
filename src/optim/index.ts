// Optimizers and learning-rate schedules.
export { SGD, type SGDOptions } from './sgd.js';
export { polyLR } from './schedule.js';

// Optimizers and learning-rate schedules.
export { SGD, type SGDOptions, type ParamGroup } from './sgd.js';
export { polyLR } from './schedule.js';

// Public API of atrous.
export { init, reinit, engine, f32, type Engine, type KernelCall, type Param, type PipelineSpec } from './gpu/engine.js';
export { openDevice, adapterName, type DeviceOptions, type AdapterInfo, type EngineLimits } from './gpu/device.js';
export { Tensor, tensor, empty, parameter, shapeSize, fmtShape, type DType } from './tensor.js';
export { tidy, keep } from './scope.js';
export { backward, noGrad, isGradEnabled, zeroGrad, record } from './autograd.js';
export * from './ops/index.js';
export * from './optim/index.js';
export * from './nn/index.js';
export { saveCheckpoint, loadCheckpoint, readCheckpoint, modelFromCheckpoint, stateDictToSafetensors, configFromJSON, CHECKPOINT_FORMAT, type Checkpoint } from './io/checkpoint.js';

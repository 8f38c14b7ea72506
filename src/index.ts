// Public API of atrous.
export { init, reinit } from './init.js';
export { engine, type Engine, type KernelCall, type PipelineSpec, type ShaderName, type ShaderParams } from './gpu/engine.js';
export { openDevice, adapterName, type DeviceOptions, type AdapterInfo, type EngineLimits } from './gpu/device.js';
export { Tensor, tensor, empty, parameter, shapeSize, fmtShape, type DType } from './tensor.js';
export { tidy, keep } from './scope.js';
export { backward, noGrad, isGradEnabled, zeroGrad, record } from './autograd.js';
export * from './ops/index.js';
export * from './optim/index.js';
export * from './nn/index.js';
export { saveCheckpoint, loadCheckpoint, readCheckpoint, modelFromCheckpoint, stateDictToSafetensors, configFromJSON, CHECKPOINT_FORMAT, type Checkpoint } from './io/checkpoint.js';
// Browser-safe parts of the data pipeline, inference and training (no Node built-ins: the
// browser bundle dist/web/atrous.js is built from this file). The Node-only ones (VOC and
// fashion-MNIST readers, run directories, the CLI) are imported from their modules.
export { ShapesDataset, SHAPE_KINDS, type ShapesOptions, type ShapeKind } from './data/shapes.js';
export { DataLoader, type LoaderOptions } from './data/loader.js';
export { normalize, augment, IMAGENET, IMAGENET_MEAN, IMAGENET_STD, type Normalization, type AugmentOptions, type Triple } from './data/augment.js';
export { vocPalette, colorize, VOC_CLASSES } from './data/palette.js';
export { IGNORE, type Dataset, type Sample, type Batch } from './data/types.js';
export { segment, type SegmentOptions, type Segmentation } from './infer/segment.js';
export { ConfusionMatrix, formatMetrics, type SegMetrics } from './train/metrics.js';
export { evaluate, type EvaluateOptions, type EvaluateResult, type KeptPrediction } from './train/evaluate.js';
export { renderReport, lossCurveSvg, type ReportInput } from './train/report.js';
export { recordTrainStep } from './train/step.js';
export { TrainSession, SESSION_DEFAULTS, type SessionOptions, type SessionHooks, type StepReport, type EvalReport } from './train/session.js';

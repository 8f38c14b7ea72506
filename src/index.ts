// Public API of atrous.
export { init, reinit } from './init.js';
export { engine, type Engine, type KernelCall, type PipelineSpec, type ShaderName, type ShaderParams } from './gpu/engine.js';
export { openDevice, adapterName, type DeviceOptions, type AdapterInfo, type EngineLimits } from './gpu/device.js';
export { Tensor, tensor, empty, parameter, shapeSize, fmtShape, withCategory, MEMORY_CATEGORIES, type DType, type MemoryCategory } from './tensor.js';
export { tidy, keep } from './scope.js';
export { backward, noGrad, isGradEnabled, zeroGrad, record } from './autograd.js';
export * from './ops/index.js';
export * from './optim/index.js';
export * from './nn/index.js';
export {
  saveCheckpoint, loadCheckpoint, readCheckpoint, modelFromCheckpoint, stateDictToSafetensors, resolveInference, describeInference, inferenceMetadata,
  CHECKPOINT_FORMAT, type Checkpoint, type ResolvedInference, type SettingSource,
} from './io/checkpoint.js';
// Browser-safe parts of the data pipeline, inference and training (no Node built-ins: the
// browser bundle dist/web/atrous.js is built from this file). The Node-only ones (VOC directories on
// disk (src/data/voc.ts; the checks themselves are voc-core.ts, exported here), the fashion-MNIST reader, run directories, the CLI) are imported from their modules.
export { ShapesDataset, SHAPE_KINDS, type ShapesOptions, type ShapeKind } from './data/shapes.js';
export { DataLoader, type LoaderOptions } from './data/loader.js';
export { normalize, augment, IMAGENET, IMAGENET_MEAN, IMAGENET_STD, type Normalization, type AugmentOptions, type Triple } from './data/augment.js';
export { vocPalette, colorize, VOC_CLASSES } from './data/palette.js';
export { IGNORE, type Dataset, type Sample, type Batch } from './data/types.js';
export { segment, segmentImage, defaultPadMultiple, type SegmentOptions, type Segmentation } from './infer/segment.js';
export { rgbToChw, chwToRgb, rgbaToRgb, overlayLabels } from './data/pixels.js';
export { ConfusionMatrix, formatMetrics, type SegMetrics } from './train/metrics.js';
export { evaluate, type EvaluateOptions, type EvaluateResult, type KeptPrediction } from './train/evaluate.js';
export { renderReport, lossCurveSvg, type ReportInput } from './train/report.js';
export { recordTrainStep } from './train/step.js';
export {
  trainedInference, checkTrainOptions, checkRecipeOptions, resolveTrainOptions, resumeOptions, splitConfigFile, optionSpec, describePlan, describeFreezing, runStages, stageAt, FREEZE_FLAGS,
  RECIPE_OPTIONS, TRAIN_DEFAULTS, TRAIN_FILE_KEYS, type TrainOptions, type StageOptions, type FreezeOptions, type RecipeOptions, type OptionSpec, type TrainRequest, type TrainConfigFile,
} from './train/options.js';
export {
  planInit, applyInit, initKind, keyPatterns, describeInitReport, INIT_KIND_NAMES,
  type InitKind, type InitReport, type InitPlan, type KeyGroup,
} from './train/init-weights.js';
export { TrainSession, SESSION_DEFAULTS, SESSION_OPTIONS, SESSION_RECIPE_KEYS, type SessionOptions, type SessionHooks, type StepReport, type EvalReport, type SessionData, type SessionInit, type SessionState } from './train/session.js';
export { openVocFiles, MemoryFiles, METADATA_FILE, type DatasetFiles, type VocOptions, type VocEntry } from './data/voc-core.js';
export { openDropped, unzipFiles, SubsetDataset, type DroppedDataset } from './data/dropped.js';
export { labelReport, labelWarnings, formatLabelCounts, describeLabelCounts, labelMapEntries, type LabelCounts } from './data/labels.js';
export { imageInfo, decodeLabelPng, ImageError, type RawImage, type ImageInfo } from './io/image-core.js';

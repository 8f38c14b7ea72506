// Training, evaluation and run directories (Node: they read and write files).
export { ConfusionMatrix, formatMetrics, type SegMetrics } from './metrics.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './evaluate.js';
export { RunDir, writeFileAtomic, RUN_FILE, LATEST_FILE, METRICS_FILE, CHECKPOINT_DIR, type LatestPointer } from './rundir.js';
export { train, formatProgress, fmtDuration, TrainingError, readInitFile, checkInitFile, RUN_FORMAT, type RunInfo, type InitRecord, type InitFile, type TrainHooks, type TrainResult, type ProgressInfo } from './trainer.js';
export {
  checkTrainOptions, resolveTrainOptions, resumeOptions, splitConfigFile, parseOptionFlag, optionSpec, describePlan, describeFreezing, runStages, stageAt, trainedInference, FREEZE_FLAGS,
  RECIPE_OPTIONS, TRAIN_DEFAULTS, TRAIN_FILE_KEYS,
  type TrainOptions, type StageOptions, type FreezeOptions, type RecipeOptions, type OptionSpec, type TrainRequest, type TrainConfigFile,
} from './options.js';
export { traceTrainStep, precompileTrainStep } from './precompile.js';
export { renderReport, lossCurveSvg, type ReportInput } from './report.js';

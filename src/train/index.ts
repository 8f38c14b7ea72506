// Training, evaluation and run directories (Node: they read and write files).
export { ConfusionMatrix, formatMetrics, type SegMetrics } from './metrics.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './evaluate.js';
export { RunDir, writeFileAtomic, RUN_FILE, LATEST_FILE, METRICS_FILE, CHECKPOINT_DIR, type LatestPointer } from './rundir.js';
export {
  train, checkTrainOptions, formatProgress, fmtDuration, TrainingError, TRAIN_DEFAULTS, RUN_FORMAT, runStages, stageAt,
  type TrainOptions, type StageOptions, type RunInfo, type TrainHooks, type TrainResult, type ProgressInfo,
} from './trainer.js';
export { traceTrainStep, precompileTrainStep } from './precompile.js';
export { renderReport, lossCurveSvg, type ReportInput } from './report.js';

// The training loop
export { train } from './train.js';
export {
  defaultTrainOptions,
  resolveTrainOptions,
  type BatchSource,
  type SeekableBatchSource,
  type LossUnit,
  type StepContext,
  type StepOutput,
  type TrainCallbacks,
  type TrainOptions,
  type TrainableModel,
  type TrainRecord,
  type TrainResult,
  type TrainTunables,
} from './options.js';

// Checkpoints
export { saveTrainerCheckpoint, loadTrainerCheckpoint, findCheckpoint, TRAINER_STATE_FILE, OPTIMIZER_FILE, type TrainerState } from './checkpoint.js';

// Progress
export { formatProgressLine, formatProgressBar, type ProgressStream } from './progress.js';

// Building blocks of the fine-tuning trainers
export {
  checkEvalRecords,
  checkFineTuneOptions,
  defaultFineTuneTrainerOptions,
  fineTune,
  fineTunePlan,
  fineTuneSchedule,
  shuffledOrder,
  type FineTuneOptions,
  type FineTunePlan,
  type FineTuneTrainerOptions,
  type OptimizerTunables,
} from './fine-tune.js';

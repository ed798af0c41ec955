import { PosttrainError, fileSource, fileTarget, formatShape, readCheckpoint, tf, writeCheckpoint, writeSafetensors, type Optimizer } from '@posttrain/tensor-core';

/**
 * The contents of `trainer_state.json`, written last into a checkpoint directory: its presence
 * marks the checkpoint complete.
 *
 * @example
 * ```ts
 * const state: TrainerState = JSON.parse(await readFile('ckpt/step-10/trainer_state.json', 'utf8'));
 * ```
 */
export interface TrainerState {
  format: 'posttrain-trainer';
  version: 1;
  /** Optimizer steps done. */
  step: number;
  /** The pass over the data the next batch comes from, and how many batches of it were consumed. */
  epoch: number;
  batchInEpoch: number;
  /** Seconds of training before this checkpoint. */
  elapsed: number;
  seed: number;
  /** Micro-batches per optimizer step of the run that wrote it (absent in checkpoints of older versions). */
  gradientAccumulationSteps?: number;
  /** Examples per micro-batch, when the run said (`batchSize`); absent otherwise and in older checkpoints. */
  batchSize?: number;
  /** Input tokens trained on before this checkpoint (the logged `num_tokens`), when the run counted them. */
  numTokens?: number;
  /** The files of this checkpoint (model weights, then optimizer state). */
  files: string[];
}

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const OPTIMIZER_FILE = 'optimizer.safetensors';

async function fs() {
  return import('node:fs/promises');
}

/**
 * Writes `<root>/step-<N>/` with `model.safetensors` (the parameters by path),
 * `optimizer.safetensors` (the optimizer's state dict) and, last, `trainer_state.json`. Each file
 * is written to a temporary beside it and renamed into place, so a crash leaves either a complete
 * checkpoint or one without `trainer_state.json`, which {@link loadTrainerCheckpoint} refuses.
 * Returns the checkpoint's directory.
 *
 * @example
 * ```ts
 * const dir = await saveTrainerCheckpoint('runs/a', state, parameters, optimizer); // runs/a/step-10
 * ```
 */
export async function saveTrainerCheckpoint(
  root: string,
  state: Omit<TrainerState, 'format' | 'version' | 'files'>,
  parameters: ReadonlyMap<string, tf.Variable>,
  optimizer: Optimizer,
): Promise<string> {
  const dir = `${root.replace(/[/\\]+$/, '')}/step-${state.step}`;
  const target = fileTarget(dir);
  await target.remove(TRAINER_STATE_FILE); // re-saving a step: incomplete until the end
  const { files } = await writeCheckpoint(Object.fromEntries(parameters), target);
  const optimizerState = optimizer.stateDict();
  let bytes: Uint8Array;
  try {
    bytes = writeSafetensors(optimizerState, { format: 'pt' });
  } finally {
    tf.dispose(Object.values(optimizerState));
  }
  await target.write(OPTIMIZER_FILE, bytes);
  const full: TrainerState = { format: 'posttrain-trainer', version: 1, ...state, files: [...files, OPTIMIZER_FILE] };
  await target.write(TRAINER_STATE_FILE, `${JSON.stringify(full, null, 2)}\n`);
  return dir;
}

/**
 * Finds the checkpoint to resume from: `path` itself when it holds `trainer_state.json`, else its
 * `step-<N>` sub-directory with the highest N that holds one. Throws `FILE_NOT_FOUND` otherwise.
 *
 * @example
 * ```ts
 * const dir = await findCheckpoint('runs/a'); // 'runs/a/step-20'
 * ```
 */
export async function findCheckpoint(path: string): Promise<string> {
  const dir = path.replace(/[/\\]+$/, '');
  if (await fileSource(dir).exists(TRAINER_STATE_FILE)) return dir;
  const entries = await (await fs()).readdir(dir, { withFileTypes: true }).catch(() => []);
  const steps = entries
    .filter((e) => e.isDirectory() && /^step-\d+$/.test(e.name))
    .map((e) => Number(e.name.slice(5)))
    .sort((a, b) => b - a);
  for (const step of steps) {
    if (await fileSource(`${dir}/step-${step}`).exists(TRAINER_STATE_FILE)) return `${dir}/step-${step}`;
  }
  throw new PosttrainError('FILE_NOT_FOUND', `train: expected a complete checkpoint (one holding ${TRAINER_STATE_FILE}) at ${dir} or in its step-<N> sub-directories; found none`, {
    help: `a directory without ${TRAINER_STATE_FILE} is a checkpoint whose writing did not finish; resume from an earlier step-<N>`,
  });
}

/**
 * Reads and checks `<dir>/trainer_state.json`. An unreadable file, one that is not JSON, or JSON
 * that is not a trainer state throws `INVALID_ARGUMENT` naming the file, before any weight is read.
 *
 * @example
 * ```ts
 * const { step, epoch } = await readTrainerState('runs/a/step-20');
 * ```
 */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const file = `${dir}/${TRAINER_STATE_FILE}`;
  const damaged = `the checkpoint ${dir} is damaged: resume from an earlier step-<N> directory, or delete ${dir} and resume from its parent`;
  let text: string;
  try {
    text = await fileSource(dir).readText(TRAINER_STATE_FILE);
  } catch (error) {
    throw new PosttrainError('INVALID_ARGUMENT', `train: expected to read ${file}; reading it failed (${(error as Error).message.split('\n')[0]})`, {
      cause: error,
      help: 'check that the file exists and is readable',
    });
  }
  let state: TrainerState;
  try {
    state = JSON.parse(text) as TrainerState;
  } catch (error) {
    throw new PosttrainError('INVALID_ARGUMENT', `train: expected ${file} to be JSON; it does not parse (${(error as Error).message})`, { cause: error, help: damaged });
  }
  const counts = ['step', 'epoch', 'batchInEpoch'] as const;
  if (state === null || typeof state !== 'object' || state.format !== 'posttrain-trainer' || counts.some((k) => !Number.isInteger(state[k]) || state[k] < 0)) {
    throw new PosttrainError(
      'INVALID_ARGUMENT',
      `train: expected ${file} to be a posttrain trainer state (format "posttrain-trainer", integer step, epoch and batchInEpoch); got ${JSON.stringify(state).slice(0, 200)}`,
      { help: damaged },
    );
  }
  return state;
}

/** What a resumed run is about to do, checked against the checkpoint by {@link checkResume}. */
export interface ResumePlan {
  maxSteps: number | undefined;
  gradientAccumulationSteps: number;
  batchSize: number | undefined;
}

/**
 * Refuses to resume from `state` (read from `dir`) when the run would do nothing or not continue
 * the same run: `maxSteps` at or below the checkpoint's step, or another `gradientAccumulationSteps`
 * or `batchSize` than the checkpoint's (the position in the data counts micro-batches, so either
 * would skip the wrong examples). Checkpoints that do not record a value are not checked on it.
 * Throws `INVALID_OPTION` naming both values.
 *
 * @example
 * ```ts
 * checkResume(await readTrainerState('runs/a/step-20'), 'runs/a/step-20', { maxSteps: 20, gradientAccumulationSteps: 1, batchSize: 8 });
 * // throws "train: maxSteps 20 is at or below the step of the checkpoint …"
 * ```
 */
export function checkResume(state: TrainerState, dir: string, plan: ResumePlan): void {
  if (plan.maxSteps !== undefined && plan.maxSteps <= state.step) {
    throw new PosttrainError(
      'INVALID_OPTION',
      `train: expected maxSteps above the step of the checkpoint to resume from (${dir}, step ${state.step}); got maxSteps ${plan.maxSteps}, which would run no step`,
      {
        help: `maxSteps counts every step of the run, those before the checkpoint included: pass maxSteps > ${state.step}, or use the checkpoint as it is`,
      },
    );
  }
  for (const key of ['gradientAccumulationSteps', 'batchSize'] as const) {
    const saved = state[key];
    if (saved !== undefined && plan[key] !== undefined && saved !== plan[key]) {
      throw new PosttrainError('INVALID_OPTION', `train: expected ${key} ${saved}, as in the checkpoint to resume from (${dir}); got ${plan[key]}`, {
        help: `the checkpoint's position in the data counts micro-batches of its ${key}: resume with ${key}: ${saved}, or start a new run without resumeFrom`,
      });
    }
  }
}

/**
 * Loads a checkpoint written by {@link saveTrainerCheckpoint} (or the latest complete one under a
 * checkpoint root) into `parameters` and `optimizer`, and returns its trainer state. With `plan`,
 * {@link checkResume} runs first, so a refused resume leaves the parameters untouched.
 *
 * @example
 * ```ts
 * const state = await loadTrainerCheckpoint('runs/a', parameters, optimizer);
 * state.step; // 20
 * ```
 */
export async function loadTrainerCheckpoint(path: string, parameters: ReadonlyMap<string, tf.Variable>, optimizer: Optimizer, plan?: ResumePlan): Promise<TrainerState> {
  const dir = await findCheckpoint(path);
  const source = fileSource(dir);
  const state = await readTrainerState(dir);
  if (plan) checkResume(state, dir, plan); // before any parameter is overwritten
  const weights = await readCheckpoint(source);
  try {
    const problems: string[] = [];
    for (const [path, param] of parameters) {
      const t = weights[path];
      if (!t) problems.push(`"${path}" is missing`);
      else if (t.shape.join() !== param.shape.join()) problems.push(`"${path}" is ${formatShape(t.shape)}, expected ${formatShape(param.shape)}`);
    }
    if (problems.length) {
      throw new PosttrainError('STATE_DICT_MISMATCH', `train: the checkpoint ${dir} does not match the parameters: ${problems.slice(0, 5).join('; ')}`, {
        help: 'resume with the same model and the same trainable parameters as the run that wrote it',
      });
    }
    tf.tidy(() => {
      for (const [path, param] of parameters) param.assign(weights[path].dtype === param.dtype ? weights[path] : tf.cast(weights[path], param.dtype));
    });
  } finally {
    tf.dispose(Object.values(weights));
  }
  const optimizerState = await readCheckpoint(source, { fileName: OPTIMIZER_FILE });
  try {
    optimizer.loadStateDict(optimizerState);
  } finally {
    tf.dispose(Object.values(optimizerState));
  }
  return state;
}

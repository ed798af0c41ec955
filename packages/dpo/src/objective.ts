// Preference objectives: a loss of the @posttrain/losses package plus what the trainer must know to
// feed it (reference log-probs or not, summed or length-averaged log-probs).
import { PosttrainError, checkNumber, tf } from '@posttrain/tensor-core';
import { dpoSigmoidLoss, ipoLoss, orpoLoss, simpoLoss, type OrpoLossOptions, type PreferenceLogps, type PreferenceLossOutput, type SimpoLossOptions } from '@posttrain/losses';

/**
 * A pairwise preference loss of the DPO family, `PreferenceLogps → PreferenceLossOutput`:
 * `dpoSigmoidLoss`, `ipoLoss`, `dpoHingeLoss`, `robustDpoLoss`, `exoPairLoss`, `bcoPairLoss`,
 * `ncaPairLoss`, `sppoHardLoss`, `apoZeroLoss`, `apoDownLoss` from `@posttrain/losses`, or your own.
 *
 * @example
 * ```ts
 * const myLoss: PreferenceLossFn<{ beta: number }> = (logps, options) => dpoSigmoidLoss(logps, options);
 * ```
 */
export type PreferenceLossFn<O extends object = { beta: number }> = (inputs: PreferenceLogps, options?: Partial<O>) => PreferenceLossOutput;

/**
 * What an objective gets for a batch of B pairs, each `[B]`: the policy's completion log-probs
 * (summed, or per-token means when {@link PreferenceObjective.averageLogps}), the reference's
 * (only when {@link PreferenceObjective.usesReference}), and the completions' token counts.
 *
 * @example
 * ```ts
 * const inputs: ObjectiveInputs = { policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps, chosenTokens, rejectedTokens };
 * ```
 */
export interface ObjectiveInputs {
  policyChosenLogps: tf.Tensor1D;
  policyRejectedLogps: tf.Tensor1D;
  refChosenLogps?: tf.Tensor1D;
  refRejectedLogps?: tf.Tensor1D;
  chosenTokens: tf.Tensor1D;
  rejectedTokens: tf.Tensor1D;
}

/**
 * What an objective returns: the loss's output (per-pair `losses`, implicit rewards) and extra
 * scalar metrics under TRL's names (ORPO's `nll_loss`, `log_odds_ratio`, `log_odds_chosen`).
 *
 * @example
 * ```ts
 * const { losses, chosenRewards, rejectedRewards, metrics } = objective.compute(inputs);
 * ```
 */
export interface ObjectiveOutput extends PreferenceLossOutput {
  metrics: Record<string, tf.Scalar>;
}

/**
 * A preference objective as {@link dpoTrain} runs it. Build one with {@link dpoObjective},
 * {@link simpoObjective} or {@link orpoObjective}; write your own by giving these fields.
 *
 * @example
 * ```ts
 * const objective = dpoObjective(ipoLoss, { beta: 0.5 }); // { name: 'ipoLoss', usesReference: true, averageLogps: true, beta: 0.5, compute }
 * ```
 */
export interface PreferenceObjective {
  /** The loss function's name, for messages and logs. */
  readonly name: string;
  /** Needs the reference's log-probs (the DPO family); false for SimPO and ORPO. */
  readonly usesReference: boolean;
  /** Feed per-token average log-probs (IPO, SimPO, ORPO) instead of sums (DPO). */
  readonly averageLogps: boolean;
  /** β of the loss, as used (logged by the trainer's callers; rewards are already scaled by it). */
  readonly beta: number;
  /** Runs the loss on one batch; every tensor returned is new and the caller disposes it. */
  compute(inputs: ObjectiveInputs): ObjectiveOutput;
}

const isObjective = (x: unknown): x is PreferenceObjective =>
  typeof x === 'object' && x !== null && typeof (x as PreferenceObjective).compute === 'function' && typeof (x as PreferenceObjective).usesReference === 'boolean';

/** Runs `loss` once on a one-pair batch so its options are checked when the objective is made, not at the first step. */
function checkLossOptions(owner: string, run: (x: tf.Tensor1D) => { loss: tf.Tensor; losses: tf.Tensor; chosenRewards: tf.Tensor; rejectedRewards: tf.Tensor }): void {
  tf.tidy(() => {
    const out = run(tf.tensor1d([-1]));
    if (!out || !(out.losses instanceof tf.Tensor) || !(out.chosenRewards instanceof tf.Tensor) || !(out.rejectedRewards instanceof tf.Tensor)) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `${owner}: expected the loss to return { loss, losses, chosenRewards, rejectedRewards } (a PreferenceLossOutput); got ${out === null || typeof out !== 'object' ? String(out) : `keys [${Object.keys(out).join(', ')}]`}`,
        {
          help: 'pass a loss of @posttrain/losses such as dpoSigmoidLoss or ipoLoss, or one with the same signature',
        },
      );
    }
  });
}

/**
 * A DPO-family objective: `loss` (default `dpoSigmoidLoss`) on the policy's and the reference's
 * completion log-probs. `options` are the loss's own (β default 0.1, and e.g. `labelSmoothing`),
 * plus two of the trainer's:
 *
 * - `averageLogps`: feed per-token averages instead of sums, which TRL does for IPO only (default
 *   true for `ipoLoss`, false otherwise);
 * - `rpoAlpha`: add α times the chosen completion's NLL (its mean token NLL) to each pair's loss,
 *   RPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization", arXiv 2404.19733, eq. 1;
 *   TRL's `rpo_alpha`, which the paper and TRL set to 1). Default 0: the loss alone. DPO lowers the
 *   chosen completion's likelihood when chosen and rejected are alike (Razin et al. 2024,
 *   "likelihood displacement", arXiv 2410.08847); the NLL term keeps it up. Logged as `nll_loss`.
 *
 * The options are checked here, by calling the loss once on a one-pair batch.
 *
 * @example
 * ```ts
 * await dpoTrain({ model, tokenizer, train: pairs, loss: dpoObjective(dpoSigmoidLoss, { beta: 0.1, labelSmoothing: 0.1 }), lora: { r: 8 } });
 * await dpoTrain({ model, tokenizer, train: pairs, loss: dpoObjective(ipoLoss, { beta: 0.5 }), lora: { r: 8 } });
 * await dpoTrain({ model, tokenizer, train: pairs, loss: dpoObjective(dpoSigmoidLoss, { rpoAlpha: 1 }), lora: { r: 8 } });
 * ```
 */
export function dpoObjective<O extends { beta: number }>(
  loss: PreferenceLossFn<O> = dpoSigmoidLoss as unknown as PreferenceLossFn<O>,
  options: Partial<O> & { averageLogps?: boolean; rpoAlpha?: number } = {},
): PreferenceObjective {
  const owner = 'dpoObjective';
  if (typeof loss !== 'function') {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected loss to be a preference loss function; got ${loss === null ? 'null' : typeof loss}`, {
      help: 'for example dpoObjective(dpoSigmoidLoss, { beta: 0.1 }) with dpoSigmoidLoss from @posttrain/losses',
    });
  }
  const { averageLogps = loss === (ipoLoss as unknown), rpoAlpha = 0, ...lossOptions } = options ?? {};
  if (typeof averageLogps !== 'boolean') throw new PosttrainError('INVALID_OPTION', `${owner}: expected averageLogps to be true or false; got ${JSON.stringify(averageLogps)}`);
  checkNumber(owner, 'rpoAlpha', rpoAlpha, 'a number ≥ 0 (the weight of the chosen NLL; 0 leaves it out)', (v) => v >= 0);
  const beta = (lossOptions as { beta?: number }).beta ?? 0.1;
  const name = loss.name || 'preferenceLoss';
  checkLossOptions(`${owner}(${name})`, (x) => loss({ policyChosenLogps: x, policyRejectedLogps: x, refChosenLogps: x, refRejectedLogps: x }, lossOptions as Partial<O>));
  return Object.freeze({
    name,
    usesReference: true,
    averageLogps,
    beta,
    compute(inputs: ObjectiveInputs): ObjectiveOutput {
      const { policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps } = inputs;
      if (!refChosenLogps || !refRejectedLogps) throw new PosttrainError('INVALID_ARGUMENT', `${name}: expected reference log-probs; got none`);
      const out = loss({ policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps }, lossOptions as Partial<O>);
      if (rpoAlpha === 0) return { ...out, metrics: {} };
      // [B] the chosen completion's mean token NLL: −log π(y_w|x) / |y_w| (already a mean when averageLogps).
      const nll = tf.tidy(() => tf.neg(averageLogps ? policyChosenLogps : tf.div(policyChosenLogps, tf.maximum(inputs.chosenTokens, 1)))) as tf.Tensor1D;
      const losses = tf.tidy(() => tf.add(out.losses, tf.mul(nll, rpoAlpha))) as tf.Tensor1D;
      const total = tf.mean(losses) as tf.Scalar;
      const metrics = { nll_loss: tf.mean(nll) as tf.Scalar };
      tf.dispose([out.loss, out.losses, nll]);
      return { loss: total, losses, chosenRewards: out.chosenRewards, rejectedRewards: out.rejectedRewards, metrics };
    },
  });
}

/**
 * SimPO (Meng et al. 2024), reference-free: `simpoLoss` on per-token average log-probs; rewards are
 * β·average log-prob, as TRL's CPOTrainer logs them. Defaults β = 2, γ = 0.5 (the paper's; see
 * `defaultSimpoLossOptions`). No reference model is run.
 *
 * @example
 * ```ts
 * await dpoTrain({ model, tokenizer, train: pairs, loss: simpoObjective({ beta: 2, gamma: 0.5 }), lora: { r: 8 }, lr: 1e-3 });
 * ```
 */
export function simpoObjective(options: Partial<SimpoLossOptions> = {}): PreferenceObjective {
  checkLossOptions('simpoObjective', (x) => simpoLoss({ policyChosenLogps: x, policyRejectedLogps: x }, options));
  return Object.freeze({
    name: 'simpoLoss',
    usesReference: false,
    averageLogps: true,
    beta: options?.beta ?? 2,
    compute: ({ policyChosenLogps, policyRejectedLogps }: ObjectiveInputs): ObjectiveOutput => ({ ...simpoLoss({ policyChosenLogps, policyRejectedLogps }, options), metrics: {} }),
  });
}

/**
 * ORPO (Hong et al. 2024), reference-free: `orpoLoss` on per-token average log-probs with the
 * chosen completion's NLL per pair (its mean token NLL, the paper's per-example L_SFT; TRL takes one
 * token-mean over the batch, which differs only in how pairs of different lengths are weighted).
 * β (λ of the paper) defaults to 0.1 as TRL's ORPOConfig. Logs TRL's `nll_loss`,
 * `log_odds_ratio` and `log_odds_chosen` besides the reward metrics.
 *
 * @example
 * ```ts
 * await dpoTrain({ model, tokenizer, train: pairs, loss: orpoObjective({ beta: 0.1 }), lora: { r: 8 }, lr: 5e-3 });
 * ```
 */
export function orpoObjective(options: Partial<OrpoLossOptions> = {}): PreferenceObjective {
  checkLossOptions('orpoObjective', (x) => orpoLoss({ policyChosenLogps: x, policyRejectedLogps: x, chosenNll: tf.neg(x) }, options));
  return Object.freeze({
    name: 'orpoLoss',
    usesReference: false,
    averageLogps: true,
    beta: options?.beta ?? 0.1,
    compute({ policyChosenLogps, policyRejectedLogps }: ObjectiveInputs): ObjectiveOutput {
      const chosenNll = tf.neg(policyChosenLogps) as tf.Tensor1D; // [B]
      const out = orpoLoss({ policyChosenLogps, policyRejectedLogps, chosenNll }, options);
      chosenNll.dispose();
      const metrics = tf.tidy(() => ({
        nll_loss: tf.neg(tf.mean(policyChosenLogps)) as tf.Scalar,
        log_odds_ratio: tf.neg(tf.mean(out.oddsRatioLosses)) as tf.Scalar,
        log_odds_chosen: tf.mean(out.logOdds) as tf.Scalar,
      }));
      tf.dispose([out.logOdds, out.oddsRatioLosses]);
      return { loss: out.loss, losses: out.losses, chosenRewards: out.chosenRewards, rejectedRewards: out.rejectedRewards, metrics };
    },
  });
}

/**
 * The objective of `loss` as {@link dpoTrain} accepts it: an objective as is, a bare loss function
 * wrapped by {@link dpoObjective} with `beta`. Throws INVALID_OPTION otherwise.
 * @internal
 */
export function toObjective(owner: string, loss: unknown, beta: number, betaGiven: boolean): PreferenceObjective {
  if (loss === undefined) return dpoObjective(dpoSigmoidLoss, { beta });
  if (isObjective(loss)) {
    if (betaGiven && loss.beta !== beta) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected beta once; got beta ${beta} and an objective (${loss.name}) with β ${loss.beta}`, {
        help: `an objective carries its own β: drop beta, or build it as dpoObjective(${loss.name}, { beta: ${beta} })`,
      });
    }
    return loss;
  }
  if (typeof loss === 'function') return dpoObjective(loss as PreferenceLossFn, { beta });
  throw new PosttrainError('INVALID_OPTION', `${owner}: expected loss to be a preference loss function or an objective; got ${loss === null ? 'null' : typeof loss}`, {
    help: 'for example loss: ipoLoss, loss: dpoObjective(dpoSigmoidLoss, { labelSmoothing: 0.1 }), loss: simpoObjective() or loss: orpoObjective()',
  });
}

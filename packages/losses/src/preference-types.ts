// The shapes shared by the preference losses (DPO family, reference-free, KTO).
import { PosttrainError, formatShape, type tf } from '@posttrain/tensor-core';

/**
 * Summed (or averaged) completion log-probs of a batch of preference pairs, each `[B]` float32:
 * the policy's and the frozen reference's, for the chosen and the rejected completion.
 *
 * @example
 * ```ts
 * const logps: PreferenceLogps = { policyChosenLogps, policyRejectedLogps, refChosenLogps, refRejectedLogps }; // each [B]
 * ```
 */
export interface PreferenceLogps {
  policyChosenLogps: tf.Tensor;
  policyRejectedLogps: tf.Tensor;
  refChosenLogps: tf.Tensor;
  refRejectedLogps: tf.Tensor;
}

/**
 * What a pairwise preference loss returns. `loss` is the mean of `losses`; rewards are the implicit
 * ones, β·(policy − reference) log-prob, detached (statistics for logging, as TRL logs
 * `rewards/chosen` and `rewards/rejected`). Every tensor is new; the caller disposes them.
 *
 * @example
 * ```ts
 * const { loss, losses, chosenRewards, rejectedRewards } = dpoSigmoidLoss(logps, { beta: 0.1 });
 * ```
 */
export interface PreferenceLossOutput {
  /** Scalar: the mean over the batch. */
  loss: tf.Scalar;
  /** `[B]` per-pair losses. */
  losses: tf.Tensor1D;
  /** `[B]` β·(policyChosenLogps − refChosenLogps), no gradient. */
  chosenRewards: tf.Tensor1D;
  /** `[B]` β·(policyRejectedLogps − refRejectedLogps), no gradient. */
  rejectedRewards: tf.Tensor1D;
}

/**
 * Checks that every named input is a float tensor of the same shape `[B]`; throws SHAPE_MISMATCH
 * naming the inputs and their shapes otherwise.
 *
 * @example
 * ```ts
 * checkBatchVectors('dpoSigmoidLoss', { policyChosenLogps: a, policyRejectedLogps: b });
 * ```
 */
export function checkBatchVectors(owner: string, inputs: Record<string, tf.Tensor | undefined>): number {
  const entries = Object.entries(inputs);
  for (const [name, t] of entries) {
    if (!t || typeof t !== 'object' || !Array.isArray((t as tf.Tensor).shape)) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ${name} to be a [B] tensor; got ${t === undefined ? 'undefined' : typeof t}`);
    }
  }
  const [first, firstTensor] = entries[0];
  const bad = entries.find(([, t]) => t!.rank !== 1 || t!.shape[0] !== firstTensor!.shape[0]);
  if (firstTensor!.rank !== 1 || bad) {
    const shapes = entries.map(([n, t]) => `${n} ${formatShape(t!.shape)}`).join(', ');
    throw new PosttrainError('SHAPE_MISMATCH', `${owner}: expected ${entries.map(([n]) => n).join(', ')} to share one shape [B]; got ${shapes}`, {
      help: `pass one summed log-prob per example, e.g. sequenceLogprobs(...).logps; ${first} sets B`,
    });
  }
  return firstTensor!.shape[0];
}

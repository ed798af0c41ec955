// The reference of a preference objective: none for a reference-free one (SimPO, ORPO), else one of
// @posttrain/policy's three reference modes.
import { PosttrainError, describeValue, type CausalLM } from '@posttrain/tensor-core';
import { createReference, type Reference } from '@posttrain/policy';

/**
 * `createReference` for an objective that uses a reference; undefined for a reference-free one,
 * which refuses any `reference` option.
 * @internal
 */
export function resolveReference(owner: string, policy: CausalLM, option: unknown, usesReference: boolean, objectiveName: string, hasLora: boolean): Reference | undefined {
  if (!usesReference) {
    if (option !== undefined) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected no reference for ${objectiveName}, which is reference-free; got ${describeValue(option)}`, { help: 'drop the reference option' });
    }
    return undefined;
  }
  return createReference(policy, option as Parameters<typeof createReference>[1], { owner, hasLora });
}

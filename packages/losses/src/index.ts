// Token level
export {
  tokenLogprobs,
  sequenceLogprobs,
  entropyFromLogits,
  defaultTokenLogprobsOptions,
  defaultSequenceLogprobsOptions,
  type TokenLogprobsOptions,
  type TokenLogprobsOutput,
  type SequenceLogprobsOptions,
  type SequenceLogprobsOutput,
} from './token-logprobs.js';
export { causalLmLoss, defaultCausalLmLossOptions, type CausalLmLossOptions, type CausalLmLossOutput } from './causal-lm-loss.js';
export { maskedMean, maskedWhiten, defaultMaskedMeanOptions, defaultMaskedWhitenOptions, type MaskedMeanOptions, type MaskedWhitenOptions } from './masked.js';

// Preference: the shared shapes
export { checkBatchVectors, type PreferenceLogps, type PreferenceLossOutput } from './preference-types.js';

// Preference: DPO family (policy and reference log-probs)
export {
  dpoSigmoidLoss,
  dpoHingeLoss,
  ipoLoss,
  robustDpoLoss,
  exoPairLoss,
  defaultDpoSigmoidLossOptions,
  defaultDpoHingeLossOptions,
  defaultIpoLossOptions,
  defaultRobustDpoLossOptions,
  defaultExoPairLossOptions,
  type DpoSigmoidLossOptions,
  type DpoHingeLossOptions,
  type IpoLossOptions,
  type RobustDpoLossOptions,
  type ExoPairLossOptions,
} from './dpo.js';
export {
  bcoPairLoss,
  ncaPairLoss,
  sppoHardLoss,
  apoZeroLoss,
  apoDownLoss,
  defaultBcoPairLossOptions,
  defaultNcaPairLossOptions,
  defaultSppoHardLossOptions,
  defaultApoZeroLossOptions,
  defaultApoDownLossOptions,
  type BcoPairLossOptions,
  type NcaPairLossOptions,
  type SppoHardLossOptions,
  type ApoZeroLossOptions,
  type ApoDownLossOptions,
} from './dpo-variants.js';

// Preference: reference-free and unpaired
export { simpoLoss, defaultSimpoLossOptions, type SimpoInputs, type SimpoLossOptions } from './simpo.js';
export { orpoLoss, defaultOrpoLossOptions, type OrpoInputs, type OrpoLossOptions, type OrpoLossOutput } from './orpo.js';
export { ktoLoss, defaultKtoLossOptions, type KtoInputs, type KtoLossOptions, type KtoLossOutput } from './kto.js';

// Reward modelling
export { bradleyTerryLoss, defaultBradleyTerryLossOptions, type BradleyTerryLossOptions, type BradleyTerryLossOutput } from './reward.js';

// Online RL
export { k1, k2, k3 } from './kl.js';
export { gae, defaultGaeOptions, type GaeOptions, type GaeOutput } from './gae.js';
export {
  ppoPolicyLoss,
  ppoValueLoss,
  defaultPpoPolicyLossOptions,
  defaultPpoValueLossOptions,
  type PpoPolicyInputs,
  type PpoPolicyLossOptions,
  type PpoPolicyOutput,
  type PpoValueInputs,
  type PpoValueLossOptions,
  type PpoValueOutput,
} from './ppo.js';
export {
  grpoAdvantages,
  grpoLoss,
  defaultGrpoAdvantagesOptions,
  defaultGrpoLossOptions,
  type GrpoAdvantagesOptions,
  type GrpoAdvantagesOutput,
  type GrpoLossInputs,
  type GrpoLossOptions,
  type GrpoLossOutput,
  type GrpoNormalization,
} from './grpo.js';
export {
  rlooAdvantages,
  rlooLoss,
  defaultRlooAdvantagesOptions,
  defaultRlooLossOptions,
  type RlooAdvantagesOptions,
  type RlooAdvantagesOutput,
  type RlooLossInputs,
  type RlooLossOptions,
  type RlooLossOutput,
} from './rloo.js';

// Distillation
export {
  forwardKl,
  reverseKl,
  totalVariation,
  generalizedJsd,
  hintonKdLoss,
  defaultDistillOptions,
  defaultGeneralizedJsdOptions,
  defaultHintonKdLossOptions,
  type DistillOptions,
  type DistillOutput,
  type GeneralizedJsdOptions,
  type HintonKdLossOptions,
  type HintonKdOutput,
} from './distill.js';
export { topKForwardKl } from './topk-distill.js';

// Continual learning
export { fisherDiagonal, ewcPenalty, defaultEwcPenaltyOptions, type EwcPenaltyOptions, type EwcPenaltyOutput } from './ewc.js';
export { checkEwcOption, ewcRegularizer, type EwcOption } from './ewc-option.js';

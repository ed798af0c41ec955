// GRPO and its variants (DAPO, Dr. GRPO, GSPO)
export { grpoTrain, resolveGrpoOptions, defaultGrpoOptions, type GrpoTrainOptions, type GrpoTunables, type GrpoTrainResult } from './grpo-train.js';

// RLOO (REINFORCE leave-one-out)
export { rlooTrain, resolveRlooOptions, defaultRlooOptions, type RlooTrainOptions, type RlooTunables, type RlooTrainResult } from './rloo-train.js';

// The options every online trainer shares
export type { OnlineTunables } from './online.js';

// PPO with a reward model and a value model (RLHF)
export { ppoTrain, resolvePpoOptions, defaultPpoOptions, type PpoTrainOptions, type PpoTunables, type PpoTrainResult, type ValueModel } from './ppo-train.js';

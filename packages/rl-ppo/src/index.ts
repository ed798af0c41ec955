// GRPO and its variants (DAPO, Dr. GRPO, GSPO)
export { grpoTrain, resolveGrpoOptions, defaultGrpoOptions, type GrpoTrainOptions, type GrpoTunables, type GrpoTrainResult } from './grpo-train.js';

// RLOO (REINFORCE leave-one-out)
export { rlooTrain, resolveRlooOptions, defaultRlooOptions, type RlooTrainOptions, type RlooTunables, type RlooTrainResult } from './rloo-train.js';

// The options every online trainer shares
export type { OnlineTunables } from './online.js';

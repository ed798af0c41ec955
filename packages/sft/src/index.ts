// Supervised fine-tuning
export { sftTrain, resolveSftOptions, defaultSftOptions, type SftTrainOptions, type SftTunables, type SftRecord, type SftTrainResult } from './sft-train.js';

// Keeping the old task: elastic weight consolidation and learning without forgetting
export { estimateFisher, type EstimateFisherOptions } from './ewc.js';
export type { EwcOption } from '@posttrain/losses';
export type { LwfOption } from './lwf.js';

// Distillation
export { distillTrain } from './distill-train.js';
export {
  resolveDistillOptions,
  defaultDistillOptions,
  type DistillTrainOptions,
  type DistillTunables,
  type DistillTrainResult,
  type DistillRecord,
  type DistillLoss,
} from './distill-options.js';

// The teacher and its top-k cache
export { checkTeacher, teacherFingerprint, teacherLogits, teacherTopK } from './teacher.js';
export { loadOrBuildTeacherCache, scoredPositions, type TeacherCacheOptions, type TopKTargets } from './teacher-cache.js';

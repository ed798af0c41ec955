// The one place that sets up tfjs-core: gradients, chained ops (`x.add(y)`) and the cpu backend.
// Importing this module is a side effect on purpose; package.json lists it in `sideEffects`.
import * as tf from '@tensorflow/tfjs-core';
import './generated/tfjs-registration.js';
import '@tensorflow/tfjs-backend-cpu';
// The chained-op methods' types (`Tensor.prototype.add`, …) are declared by tfjs-core as module
// augmentations in this file; the type-only import brings them in without loading it at run time.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';

export { tf };

// The one place that sets up tfjs-core: gradients, chained ops (`x.add(y)`) and the cpu backend.
// Importing this module is a side effect on purpose; package.json lists it in `sideEffects`.
import * as tf from '@tensorflow/tfjs-core';
import './generated/tfjs-registration.js';
import '@tensorflow/tfjs-backend-cpu';
// The chained-op methods' types (`Tensor.prototype.add`, …) are declared by tfjs-core as module
// augmentations in this file; the type-only import brings them in without loading it at run time.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';

// tfjs-backend-cpu prints a "Hi, looks like you are running TensorFlow.js in Node.js … install our
// node backend" banner on its first tensor in Node. posttrain does not use tfjs-node (it cannot
// install without downloading libtensorflow), so the banner is noise: mark the cpu backend as used
// instead of setting tfjs's PROD flag, which would silence every other tfjs warning too.
const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
if (cpu && 'firstUse' in cpu) cpu.firstUse = false;

export { tf };

// The one place that sets up tfjs-core: gradients, chained ops (`x.add(y)`) and the cpu backend.
// Importing this module is a side effect on purpose; package.json lists it in `sideEffects`.
import * as tf from '@tensorflow/tfjs-core';
import './generated/tfjs-registration.js';
import '@tensorflow/tfjs-backend-cpu';
// The chained-op methods' types (`Tensor.prototype.add`, …) are declared by tfjs-core as module
// augmentations in this file; the type-only import brings them in without loading it at run time.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';

// tfjs-backend-cpu prints a "Hi, looks like you are running TensorFlow.js in Node.js … install our
// node backend" banner on the first tensor in Node unless PROD is set (tfjs-core's
// `enableProdMode()`; in 4.22 PROD only silences tfjs's own console warnings). posttrain does not
// use tfjs-node (it cannot install without downloading libtensorflow), so the banner is noise. The
// flag has to be set: the engine builds a fresh cpu backend instance when it picks one, so marking
// an instance as used does not reach the one that prints.
tf.env().set('PROD', true);

export { tf };

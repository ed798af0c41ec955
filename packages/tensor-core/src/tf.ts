// The one place that sets up tfjs-core: gradients, chained ops (`x.add(y)`) and the cpu backend.
// Importing this module is a side effect on purpose; package.json lists it in `sideEffects`.
import * as tf from '@tensorflow/tfjs-core';
import './generated/tfjs-registration.js';
import '@tensorflow/tfjs-backend-cpu';

export { tf };

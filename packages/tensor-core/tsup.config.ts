import { packageConfig } from '../../tsup.base';

// The generated tfjs registration bundle is a source file, so it is inlined; tfjs itself, its
// backends and the optional Dawn binding are dependencies and stay external.
export default packageConfig({
  dts: {
    // tfjs-core declares the chained-op methods (`x.add(y)`) as module augmentations in a file of
    // their own; the bundled declarations must load it too, or users' `tf.Tensor` lacks them.
    banner: "import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';",
  },
});

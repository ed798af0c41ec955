import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: {
    // tfjs-core declares the chained-op methods (`x.add(y)`) as module augmentations in a file of
    // their own; the bundled declarations must load it too, or users' `tf.Tensor` lacks them.
    banner: "import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';",
  },
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // Keep `node:` specifiers: without the prefix a browser bundler mistakes them for npm packages.
  removeNodeProtocol: false,
  // Backends and the optional Dawn binding stay external; the generated tfjs registration
  // bundle is inlined so consumers need no extension-less imports.
  external: ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-webgpu', 'webgpu'],
});

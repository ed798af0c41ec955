import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // Keep `node:` specifiers: without the prefix a browser bundler mistakes them for npm packages.
  removeNodeProtocol: false,
  // Backends and the optional Dawn binding stay external; the generated tfjs registration
  // bundle is inlined so consumers need no extension-less imports.
  external: ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-webgpu', 'webgpu'],
});

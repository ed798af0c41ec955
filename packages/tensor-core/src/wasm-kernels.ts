// Kernels that make the tfjs wasm backend fit for training.
//
// tfjs-backend-wasm 4.22 lacks `UnsortedSegmentSum` (the gradient of `gather`, so embeddings could
// not train) and runs matmuls with a transposed operand through a slow generic loop, while
// backward passes use transposed matmuls for every weight and input gradient. The kernels here
// work on the backend's wasm heap directly: they read inputs through typed-array views of it and
// write outputs it allocated, so no data crosses into JS arrays.
import { tf } from './tf.js';

/** The parts of tfjs-backend-wasm's `BackendWasm` these kernels use. */
interface WasmBackend extends tf.KernelBackend {
  dataIdMap: { get(dataId: object): { memoryOffset: number; id: number } | undefined };
  dataIdNextNumber: number;
  wasm: {
    cwrap(name: string, returnType: null, argTypes: string[]): (...args: unknown[]) => void;
    tfjs: { registerTensor(id: number, size: number, memoryOffset: number): void; disposeData(id: number): void };
  };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: object): boolean;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: WasmBackend; attrs?: tf.NamedAttrMap };
type KernelImpl = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

let installed = false;

/**
 * Registers posttrain's wasm kernels. Call after `@tensorflow/tfjs-backend-wasm` is imported (it
 * registers its own kernels on import) and before or after the backend is initialised; calling it
 * again does nothing. `fastMatMul: false` keeps tfjs's own matmuls, for the benchmark's baseline.
 */
export function installWasmKernels(options: { fastMatMul?: boolean } = {}): void {
  if (installed) return;
  installed = true;
  replaceKernel('UnsortedSegmentSum', undefined, unsortedSegmentSum);
  // The stock OneHot writes int32 bit patterns whatever the requested dtype, so a float32 one-hot
  // holds denormals instead of 1 and 0.
  replaceKernel('OneHot', undefined, oneHot);
  if (options.fastMatMul === false) return;
  const transpose = original('Transpose');
  const add = original('Add');
  const withPlainOperands = (name: 'BatchMatMul' | '_FusedMatMul'): void => {
    const base = original(name);
    const run = name === 'BatchMatMul' ? (args: KernelArgs) => batchedAsSingleMatMuls(args) ?? base.kernelFunc(args) : base.kernelFunc;
    replaceKernel(name, base.setupFunc, (args) => {
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return run(args);
      const swapped = !transposeA && transposeB ? fewRowsTimesTransposed(args, transpose.kernelFunc, add.kernelFunc) : undefined;
      if (swapped) return swapped;
      // Materialise the transposed operand once (a fast copy) and run the fast plain kernel.
      const made: tf.TensorInfo[] = [];
      const plain = (x: tf.TensorInfo): tf.TensorInfo => {
        const rank = x.shape.length;
        const perm = [...Array(rank).keys()];
        [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
        const out = transpose.kernelFunc({ inputs: { x }, backend: args.backend, attrs: { perm } }) as tf.TensorInfo;
        made.push(out);
        return out;
      };
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const inputs = { ...args.inputs, a: transposeA ? plain(a) : a, b: transposeB ? plain(b) : b };
      const result = run({ ...args, inputs, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
      for (const t of made) args.backend.disposeData(t.dataId);
      return result;
    });
  };
  withPlainOperands('BatchMatMul');
  withPlainOperands('_FusedMatMul');
}

let singleMatMul: ((...args: unknown[]) => void) | undefined;

function wasmMatMul(backend: WasmBackend): (...args: unknown[]) => void {
  singleMatMul ??= backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  return singleMatMul;
}

function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/**
 * `a [M, K] · bᵀ` for `b [N, K]` (a Linear's weight) when M ≤ N, computed as `(b · aᵀ)ᵀ`: XNNPACK
 * packs its right operand before multiplying, so packing the small `aᵀ [K, M]` instead of a
 * transposed copy of the whole weight makes decoding (M = 1) ~15× faster at a 32k vocabulary, and
 * is no slower for training-sized M. Handles batch-1 products with an optional bias and no
 * activation; returns undefined for anything else.
 */
function fewRowsTimesTransposed({ inputs, backend, attrs }: KernelArgs, transpose: KernelImpl, add: KernelImpl): tf.TensorInfo | undefined {
  const { a, b, bias, preluActivationWeights } = inputs as Record<string, tf.TensorInfo | undefined> & { a: tf.TensorInfo; b: tf.TensorInfo };
  const activation = (attrs as { activation?: string }).activation ?? 'linear';
  if (activation !== 'linear' || preluActivationWeights || a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  const size = (shape: number[]) => shape.reduce((p, d) => p * d, 1);
  if (size(a.shape.slice(0, -2)) !== 1 || size(b.shape.slice(0, -2)) !== 1) return undefined;
  const [m, k] = a.shape.slice(-2);
  const [n, kb] = b.shape.slice(-2);
  if (k !== kb || m > n) return undefined;
  const aT = transpose({ inputs: { x: a }, backend, attrs: { perm: a.shape.length === 2 ? [1, 0] : [0, 2, 1] } }) as tf.TensorInfo;
  const yT = backend.makeOutput([1, n, m], 'float32');
  const id = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.id;
  wasmMatMul(backend)(id(b), shapeBytes([1, n, k]), 3, id(aT), shapeBytes([1, k, m]), 3, 0, 0, id(yT));
  backend.disposeData(aT.dataId);
  let y = transpose({ inputs: { x: yT }, backend, attrs: { perm: [0, 2, 1] } }) as tf.TensorInfo;
  backend.disposeData(yT.dataId);
  if (bias) {
    const withBias = add({ inputs: { a: y, b: bias }, backend }) as tf.TensorInfo;
    backend.disposeData(y.dataId);
    y = withBias;
  }
  y.shape = [...(a.shape.length > b.shape.length ? a.shape : b.shape).slice(0, -2), m, n];
  return y;
}

/**
 * tfjs-backend-wasm sends a matmul to XNNPACK only when its batch is 1; any other batch (attention's
 * `[B, H, T, d]` products) goes through a scalar loop about 10× slower. This runs each batch entry
 * as its own XNNPACK matmul over views of the same heap memory: the inputs and the output are
 * registered under temporary ids that alias slices of the real buffers, so nothing is copied.
 * Returns undefined (use the stock kernel) for shapes it does not handle: transposed operands
 * (the caller has already made them plain), batch 1, or broadcasting other than a batch of 1.
 */
function batchedAsSingleMatMuls({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo | undefined {
  const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  if (transposeA || transposeB || a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [m, k] = a.shape.slice(-2);
  const n = b.shape[rb - 1];
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = outerA.reduce((p, d) => p * d, 1);
  const batchB = outerB.reduce((p, d) => p * d, 1);
  const batch = Math.max(batchA, batchB);
  if (batch === 1 || (batchA !== batchB && batchA !== 1 && batchB !== 1) || b.shape[rb - 2] !== k) return undefined;
  if (ra < 2 || rb < 2) return undefined;
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  if (outer.reduce((p, d) => p * d, 1) !== batch) return undefined;
  const matMul = wasmMatMul(backend);
  const out = backend.makeOutput([...outer, m, n], 'float32');
  const aBase = backend.dataIdMap.get(a.dataId)!.memoryOffset;
  const bBase = backend.dataIdMap.get(b.dataId)!.memoryOffset;
  const outBase = backend.dataIdMap.get(out.dataId)!.memoryOffset;
  if (batchB === 1) {
    // A shared right operand: one matmul over all rows of the stacked left operand.
    const ids = [a, b, out].map((t) => backend.dataIdMap.get(t.dataId)!.id);
    const stacked = shapeBytes([1, batch * m, k]);
    matMul(ids[0], stacked, 3, ids[1], shapeBytes([1, k, n]), 3, 0, 0, ids[2]);
    return out;
  }
  const aShape = shapeBytes([1, m, k]);
  const bShape = shapeBytes([1, k, n]);
  const alias = (offset: number, size: number): number => {
    const id = backend.dataIdNextNumber++;
    backend.wasm.tfjs.registerTensor(id, size, offset);
    return id;
  };
  for (let i = 0; i < batch; i++) {
    const aId = alias(aBase + (batchA === 1 ? 0 : i * m * k * 4), m * k);
    const bId = alias(bBase + (batchB === 1 ? 0 : i * k * n * 4), k * n);
    const outId = alias(outBase + i * m * n * 4, m * n);
    matMul(aId, aShape, 3, bId, bShape, 3, 0, 0, outId);
    // Disposing the alias ids also drops the XNNPACK operator cached on them; the memory belongs to
    // the real tensors and is not freed here.
    backend.wasm.tfjs.disposeData(aId);
    backend.wasm.tfjs.disposeData(bId);
    backend.wasm.tfjs.disposeData(outId);
  }
  return out;
}

function original(name: string): { kernelFunc: KernelImpl; setupFunc?: (backend: tf.KernelBackend) => void } {
  const kernel = tf.getKernel(name, 'wasm');
  if (!kernel) throw new Error(`tfjs-backend-wasm has no ${name} kernel to wrap; is @tensorflow/tfjs-backend-wasm 4.22 imported?`);
  return kernel as unknown as { kernelFunc: KernelImpl; setupFunc?: (backend: tf.KernelBackend) => void };
}

function replaceKernel(name: string, setupFunc: ((backend: tf.KernelBackend) => void) | undefined, kernelFunc: KernelImpl): void {
  if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', setupFunc: setupFunc as tf.KernelConfig['setupFunc'], kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

/** `out[segmentIds[i], ...] += x[i, ...]`; rows with an id outside [0, numSegments) are dropped, as in TensorFlow. */
function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (attrs as { numSegments: number }).numSegments;
  const idRank = segmentIds.shape.length;
  const rows = segmentIds.shape.reduce((p, d) => p * d, 1);
  const inner = x.shape.slice(idRank).reduce((p, d) => p * d, 1);
  const out = backend.makeOutput([numSegments, ...x.shape.slice(idRank)], x.dtype);
  const outValues = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  outValues.fill(0);
  const xValues = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ids = backend.typedArrayFromHeap(segmentIds) as Int32Array;
  for (let r = 0; r < rows; r++) {
    const s = ids[r];
    if (s < 0 || s >= numSegments) continue;
    const src = r * inner;
    const dst = s * inner;
    for (let k = 0; k < inner; k++) outValues[dst + k] += xValues[src + k];
  }
  return out;
}

/** `out[..., j] = j === indices[...] ? onValue : offValue`, in the requested dtype. */
function oneHot({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { indices } = inputs as { indices: tf.TensorInfo };
  const { dtype, depth, onValue, offValue } = attrs as { dtype: tf.DataType; depth: number; onValue: number; offValue: number };
  const out = backend.makeOutput([...indices.shape, depth], dtype);
  const values = backend.typedArrayFromHeap(out);
  values.fill(offValue);
  const ids = backend.typedArrayFromHeap(indices) as Int32Array;
  for (let i = 0; i < ids.length; i++) {
    const j = ids[i];
    if (j >= 0 && j < depth) values[i * depth + j] = onValue;
  }
  return out;
}

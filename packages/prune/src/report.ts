// Sparsity reports: per-layer and total sparsity, parameter counts and the bytes a dense checkpoint takes.
import { Conv1D, Linear, type Module, PosttrainError, resolveOptions } from '@posttrain/tensor-core';

/** One linear layer of a {@link SparsityReport}. */
export interface LayerSparsity {
  /** Module path, e.g. `model.layers.0.mlp.up_proj`. */
  path: string;
  /** The weight's stored shape (`[out, in]`; a Conv1D's `[in, out]`). */
  shape: number[];
  /** Weights exactly zero. */
  zeros: number;
  /** Weights in the layer. */
  total: number;
  /** `zeros / total`. */
  sparsity: number;
}

/** What {@link sparsityReport} returns. */
export interface SparsityReport {
  /** Each reported linear layer, in model order. */
  layers: LayerSparsity[];
  /** Zeros over the reported layers' weights: `Σ zeros / Σ total`. */
  layerSparsity: number;
  /** Every parameter of the model (tied ones once). */
  parameters: { total: number; nonZero: number; sparsity: number };
  /**
   * Bytes of the state dict saved as one float32 safetensors file (header included), as `saveModel`
   * writes it. Dense storage does not shrink for unstructured or N:M sparsity — zeros take 4 bytes
   * like any weight; structured pruning, which removes rows and columns, does.
   */
  savedBytes: number;
}

/** Options of {@link sparsityReport}. */
export interface SparsityReportOptions {
  /** Which linear layers get a row (default: every Linear and Conv1D but `lm_head`). */
  layers: (path: string) => boolean;
}

/**
 * The defaults of {@link SparsityReportOptions}: every linear layer but the output head.
 *
 * @example
 * ```ts
 * sparsityReport(model, { ...defaultSparsityReportOptions, layers: (path) => path.includes('mlp') });
 * ```
 */
export const defaultSparsityReportOptions: Readonly<SparsityReportOptions> = Object.freeze({ layers: (path: string) => path.split('.').pop() !== 'lm_head' });

/**
 * Per-layer and total sparsity of a model, its parameter counts and the bytes of its dense
 * float32 checkpoint.
 *
 * @example
 * ```ts
 * const report = sparsityReport(model);
 * console.log(`${(100 * report.layerSparsity).toFixed(1)}% of linear weights are zero; ${report.parameters.nonZero} of ${report.parameters.total} parameters non-zero; ${report.savedBytes} bytes saved`);
 * ```
 */
export function sparsityReport(model: Module, options: Partial<SparsityReportOptions> = {}): SparsityReport {
  const o = resolveOptions('sparsityReport', options, defaultSparsityReportOptions);
  if (typeof o.layers !== 'function') {
    throw new PosttrainError('INVALID_OPTION', `sparsityReport: expected layers to be a function (path) => boolean; got ${typeof o.layers}`);
  }
  const layers: LayerSparsity[] = [];
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv1D) || !o.layers(path)) continue;
    const zeros = countZeros(m.weight.dataSync());
    layers.push({ path, shape: [...m.weight.shape], zeros, total: m.weight.size, sparsity: zeros / m.weight.size });
  }
  const layerZeros = layers.reduce((n, l) => n + l.zeros, 0);
  const layerTotal = layers.reduce((n, l) => n + l.total, 0);
  let total = 0;
  let zeros = 0;
  const seen = new Set<number>();
  for (const p of model.namedParameters().values()) {
    if (seen.has(p.id)) continue;
    seen.add(p.id);
    total += p.size;
    zeros += countZeros(p.dataSync());
  }
  return {
    layers,
    layerSparsity: layerTotal === 0 ? 0 : layerZeros / layerTotal,
    parameters: { total, nonZero: total - zeros, sparsity: total === 0 ? 0 : zeros / total },
    savedBytes: safetensorsBytes(model),
  };
}

function countZeros(values: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) n++;
  return n;
}

/** The size of `writeCheckpoint`'s single file for the state dict: 8 + header (padded to 8) + data. */
function safetensorsBytes(model: Module): number {
  const state = model.stateDict();
  const names = Object.keys(state).sort(compareCodePoints);
  const parts = [`"__metadata__":${JSON.stringify({ format: 'pt' })}`];
  let offset = 0;
  for (const name of names) {
    const t = state[name];
    const bytes = t.size * (t.dtype === 'bool' ? 1 : 4);
    parts.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: t.dtype === 'float32' ? 'F32' : t.dtype === 'int32' ? 'I32' : 'BOOL', shape: t.shape, data_offsets: [offset, offset + bytes] })}`);
    offset += bytes;
  }
  const header = new TextEncoder().encode(`{${parts.join(',')}}`).byteLength;
  return 8 + Math.ceil(header / 8) * 8 + offset;
}

function compareCodePoints(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i].codePointAt(0)! - y[i].codePointAt(0)!;
  return x.length - y.length;
}

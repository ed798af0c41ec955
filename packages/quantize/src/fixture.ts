// The PyTorch reference of scripts/reference/quantize_ref.py, typed. Test support only: not exported from index.ts.
import { readFileSync } from 'node:fs';

export interface AffineFixture {
  bits: 4 | 8;
  group_size: number;
  symmetric: boolean;
  q: number[];
  packed: number[];
  scales: number[];
  zeros: number[];
  dequantized: number[];
  output: number[];
}

export interface QuantizeFixture {
  torch: string;
  out_features: number;
  in_features: number;
  weight: number[];
  bias: number[];
  x: number[];
  float_output: number[];
  int8: AffineFixture;
  int4_g32_sym: AffineFixture;
  int4_g64_asym: AffineFixture;
  nf4: {
    blocksize: number;
    codes: number[];
    packed_bytes: number[];
    absmax: number[];
    offset: number;
    absmax_codes: number[];
    absmax2: number[];
    absmax_dequantized: number[];
    dynamic_map: number[];
    dequantized: number[];
    output: number[];
  };
}

export const ref = JSON.parse(readFileSync(new URL('./fixtures/quantize_ref.json', import.meta.url), 'utf8')) as QuantizeFixture;

/** Largest |a - e| / max(|e|, floor) over the arrays. */
export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-3): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] as number;
    worst = Math.max(worst, Math.abs((actual[i] as number) - e) / Math.max(Math.abs(e), floor));
  }
  return worst;
}

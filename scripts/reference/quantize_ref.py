#!/usr/bin/env python3
"""Reference values for packages/quantize (int8, int4 group-wise, NF4 with double quantisation).

    /usr/bin/python3 scripts/reference/quantize_ref.py

Neither compressed-tensors nor bitsandbytes installs here, so each quantisation is written in torch
from their published source (read at the commits named; prose and formulas, not copied code):

- compressed-tensors 52792be, quantization/utils/helpers.py `calculate_range` and
  `calculate_qparams` (min' = min(min, 0), max' = max(max, 0); symmetric scale = max|.| / (range/2),
  zero 0; asymmetric scale = (max' - min') / range, zero = round(clamp(qmin - min'/scale)); scales
  clamped below at float32 eps), quantization/lifecycle/forward.py `_quantize` / `_dequantize`
  (q = round(clamp(w / scale + zero)); w' = (q - zero) * scale), and
  compressors/quantized_compressors/pack_quantized.py `pack_to_int32` (offset 2^(b-1), element k of
  each run of 32/b in bits [k*b, (k+1)*b), packed along the input dimension).
- bitsandbytes 95f9af3, functional.py `get_4bit_type('nf4')`, `create_dynamic_map`,
  `quantize_4bit` (compress_statistics: offset = absmax.mean(), quantize_blockwise(absmax - offset,
  blocksize=256)), and backends/default/ops.py (the reference kernels: reciprocal scaling of full
  blocks, division for a trailing partial block, clamp to [-1, 1], bucketize on midpoints, first
  element in the high nibble; dequantise code[q] * absmax).

Writes packages/quantize/src/fixtures/quantize_ref.json: a fixed weight W [16, 128] (float32, seeded,
with a few outliers and one all-zero group), bias [16], input x [3, 128], and per scheme the integer
codes, packed words (or bytes), scales / zero-points / absmax, the dequantised weight and the forward
output x @ W'^T + b.
"""
import json
import os

import torch

OUT, IN = 16, 128


def f32(t):
    return [float("%.9g" % v) for v in t.reshape(-1).tolist()]


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


# ---- compressed-tensors -------------------------------------------------------------------------
def calculate_qparams(mins, maxs, bits, symmetric):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    mins = torch.minimum(mins, torch.zeros_like(mins))
    maxs = torch.maximum(maxs, torch.zeros_like(maxs))
    bit_range = float(qmax - qmin)
    eps = torch.finfo(torch.float32).eps
    if symmetric:
        scales = torch.maximum(mins.abs(), maxs.abs()) / (bit_range / 2)
        scales = torch.clamp(scales, min=eps)
        zeros = torch.zeros_like(scales)
    else:
        scales = torch.clamp((maxs - mins) / bit_range, min=eps)
        zeros = torch.round(torch.clamp(qmin - mins / scales, qmin, qmax))
    return scales, zeros


def quantize(w, scales, zeros, bits):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return torch.round(torch.clamp(w / scales + zeros, qmin, qmax))


def pack_to_int32(q, bits):
    per = 32 // bits
    u = (q.to(torch.int64) + (1 << (bits - 1)))
    rows, cols = u.shape
    padded = -(-cols // per) * per
    u = torch.nn.functional.pad(u, (0, padded - cols))
    shifts = torch.arange(per, dtype=torch.int64) * bits
    words = (u.view(rows, padded // per, per) << shifts).sum(dim=2)
    words = torch.where(words >= 2 ** 31, words - 2 ** 32, words)  # as int32 (two's complement)
    return words


def affine_scheme(w, x, b, bits, group, symmetric):
    g = w.reshape(OUT, IN // group, group)
    scales, zeros = calculate_qparams(g.amin(dim=2), g.amax(dim=2), bits, symmetric)
    q = quantize(g, scales.unsqueeze(2), zeros.unsqueeze(2), bits)
    dq = ((q - zeros.unsqueeze(2)) * scales.unsqueeze(2)).reshape(OUT, IN)
    q = q.reshape(OUT, IN)
    return {
        "bits": bits,
        "group_size": group,
        "symmetric": symmetric,
        "q": ints(q),
        "packed": ints(pack_to_int32(q, bits)),
        "scales": f32(scales),
        "zeros": ints(zeros),
        "dequantized": f32(dq),
        "output": f32(x @ dq.t() + b),
    }


# ---- bitsandbytes -------------------------------------------------------------------------------
NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        bounds = torch.linspace(0.1, 1, items, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    assert additional_items == 0
    data.append(0)
    data.append(1.0)
    data += [0] * (256 - len(data))
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def blockwise(a, code, blocksize):
    flat = a.reshape(-1).float()
    n = flat.numel()
    rem = n % blocksize
    full = n - rem
    com = flat[:full].reshape(full // blocksize, blocksize)
    absmax = com.abs().max(dim=-1)[0]
    scaled = torch.clamp(com * (1.0 / absmax.clamp(min=1e-38).view(-1, 1)), -1, 1).reshape(-1)
    if rem:
        am = flat[full:].abs().max().clamp(min=1e-38)
        absmax = torch.cat([absmax, am.unsqueeze(0)])  # the clamped value, as ops.py keeps it
        scaled = torch.cat([scaled, torch.clamp(flat[full:] / am, -1, 1)])
    bounds = (code[:-1] + code[1:]) / 2
    return torch.bucketize(scaled, bounds), absmax


def nf4_scheme(w, x, b):
    dyn = create_dynamic_map()
    codes, absmax = blockwise(w, NF4, 64)
    offset = absmax.mean()
    acodes, absmax2 = blockwise(absmax - offset, dyn, 256)
    packed = (codes[::2] << 4) | codes[1::2]
    # dequantise: absmax from its double quantisation, then code * absmax per block of 64
    nested = dyn[acodes]
    rec = torch.cat([(nested[i:i + 256] * absmax2[i // 256]) for i in range(0, nested.numel(), 256)]) + offset
    dq = (NF4[codes].view(-1, 64) * rec.view(-1, 1)).reshape(OUT, IN)
    return {
        "blocksize": 64,
        "codes": ints(codes),
        "packed_bytes": ints(packed),
        "absmax": f32(absmax),
        "offset": float("%.9g" % offset.item()),
        "absmax_codes": ints(acodes),
        "absmax2": f32(absmax2),
        "absmax_dequantized": f32(rec),
        "dynamic_map": f32(dyn),
        "dequantized": f32(dq),
        "output": f32(x @ dq.t() + b),
    }


def main():
    gen = torch.Generator().manual_seed(14)
    w = torch.randn(OUT, IN, generator=gen) * 0.05
    w[3, 17] = 0.9  # outliers
    w[7, 100] = -1.3
    w[10, 64:96] = 0.0  # an all-zero group of 32 (the eps scale)
    w[12, :64] = w[12, :64].abs()  # a group with no negative value (min' = 0)
    x = torch.randn(3, IN, generator=gen)
    b = torch.randn(OUT, generator=gen) * 0.1
    out = {
        "torch": torch.__version__,
        "out_features": OUT,
        "in_features": IN,
        "weight": f32(w),
        "bias": f32(b),
        "x": f32(x),
        "float_output": f32(x @ w.t() + b),
        "int8": affine_scheme(w, x, b, 8, IN, True),
        "int4_g32_sym": affine_scheme(w, x, b, 4, 32, True),
        "int4_g64_asym": affine_scheme(w, x, b, 4, 64, False),
        "nf4": nf4_scheme(w, x, b),
    }
    path = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "quantize", "src", "fixtures", "quantize_ref.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(out, fh)
        fh.write("\n")
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()

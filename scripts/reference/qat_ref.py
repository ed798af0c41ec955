#!/usr/bin/env python3
"""Reference values for packages/quantize's quantisation-aware training (src/qat.ts).

    /usr/bin/python3 scripts/reference/qat_ref.py

torchao does not install here, so its weight fake quantisation is written in torch from its published
source (torchao/quantization/qat: `FakeQuantizedLinear`, `IntxFakeQuantizer`, `_GenericFakeQuantize`;
prose and formulas, not copied code): in every forward the qparams are computed from the current
weight (no gradient), the weight is quantised and dequantised, and the backward is the
straight-through estimator, w_fq = w + (fake_quant(w) - w).detach(), so dL/dw = dL/dw_fq. (torchao's
_GenericFakeQuantize also zeroes the gradient where round(w / scale + zero) left [qmin, qmax] before
the clamp; posttrain passes it, and so does this script.) The grids are those of quantize_ref.py,
which the converted QuantizedLinear stores: compressed-tensors' int8 per channel and int4 per group
(symmetric or with zero-points), bitsandbytes' NF4 in blocks of 64 with double quantisation of the
absmax.

Writes packages/quantize/src/fixtures/qat_ref.json: a fixed weight W [4, 128] (seeded, one outlier),
bias [4], input x [2, 128], and per scheme the fake-quantised weight, the forward y = x @ w_fq^T + b,
and, for the loss 0.5 * sum(y^2), the gradients of W, b and x through autograd.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from quantize_ref import NF4, blockwise, calculate_qparams, create_dynamic_map, quantize  # noqa: E402

OUT, IN = 4, 128


def f32(t):
    return [float("%.9g" % v) for v in t.reshape(-1).tolist()]


def fake_affine(w, bits, group, symmetric):
    g = w.reshape(OUT, IN // group, group)
    scales, zeros = calculate_qparams(g.amin(dim=2), g.amax(dim=2), bits, symmetric)
    q = quantize(g, scales.unsqueeze(2), zeros.unsqueeze(2), bits)
    return ((q - zeros.unsqueeze(2)) * scales.unsqueeze(2)).reshape(OUT, IN)


def fake_nf4(w):
    dyn = create_dynamic_map()
    codes, absmax = blockwise(w, NF4, 64)
    offset = absmax.mean()
    acodes, absmax2 = blockwise(absmax - offset, dyn, 256)
    nested = dyn[acodes]
    rec = torch.cat([(nested[i:i + 256] * absmax2[i // 256]) for i in range(0, nested.numel(), 256)]) + offset
    return (NF4[codes].view(-1, 64) * rec.view(-1, 1)).reshape(OUT, IN)


SCHEMES = {
    "int8": lambda w: fake_affine(w, 8, IN, True),
    "int4_g32_sym": lambda w: fake_affine(w, 4, 32, True),
    "int4_g64_asym": lambda w: fake_affine(w, 4, 64, False),
    "nf4": fake_nf4,
}


def case(w0, b0, x0, fq):
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    x = x0.clone().requires_grad_(True)
    with torch.no_grad():
        target = fq(w)  # qparams from the current weight, no gradient
    w_fq = w + (target - w).detach()  # the straight-through estimator
    y = x @ w_fq.t() + b
    loss = 0.5 * (y * y).sum()
    loss.backward()
    return {
        "fake_weight": f32(target),
        "output": f32(y.detach()),
        "loss": float("%.9g" % loss.item()),
        "grad_weight": f32(w.grad),
        "grad_bias": f32(b.grad),
        "grad_x": f32(x.grad),
    }


def main():
    gen = torch.Generator().manual_seed(41)
    w = torch.randn(OUT, IN, generator=gen) * 0.05
    w[1, 70] = 0.8  # an outlier: its group's scale is large
    w[2, :32] = w[2, :32].abs()  # a group with no negative value (min' = 0)
    b = torch.randn(OUT, generator=gen) * 0.1
    x = torch.randn(2, IN, generator=gen)
    out = {"torch": torch.__version__, "out_features": OUT, "in_features": IN, "weight": f32(w), "bias": f32(b), "x": f32(x)}
    for name, fq in SCHEMES.items():
        out[name] = case(w, b, x, fq)
    path = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "quantize", "src", "fixtures", "qat_ref.json")
    with open(path, "w") as fh:
        json.dump(out, fh)
        fh.write("\n")
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()

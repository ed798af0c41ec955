#!/usr/bin/env python3
"""Reference GPTQ for packages/quantize/src/gptq.ts.

    /usr/bin/python3 scripts/reference/gptq_ref.py

A torch transcription (written here, not copied) of GPTQ as llm-compressor runs it:
vllm-project/llm-compressor src/llmcompressor/modifiers/quantization/gptq/gptq_quantize.py
(`accumulate_hessian`, `quantize_weight`, `_apply_activation_ordering`), which follows
IST-DASLab/gptq gptq.py `fasterquant` (Frantar et al. 2022, arXiv 2210.17323, Algorithm 1):

  * H = (2/n) Σ x xᵀ over the n calibration tokens;
  * group scales/zero-points from the ORIGINAL weight before the loop (llm-compressor's observer;
    with act-order "group" the weight is permuted first so groups are runs of permuted columns),
    or ("dynamic", IST-DASLab's default static_groups=False) recomputed from W[:, c:c+g] when
    column c starts a group -- W being the lazily updated outer matrix, as in the original;
  * dead columns (H_jj = 0): H_jj = 1, W[:, j] = 0 (after the qparams, as llm-compressor does);
  * dampening 0.01 · mean(diag H) on the diagonal; Hinv = upper Cholesky of H⁻¹
    (cholesky → cholesky_inverse → cholesky(upper=True));
  * blocks of 128 columns with lazy batch updates; loss Σ (w − q)² / d² / 2.

The integer grid is compressed-tensors' (calculate_qparams): qmin = −2^(b−1), qmax = 2^(b−1)−1,
min' = min(min, 0), max' = max(max, 0); symmetric scale = max(|min'|, |max'|) / ((qmax − qmin)/2),
zero 0; asymmetric scale = (max' − min') / (qmax − qmin), zero = clamp(round(qmin − min'/scale));
scales are float32 (the weight's dtype); each column goes through fake_quantize in float32, as
on a float32 model: q = round(clamp(w / scale + zero, qmin, qmax)) (round half to even),
dq = (q − zero) · scale; the error propagation runs in the algorithm's precision.

Act-order sorts diag(H) descending with a STABLE sort (torch.argsort is not stable; ties only
occur between equal diagonals, e.g. dead columns) so the permutation is well defined.

The layer: W [32, 256] float32, X [512, 256] = int8 codes × per-column powers of two (some
outlier columns, column 5 dead), so H is exact in float32 and float64 alike. The algorithm runs in
float64 (the fixture's `expected`, which gptq.ts, also float64, must match integer for integer) and
in float32 (llm-compressor's GPTQ_PRECISION; `float32` holds its codes to count mismatches).

Writes packages/quantize/src/fixtures/gptq_ref.json.
"""
import base64
import json
import os

import torch

torch.manual_seed(0)
OUT, IN, N = 32, 256, 512


def b64(t, dtype):
    return base64.b64encode(t.contiguous().to(dtype).numpy().tobytes()).decode()


# ---- the fixed layer -------------------------------------------------------------------------
mix = torch.eye(IN) + 0.35 * torch.randn(IN, IN) / IN**0.5
z = torch.randn(N, IN) @ mix
codes = torch.clamp(torch.round(z * 20), -127, 127).to(torch.int8)
codes[:, 5] = 0  # a dead input feature
exps = torch.randint(-4, 0, (IN,))
exps[torch.randperm(IN)[:8]] = 2  # outlier features
col_scale = torch.pow(2.0, exps.double()) / 32
X64 = codes.double() * col_scale  # exact
W32 = (torch.randn(OUT, IN) * 0.05).float()
W32[3, 17] = 0.4  # an outlier weight
H64 = (2.0 / N) * (X64.t() @ X64)  # exact dyadic sums (accumulate_hessian with one batch of N rows)


def qparams(wmin, wmax, bits, symmetric):
    """compressed-tensors calculate_qparams on float32 min/max; returns float32 scale, int zero."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    wmin = torch.minimum(wmin, torch.zeros_like(wmin))
    wmax = torch.maximum(wmax, torch.zeros_like(wmax))
    if symmetric:
        scale = torch.maximum(wmin.abs(), wmax.abs()) / (float(qmax - qmin) / 2)
        zero = torch.zeros_like(scale)
    else:
        scale = (wmax - wmin) / float(qmax - qmin)
    scale = torch.where(scale == 0, torch.full_like(scale, torch.finfo(torch.float32).eps), scale)
    if not symmetric:
        zero = torch.clamp(torch.round(qmin - wmin / scale), qmin, qmax)
    return scale.float(), zero


def fake_quantize(w, scale, zero, bits):
    """compressed-tensors' fake_quantize of one column on float32 tensors (the weight's dtype):
    q = round(clamp(w / scale + zero, qmin, qmax)), dq = (q - zero) * scale, all in float32."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    w, scale, zero = w.float(), scale.float(), zero.float()
    q = torch.round(torch.clamp(w / scale + zero, qmin, qmax))
    return q, (q - zero) * scale


def observe(W, bits, group, symmetric):
    """Scales/zeros [OUT, groups] of W's runs of `group` columns (group None: one per row)."""
    g = W.shape[1] if group is None else group
    Wg = W.float().reshape(W.shape[0], -1, g)
    return qparams(Wg.amin(-1), Wg.amax(-1), bits, symmetric)


def gptq(W, H, bits, group, symmetric, actorder, dynamic, dtype, blocksize=128, percdamp=0.01):
    W = W.to(dtype).clone()
    H = H.to(dtype).clone()
    cols = W.shape[1]
    g = cols if group is None else group
    g_idx = torch.arange(cols) // g
    perm = torch.arange(cols)
    if actorder:
        perm = torch.sort(torch.diag(H), descending=True, stable=True).indices
        W, H = W[:, perm], H[perm][:, perm]
    scale, zero = observe(W, bits, group, symmetric)  # from the weight before any update
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    H[range(cols), range(cols)] += damp
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros(W.shape, dtype=torch.int64)
    losses = torch.zeros(W.shape[0], dtype=dtype)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        L1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if dynamic and c % g == 0:
                s, z = observe(W[:, c:c + g], bits, None, symmetric)  # outer W: the original's choice
                scale[:, g_idx[c]], zero[:, g_idx[c]] = s[:, 0], z[:, 0]
            w, d = W1[:, i], Hinv1[i, i]
            q, dq = fake_quantize(w, scale[:, g_idx[c]], zero[:, g_idx[c]], bits)
            dq = dq.to(dtype)
            Q[:, c] = q.long()
            L1[:, i] = (w - dq) ** 2 / d**2
            err = (w - dq) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = W1  # (only read again by a dynamic group start, as in the original)
        losses += L1.sum(1) / 2
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    inv = torch.argsort(perm)
    return {
        "q": Q[:, inv],
        "scales": scale,
        "zeros": zero.long(),
        "gIdx": g_idx[inv],
        "perm": perm,
        "loss": float(losses.sum()),
    }


def dequant(r, bits):
    gi = r["gIdx"]
    return ((r["q"].float() - r["zeros"][:, gi].float()) * r["scales"][:, gi]).double()


def rtn(W, bits, group, symmetric):
    scale, zero = observe(W, bits, group, symmetric)
    g = W.shape[1] if group is None else group
    gi = torch.arange(W.shape[1]) // g
    return fake_quantize(W, scale[:, gi], zero[:, gi], bits)[1].double()


def out_err(What):
    return float(torch.linalg.norm((W32.double() - What) @ X64.t()))


cases = {
    "int4_g128_sym": dict(bits=4, group=128, symmetric=True, actorder=False, dynamic=False),
    "int4_g64_asym_actorder": dict(bits=4, group=64, symmetric=False, actorder=True, dynamic=False),
    "int8_channel": dict(bits=8, group=None, symmetric=True, actorder=False, dynamic=False),
    "int4_g64_sym_dynamic": dict(bits=4, group=64, symmetric=True, actorder=False, dynamic=True),
}
fixture = {
    "source": "scripts/reference/gptq_ref.py",
    "shape": [OUT, IN],
    "tokens": N,
    "weight": b64(W32, torch.float32),
    "inputCodes": b64(codes, torch.int8),
    "inputColumnScales": col_scale.tolist(),
    "cases": {},
}
for name, c in cases.items():
    r64 = gptq(W32, H64, c["bits"], c["group"], c["symmetric"], c["actorder"], c["dynamic"], torch.float64)
    r32 = gptq(W32, H64, c["bits"], c["group"], c["symmetric"], c["actorder"], c["dynamic"], torch.float32)
    mism = int((r64["q"] != r32["q"]).sum())
    e_gptq, e_rtn = out_err(dequant(r64, c["bits"])), out_err(rtn(W32, c["bits"], c["group"], c["symmetric"]))
    print(f"{name}: loss {r64['loss']:.6g}  |WX-ŴX| gptq {e_gptq:.5g} rtn {e_rtn:.5g}  float32-vs-float64 code mismatches {mism}/{r64['q'].numel()}")
    fixture["cases"][name] = {
        "options": {k: v for k, v in c.items()},
        "expected": {
            "q": b64(r64["q"], torch.int8),
            "scales": r64["scales"].flatten().tolist(),
            "zeros": r64["zeros"].flatten().tolist(),
            "gIdx": r64["gIdx"].tolist(),
            "perm": r64["perm"].tolist(),
            "loss": r64["loss"],
        },
        "float32": {"q": b64(r32["q"], torch.int8), "mismatches": mism},
        "outputError": {"gptq": e_gptq, "rtn": e_rtn},
    }
path = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "quantize", "src", "fixtures", "gptq_ref.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(fixture, f)
    f.write("\n")
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")

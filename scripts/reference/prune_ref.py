#!/usr/bin/env python3
"""Reference pruning criteria for packages/prune/src/{magnitude,wanda,sparsegpt}.ts.

    /usr/bin/python3 scripts/reference/prune_ref.py

Torch transcriptions (written here, not copied) of:

  * magnitude: the lowest |W| across the layer (Wanda repo `prune_magnitude`), or, with an N:M
    pattern, the M − N lowest |W| of each group of M consecutive inputs of a row;
  * Wanda (Sun et al. 2023, arXiv 2306.11695; locuslab/wanda `prune_wanda`): score
    |W_ij| · ‖X_j‖₂, the lowest `sparsity` fraction of each OUTPUT ROW pruned (the paper's
    per-output comparison group), or the M − N lowest of each group of M inputs;
  * SparseGPT (Frantar & Alistarh 2023, arXiv 2301.00774, Algorithm 1; IST-DASLab/sparsegpt
    sparsegpt.py `fasterprune`): dead columns (H_jj = 0 → H_jj = 1, W[:, j] = 0), dampening
    percdamp · mean(diag H), Hinv = upper Cholesky factor of H⁻¹, blocks of `blocksize` columns;
    unstructured: at each block start the mask of the block is chosen from w² / d² (d = diag of the
    block's Hinv), N:M: at each group start from the group's current columns; every column is
    then zeroed where masked, err = (w − q) / d, W1[:, i:] −= err · Hinv1[i, i:], and after the
    block W[:, i2:] −= Err1 · Hinv[i1:i2, i2:] (lazy batch update).

One deliberate difference from the reference code, here and in the TypeScript: the reference
picks `thresh = sort(score)[int(numel · sparsity)]` and prunes `score <= thresh`, which prunes one
more weight than asked (int(numel · sparsity) + 1, more with ties). Here exactly
k = int(numel · sparsity) weights are pruned: the first k of a STABLE ascending sort (ties broken
by position, row-major), so 50% means 50%. N:M groups likewise prune the first M − N of a stable
sort (the reference's topk(largest=False) leaves the order of ties unspecified).

The layer: W [16, 64] float32 (one outlier weight), X [256, 64] = int8 codes × per-column powers
of two (outlier input features, column 5 dead), so H = (2/n) XᵀX and the column norms are exact
in float64. SparseGPT runs in float64 (the fixture's weights, stored as float32) and in float32
(the reference's precision on GPU: its masks are compared to count mismatches).

Writes packages/prune/src/fixtures/prune_ref.json.
"""
import base64
import json
import os

import torch

torch.manual_seed(0)
OUT, IN, N = 16, 64, 256


def b64(t, dtype):
    return base64.b64encode(t.contiguous().to(dtype).numpy().tobytes()).decode()


# ---- the fixed layer -------------------------------------------------------------------------
mix = torch.eye(IN) + 0.5 * torch.randn(IN, IN) / IN**0.5
z = torch.randn(N, IN) @ mix
codes = torch.clamp(torch.round(z * 20), -127, 127).to(torch.int8)
codes[:, 5] = 0  # a dead input feature
exps = torch.randint(-3, 0, (IN,))
exps[torch.randperm(IN)[:4]] = 2  # outlier features
col_scale = torch.pow(2.0, exps.double()) / 32
X64 = codes.double() * col_scale  # exact
W32 = (torch.randn(OUT, IN) * 0.05).float()
W32[3, 17] = 0.4  # an outlier weight
H64 = (2.0 / N) * (X64.t() @ X64)  # exact dyadic sums
norms = torch.sqrt((X64**2).sum(0))  # ‖X_j‖₂


def prune_lowest(score, k):
    """Boolean mask (True = pruned) of the first k entries of a stable ascending sort of a 1-D score."""
    pruned = torch.zeros(score.numel(), dtype=torch.bool)
    if k > 0:
        pruned[torch.sort(score, stable=True)[1][:k]] = True
    return pruned


def nm_pruned(score, n, m):
    """[rows, cols] True where pruned: the m − n lowest of each group of m consecutive columns of a row."""
    rows, cols = score.shape
    pruned = torch.zeros(rows, cols, dtype=torch.bool)
    for r in range(rows):
        for g in range(0, cols, m):
            pruned[r, g:g + m] = prune_lowest(score[r, g:g + m], m - n)
    return pruned


def magnitude(W, sparsity, nm):
    score = W.double().abs()
    if nm:
        return ~nm_pruned(score, *nm)
    return ~prune_lowest(score.flatten(), int(score.numel() * sparsity)).reshape(score.shape)


def wanda(W, norms, sparsity, nm):
    score = W.double().abs() * norms.reshape(1, -1)
    if nm:
        return ~nm_pruned(score, *nm)
    k = int(score.shape[1] * sparsity)
    return ~torch.stack([prune_lowest(score[r], k) for r in range(score.shape[0])])


def sparsegpt(W, H, sparsity, nm, dtype, blocksize=128, percdamp=0.01):
    W = W.to(dtype).clone()
    H = H.to(dtype).clone()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    H[range(cols), range(cols)] += damp
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    pruned = torch.zeros(rows, cols, dtype=torch.bool)
    loss = torch.zeros(rows, dtype=dtype)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        L1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        if nm is None:
            tmp = W1**2 / d1.reshape(1, -1) ** 2
            mask1 = prune_lowest(tmp.double().flatten(), int(tmp.numel() * sparsity)).reshape(tmp.shape)
        else:
            mask1 = torch.zeros(rows, count, dtype=torch.bool)
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                tmp = W1[:, i:i + m] ** 2 / d1[i:i + m].reshape(1, -1) ** 2
                mask1[:, i:i + m] = nm_pruned(tmp.double(), n, m)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            L1[:, i] = (w - q) ** 2 / d**2
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        loss += L1.sum(1) / 2
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return ~pruned, W, float(loss.sum())


def out_err(What):
    return float(torch.linalg.norm((W32.double() - What.double()) @ X64.t()))


def check_nm(mask, nm):
    n, m = nm
    return bool((mask.reshape(OUT, IN // m, m).sum(-1) == n).all())


cases = []
for sparsity, nm in [(0.5, None), (0.3, None), (0.5, (2, 4)), (0.75, (1, 4)), (0.5, (4, 8))]:
    for method in ["magnitude", "wanda"]:
        cases.append(dict(method=method, sparsity=sparsity, nm=nm, blocksize=128))
    cases.append(dict(method="sparsegpt", sparsity=sparsity, nm=nm, blocksize=128))
cases.append(dict(method="sparsegpt", sparsity=0.5, nm=None, blocksize=16))
cases.append(dict(method="sparsegpt", sparsity=0.5, nm=(2, 4), blocksize=16))

fixture = {
    "source": "scripts/reference/prune_ref.py",
    "torch": torch.__version__,
    "shape": [OUT, IN],
    "tokens": N,
    "weight": b64(W32, torch.float32),
    "inputCodes": b64(codes, torch.int8),
    "inputColumnScales": col_scale.tolist(),
    "cases": [],
}
for c in cases:
    nm = c["nm"]
    name = f"{c['method']} {'%d:%d' % nm if nm else '%g%%' % (c['sparsity'] * 100)} b{c['blocksize']}"
    entry = {"method": c["method"], "sparsity": c["sparsity"], "pattern": {"n": nm[0], "m": nm[1]} if nm else "unstructured", "blockSize": c["blocksize"]}
    if c["method"] == "magnitude":
        mask = magnitude(W32, c["sparsity"], nm)
        What = W32 * mask
    elif c["method"] == "wanda":
        mask = wanda(W32, norms, c["sparsity"], nm)
        What = W32 * mask
    else:
        mask, W64, loss = sparsegpt(W32, H64, c["sparsity"], nm, torch.float64, c["blocksize"])
        mask32, _, _ = sparsegpt(W32, H64, c["sparsity"], nm, torch.float32, c["blocksize"])
        What = W64.float()
        entry["weight"] = b64(What, torch.float32)
        entry["loss"] = loss
        entry["float32MaskMismatches"] = int((mask32 != mask).sum())
    if nm:
        assert check_nm(mask, nm), name
    kept = int(mask.sum())
    entry["mask"] = b64(mask, torch.uint8)
    entry["kept"] = kept
    entry["outputError"] = out_err(What)
    fixture["cases"].append(entry)
    extra = f" float32 mask mismatches {entry['float32MaskMismatches']}" if "loss" in entry else ""
    print(f"{name:24s} kept {kept}/{OUT * IN}  ‖(W−Ŵ)Xᵀ‖ {entry['outputError']:.5g}{extra}")

path = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "prune", "src", "fixtures", "prune_ref.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(fixture, f)
    f.write("\n")
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")

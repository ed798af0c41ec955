#!/usr/bin/env python3
"""Reference values for packages/tensor-core/src/activations.ts.

    /usr/bin/python3 scripts/reference/activations_ref.py

Writes packages/tensor-core/fixtures/activations_ref.json: inputs x (float32, including large
magnitudes where tanh and sigmoid saturate), then for F.gelu(x, approximate="tanh") and F.silu(x)
the output and the gradient of (y * upstream).sum() with respect to x, computed in float64 from the
float32 inputs.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
x32 = torch.cat([torch.randn(200) * 3, torch.tensor([-30.0, -10.0, -1e-4, 0.0, 1e-4, 10.0, 30.0])]).float()
up32 = torch.randn(x32.shape).float()
out = {"x": x32.tolist(), "upstream": up32.tolist()}
for name, fn in {"geluTanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu}.items():
    x = x32.double().requires_grad_(True)
    y = fn(x)
    (y * up32.double()).sum().backward()
    out[name] = {"y": y.detach().tolist(), "grad": x.grad.tolist()}
path = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "tensor-core", "fixtures", "activations_ref.json")
with open(path, "w") as f:
    json.dump(out, f)
    f.write("\n")
print("wrote", os.path.normpath(path))

"""Reference values for @posttrain/lora: the LoRA forward and its gradients, in plain torch.

PEFT is not installed here, so this follows peft/tuners/lora/layer.py (Linear.forward):
    result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling
with scaling = lora_alpha / r, or lora_alpha / sqrt(r) when use_rslora. Dropout is 0.
Run: /usr/bin/python3 scripts/reference/lora_ref.py  (writes packages/lora/fixtures/lora_ref.json)
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)  # reference in float64; tests compare float32 within 1e-5

IN, OUT, R, ALPHA, BATCH = 6, 5, 2, 4.0, 3


def fixed(shape, phase, amplitude=0.5):
    n = 1
    for d in shape:
        n *= d
    values = [amplitude * math.sin(0.7 * i + phase) for i in range(n)]
    return torch.tensor(values).reshape(shape)


def case(scaling):
    weight = fixed((OUT, IN), 0.1)
    bias = fixed((OUT,), 0.2, 0.1)
    lora_a = fixed((R, IN), 0.3).requires_grad_(True)
    lora_b = fixed((OUT, R), 0.4).requires_grad_(True)
    x = fixed((BATCH, IN), 0.5, 1.0).requires_grad_(True)
    upstream = fixed((BATCH, OUT), 0.6, 1.0)
    base = torch.nn.functional.linear(x, weight, bias)
    y = base + torch.nn.functional.linear(torch.nn.functional.linear(x, lora_a), lora_b) * scaling
    (y * upstream).sum().backward()
    return {
        "weight": weight.tolist(), "bias": bias.tolist(), "lora_A": lora_a.detach().tolist(),
        "lora_B": lora_b.detach().tolist(), "x": x.detach().tolist(), "upstream": upstream.tolist(),
        "scaling": scaling, "output": y.detach().tolist(), "grad_x": x.grad.tolist(),
        "grad_A": lora_a.grad.tolist(), "grad_B": lora_b.grad.tolist(),
    }


fixture = {
    "description": "LoRA Linear forward y = x W^T + b + scaling * (x A^T) B^T and d/d{x, A, B} of sum(y * upstream)",
    "torch": torch.__version__,
    "in_features": IN, "out_features": OUT, "r": R, "lora_alpha": ALPHA,
    "lora": case(ALPHA / R),
    "rslora": case(ALPHA / math.sqrt(R)),
}
path = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "lora", "fixtures", "lora_ref.json")
with open(path, "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print("wrote", os.path.normpath(path))

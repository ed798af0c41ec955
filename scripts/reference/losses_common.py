"""Shared helpers of the @posttrain/losses reference scripts (scripts/reference/losses_*.py).

Every fixture is JSON: {"torch": version, "cases": {name: case}}, where a case is
    {"fn": "<exported function>", "options": {...},            # options passed as given
     "inputs":  {name: tensor},                                # float32 inputs exactly as drawn
     "outputs": {name: tensor},                                # float64 references
     "grads":   {input name: tensor}}                          # d outputs.loss / d input, float64
and a tensor is {"shape": [...], "dtype": "float32" | "int32" | "bool", "data": [flat row-major]}.
Inputs are drawn in float32 and every reference is computed in float64 from exactly those values,
so only our float32 arithmetic contributes error. Scalars are tensors of shape [].
"""
import json
import os

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
FIXTURES = os.path.join(ROOT, 'packages', 'losses', 'fixtures')


def f32(t):
    """A float32 tensor as the shortest decimals that round back to exactly its values."""
    flat = t.detach().to(torch.float32).reshape(-1).numpy()
    data = [float(str(v)) for v in flat]
    assert np.array_equal(np.array(data, dtype=np.float32).view(np.uint32), flat.view(np.uint32)), 'float32 round trip'
    return {'shape': list(t.shape), 'dtype': 'float32', 'data': [v if v != 0 else 0 for v in data]}


def f64(t):
    """A float64 result printed with repr() (exact on reading back); stored as a float32 tensor."""
    t = torch.as_tensor(t)
    data = [float(v) for v in t.detach().double().reshape(-1).tolist()]
    return {'shape': list(t.shape), 'dtype': 'float32', 'data': [v if v != 0 else 0 for v in data]}


def i32(t):
    t = torch.as_tensor(t)
    return {'shape': list(t.shape), 'dtype': 'int32', 'data': [int(v) for v in t.reshape(-1).tolist()]}


def boolean(t):
    t = torch.as_tensor(t)
    return {'shape': list(t.shape), 'dtype': 'bool', 'data': [1 if v else 0 for v in t.reshape(-1).tolist()]}


def draw(shape, generator, std=1.0, mean=0.0):
    """float32 draws, returned as a float64 leaf that requires grad (its values are float32-exact)."""
    x = (torch.randn(shape, generator=generator, dtype=torch.float32) * std + mean).to(torch.float32)
    return x.double().requires_grad_(True)


def case(fn, inputs, outputs, options=None, grad_of='loss'):
    """A fixture case. `inputs`: name → tensor (float64 leaves made by `draw` are stored as float32
    and get a gradient entry when they require grad; int/bool tensors are stored as they are).
    `outputs`: name → tensor; the gradient is of outputs[grad_of] (a scalar)."""
    encoded, grads = {}, {}
    leaves = {k: v for k, v in inputs.items() if torch.is_tensor(v) and v.requires_grad}
    if leaves:
        got = torch.autograd.grad(outputs[grad_of], list(leaves.values()), allow_unused=True, retain_graph=True)
        for (name, leaf), g in zip(leaves.items(), got):
            grads[name] = f64(torch.zeros_like(leaf) if g is None else g)
    for name, v in inputs.items():
        if v.dtype == torch.bool:
            encoded[name] = boolean(v)
        elif v.dtype in (torch.int32, torch.int64):
            encoded[name] = i32(v)
        else:
            encoded[name] = f32(v)
    return {'fn': fn, 'options': options or {}, 'inputs': encoded, 'outputs': {k: f64(v) for k, v in outputs.items()}, 'grads': grads}


def write(name, cases, max_bytes=400_000):
    """Writes packages/losses/fixtures/<name>.json, deterministic, one case per line."""
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, f'{name}.json')
    body = ',\n'.join(f'  {json.dumps(k)}: {json.dumps(v, separators=(",", ":"))}' for k, v in cases.items())
    text = '{"torch": %s, "cases": {\n%s\n}}\n' % (json.dumps(torch.__version__), body)
    assert len(text) < max_bytes, f'{path}: {len(text)} bytes, over {max_bytes}'
    with open(path, 'w') as f:
        f.write(text)
    print(f'wrote {os.path.relpath(path, ROOT)} ({len(text)} bytes, {len(cases)} cases)')

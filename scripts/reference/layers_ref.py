#!/usr/bin/python3
"""PyTorch reference values for tensor-core's layers and norms.

Run from the repository root with Debian's interpreter, which has torch
(`apt-get install -y python3-torch`; the `python3` first on PATH may lack it):

    /usr/bin/python3 scripts/reference/layers_ref.py

Writes packages/tensor-core/fixtures/layers_ref.json (about 22 KB, byte-identical on every run), read by
packages/tensor-core/src/layers.test.ts and norm.test.ts, so CI needs no Python.

For every case the script fixes the seed, draws the inputs and weights in float32, and then
computes in float64 from exactly those float32 values, so the reference is the exact answer
for the stored inputs and only our float32 arithmetic contributes error. It records:
  - `inputs`: the input tensor (`x`, or int `ids` for Embedding),
  - `params`: the layer's state dict under PyTorch's own keys (`weight`, `bias`),
  - `upstream`: a fixed random tensor shaped like the output,
  - `output`: the forward output y,
  - `grads`: the gradient of the scalar loss `(y * upstream).sum()` with respect to the
    input (`x`; none for integer ids) and to every parameter.
Every tensor is `{"shape": [...], "dtype": "float32" | "int32", "data": [flat row-major values]}`,
where `dtype` is what the tests build the tensor as; float data are the float64 values, printed
so they round-trip exactly.

Cases:
  linear_bias       nn.Linear(4, 5) on a [2, 3, 4] input
  linear_no_bias    nn.Linear(4, 5, bias=False) on a [2, 3, 4] input
  embedding         nn.Embedding(7, 4) on ids [2, 5] with repeated ids (the gradient scatter-adds)
  layer_norm        nn.LayerNorm(6, eps=1e-5) with random weight and bias on a [2, 3, 6] input
                    whose rows have non-zero mean
  rms_norm          Llama's RMSNorm `x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight`
                    with eps 1e-6 and a random weight on a [2, 3, 6] input
  dropout_eval      nn.Dropout(0.3) in eval mode (the identity) on a [2, 3, 4] input
"""
import json
import os
import re

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'packages', 'tensor-core', 'fixtures', 'layers_ref.json')


def enc(t):
    t = t.detach()
    if t.dtype in (torch.int32, torch.int64):
        return {'shape': list(t.shape), 'dtype': 'int32', 'data': [int(v) for v in t.reshape(-1).tolist()]}
    # float64 values printed with repr() round-trip exactly; float32 inputs stay exact.
    return {'shape': list(t.shape), 'dtype': 'float32', 'data': [float(v) for v in t.double().reshape(-1).tolist()]}


def f32(*shape, scale=1.0, offset=0.0):
    """Random float32 values, returned as float64 holding exactly those values."""
    return (torch.randn(*shape, dtype=torch.float32) * scale + offset).to(torch.float32).double()


def run_case(name, module, x, meta, loss_input_grad=True):
    module = module.double()
    if loss_input_grad:
        x = x.clone().requires_grad_(True)
    y = module(x)
    upstream = f32(*y.shape)
    loss = (y * upstream).sum()
    loss.backward()
    grads = {}
    if loss_input_grad:
        grads['x'] = enc(x.grad)
    for key, p in module.named_parameters():
        grads[key] = enc(p.grad)
    return {
        'name': name,
        **meta,
        'inputs': {('x' if loss_input_grad else 'ids'): enc(x)},
        'params': {key: enc(p) for key, p in module.named_parameters()},
        'upstream': enc(upstream),
        'output': enc(y),
        'grads': grads,
    }


class LlamaRMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def set_params(module, **values):
    with torch.no_grad():
        for key, value in values.items():
            getattr(module, key).copy_(value)
    return module


def main():
    cases = []

    torch.manual_seed(1)
    lin = torch.nn.Linear(4, 5)
    set_params(lin, weight=f32(5, 4, scale=0.5), bias=f32(5, scale=0.5))
    cases.append(run_case('linear_bias', lin, f32(2, 3, 4), {'inFeatures': 4, 'outFeatures': 5, 'bias': True}))

    torch.manual_seed(2)
    lin = torch.nn.Linear(4, 5, bias=False)
    set_params(lin, weight=f32(5, 4, scale=0.5))
    cases.append(run_case('linear_no_bias', lin, f32(2, 3, 4), {'inFeatures': 4, 'outFeatures': 5, 'bias': False}))

    torch.manual_seed(3)
    emb = torch.nn.Embedding(7, 4)
    set_params(emb, weight=f32(7, 4))
    ids = torch.tensor([[1, 3, 3, 0, 6], [3, 1, 5, 5, 3]], dtype=torch.int64)
    cases.append(run_case('embedding', emb, ids, {'numEmbeddings': 7, 'dim': 4}, loss_input_grad=False))

    torch.manual_seed(4)
    ln = torch.nn.LayerNorm(6, eps=1e-5)
    set_params(ln, weight=f32(6, scale=0.5, offset=1.0), bias=f32(6, scale=0.5))
    cases.append(run_case('layer_norm', ln, f32(2, 3, 6, scale=2.0, offset=0.7), {'dim': 6, 'eps': 1e-5}))

    torch.manual_seed(5)
    rms = LlamaRMSNorm(6, eps=1e-6)
    set_params(rms, weight=f32(6, scale=0.5, offset=1.0))
    cases.append(run_case('rms_norm', rms, f32(2, 3, 6, scale=2.0, offset=0.3), {'dim': 6, 'eps': 1e-6}))

    torch.manual_seed(6)
    drop = torch.nn.Dropout(0.3).eval()
    cases.append(run_case('dropout_eval', drop, f32(2, 3, 4), {'p': 0.3}))

    doc = {
        'generator': 'scripts/reference/layers_ref.py',
        'torch': torch.__version__,
        'loss': '(y * upstream).sum()',
        'precision': 'inputs drawn in float32, reference computed in float64',
        'cases': {c.pop('name'): c for c in cases},
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    text = json.dumps(doc, indent=1)
    # Keep each flat list of numbers on one line so the fixture reads and diffs well.
    text = re.sub(r'\[\s*([-0-9.e+,\s]*?)\s*\]', lambda m: '[' + ', '.join(v.strip() for v in m.group(1).split(',') if v.strip()) + ']', text)
    with open(OUT, 'w') as f:
        f.write(text + '\n')
    print(f'wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(doc["cases"])} cases)')


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""PyTorch reference values for @posttrain/sft's causalLmLoss (packages/sft/src/loss.ts).

Run from the repository root with Debian's interpreter, which has torch
(`apt-get install -y python3-torch`; the `python3` first on PATH may lack it):

    /usr/bin/python3 scripts/reference/sft_ref.py

Writes packages/sft/fixtures/sft_ref.json (about 250 KB, byte-identical on every run), read by
packages/sft/src/loss.test.ts, so CI needs no Python.

The loss is the causal-LM one of Hugging Face's `ForCausalLMLoss` before normalisation: logits at
position t predict the label at t + 1, so `logits[:, :-1]` meets `labels[:, 1:]`, and labels of
−100 are skipped. For every case the script fixes the seed, draws the logits in float32, and then
computes in float64 from exactly those float32 values, so the reference is the exact answer for
the stored inputs and only our float32 arithmetic contributes error. It records:
  - `inputs`: `logits` [B, T, V] (float32) and `labels` [B, T] (int32, −100 = ignored),
  - `lossSum`: F.cross_entropy(shifted logits, shifted labels, ignore_index=-100, reduction='sum'),
  - `tokens`: how many shifted labels are not −100,
  - `correctSum`: how many of those the argmax of the logits predicts (every argmax is unique,
    which the script checks, so no backend's tie-breaking matters),
  - `entropySum`: Σ −Σ_v p_v log p_v of softmax(logits) at those positions, in nats,
  - `grads.logits`: d lossSum / d logits, the full [B, T, V] tensor (zero at the last position and
    wherever the shifted label is −100).
Every tensor is `{"shape": [...], "dtype": "float32" | "int32", "data": [flat row-major values]}`.
Float32 inputs are written as the shortest decimals that read back (rounded to float32) as
exactly the drawn values, which the script checks; float64 references are printed with repr(), so
they round-trip exactly. Zeros are written as `0`.

Cases:
  basic           B=3, T=7, V=11, logits ~ N(0, 2²); a prompt-like masked prefix per row, and row 2
                  has a −100 in the middle of its completion
  all_masked_row  B=3, T=6, V=13; row 1 is −100 throughout (it adds nothing, gradient zero)
  extreme         B=2, T=6, V=50, logits up to ±80: labels at the +80 argmax (loss ≈ 0) and at
                  a −80 entry (loss ≈ 160), large but still finite under a naive exp
  beyond_exp_range  the same with ±100: exp(100) overflows float32 (max ≈ exp(88.7)), so this case
                  fails a log-softmax that does not subtract the max
  long_vocab      B=1, T=2, V=4000: one position over a 4000-way softmax. B=2, T=5 would take
                  about 1.2 MB of JSON (40,000 exact float32 logits and a full float64 gradient);
                  B·T = 2 keeps V = 4000 and the full gradient under 300 KB (MAX_BYTES, checked).
In basic and all_masked_row about half the counted labels are the argmax of the logits predicting
them, so correctSum is not just 0.
"""
import json
import os
import re

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'packages', 'sft', 'fixtures', 'sft_ref.json')
IGNORE = -100
LONG_VOCAB = (1, 2, 4000)  # B, T, V
MAX_BYTES = 300_000


def enc_f32(t):
    """A float32 tensor as the shortest decimals that round back to exactly its values."""
    flat = t.detach().to(torch.float32).reshape(-1).numpy()
    data = [float(str(v)) for v in flat]  # numpy prints the shortest float32 round-trip decimal
    assert np.array_equal(np.array(data, dtype=np.float32).view(np.uint32), flat.view(np.uint32)), 'float32 round trip'
    return {'shape': list(t.shape), 'dtype': 'float32', 'data': [v if v != 0 else 0 for v in data]}


def enc_f64(t):
    """A float64 tensor printed with repr(), exact on reading back."""
    data = [float(v) for v in t.detach().double().reshape(-1).tolist()]
    return {'shape': list(t.shape), 'dtype': 'float32', 'data': [v if v != 0 else 0 for v in data]}


def enc_int(t):
    return {'shape': list(t.shape), 'dtype': 'int32', 'data': [int(v) for v in t.reshape(-1).tolist()]}


def draw_labels(logits, masked, generator):
    """Labels [B, T]: −100 where `masked` (a [B, T] bool), else the argmax of the logits at t − 1
    with probability 1/2 and a uniform token otherwise (position 0 is never a target: −100)."""
    B, T, V = logits.shape
    labels = torch.randint(0, V, (B, T), generator=generator)
    pick_argmax = torch.rand(B, T, generator=generator) < 0.5
    labels[:, 1:] = torch.where(pick_argmax[:, 1:], logits[:, :-1].argmax(-1), labels[:, 1:])
    labels[:, 0] = IGNORE
    labels[masked] = IGNORE
    return labels


def reference(logits32, labels, description, **meta):
    B, T, V = logits32.shape
    logits = logits32.double().requires_grad_(True)
    shifted = logits[:, :-1].reshape(-1, V)  # [N, V]
    target = labels[:, 1:].reshape(-1)  # [N]
    loss_sum = F.cross_entropy(shifted, target, ignore_index=IGNORE, reduction='sum')
    loss_sum.backward()
    keep = target != IGNORE
    # Unique argmax at every counted position, in float32 (what our backends compare).
    top2 = shifted.detach().float()[keep].topk(2, dim=-1).values
    assert bool((top2[:, 0] > top2[:, 1]).all()), f'{description}: tied argmax'
    with torch.no_grad():
        logp = F.log_softmax(shifted, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
        correct = shifted.argmax(-1) == target
    return {
        'description': description,
        **meta,
        'inputs': {'logits': enc_f32(logits32), 'labels': enc_int(labels)},
        'lossSum': float(loss_sum),
        'tokens': int(keep.sum()),
        'correctSum': int((correct & keep).sum()),
        'entropySum': float(entropy[keep].sum()),
        'grads': {'logits': enc_f64(logits.grad)},
    }


def prefix_mask(B, T, prefixes):
    """[B, T] bool, True on each row's first `prefixes[b]` positions (the prompt)."""
    return torch.arange(T)[None, :] < torch.tensor(prefixes)[:, None]


def extreme(seed, peak, description, B=2, T=6, V=50):
    """Logits ~ N(0, 25²) clipped to ±(peak − 1), with one +peak (the argmax) and one −peak entry per
    position; the labels alternate between the two, masked prompt prefixes of 1 and 2."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, V, generator=g, dtype=torch.float32) * 25).clamp(-(peak - 1), peak - 1)
    hi = torch.randint(0, V, (B, T), generator=g)
    lo = (hi + 1 + torch.randint(0, V - 1, (B, T), generator=g)) % V
    logits.scatter_(2, hi[..., None], peak)
    logits.scatter_(2, lo[..., None], -peak)
    labels = torch.where(torch.arange(T)[None, :] % 2 == 0, lo.roll(1, dims=1), hi.roll(1, dims=1))  # label at t from t − 1
    labels[prefix_mask(B, T, [1, 2])] = IGNORE
    return reference(logits, labels, description)


def main():
    cases = {}

    g = torch.Generator().manual_seed(1)
    B, T, V = 3, 7, 11
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float32) * 2
    masked = prefix_mask(B, T, [2, 3, 1])
    masked[2, 4] = True
    cases['basic'] = reference(logits, draw_labels(logits, masked, g), 'random logits (std 2), masked prompt prefixes, a −100 inside row 2')

    g = torch.Generator().manual_seed(2)
    B, T, V = 3, 6, 13
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float32) * 2
    masked = prefix_mask(B, T, [1, T, 2])
    cases['all_masked_row'] = reference(logits, draw_labels(logits, masked, g), 'row 1 is −100 throughout')

    cases['extreme'] = extreme(3, 80.0, 'logits in [−80, 80]: labels alternate between the +80 argmax and a −80 entry')
    cases['beyond_exp_range'] = extreme(5, 100.0, 'logits in [−100, 100]: exp(100) overflows float32, so only a max-subtracted log-softmax is finite')

    g = torch.Generator().manual_seed(4)
    B, T, V = LONG_VOCAB
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float32) * 2
    labels = torch.tensor([[IGNORE, int(torch.randint(0, V, (1,), generator=g))]])
    cases['long_vocab'] = reference(logits, labels, f'a {V}-way softmax')

    doc = {
        'generator': 'scripts/reference/sft_ref.py',
        'torch': torch.__version__,
        'loss': "F.cross_entropy(logits[:, :-1], labels[:, 1:], ignore_index=-100, reduction='sum')",
        'precision': 'inputs drawn in float32, reference computed in float64',
        'cases': cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    # Keep each flat list of numbers on one line so the fixture reads and diffs well.
    text = re.sub(r'\[\s*([-0-9.e+,\s]*?)\s*\]', lambda m: '[' + ', '.join(v.strip() for v in m.group(1).split(',') if v.strip()) + ']', text)
    with open(OUT, 'w', encoding='utf-8') as f:
        f.write(text + '\n')
    size = os.path.getsize(OUT)
    assert size < MAX_BYTES, f'fixture is {size} bytes; keep it under {MAX_BYTES}'
    print(f'wrote {os.path.normpath(OUT)} ({size} bytes, {len(cases)} cases)')
    for name, c in cases.items():
        print(f"  {name}: lossSum {c['lossSum']:.6g}, tokens {c['tokens']}, correctSum {c['correctSum']}, entropySum {c['entropySum']:.6g}")


if __name__ == '__main__':
    main()

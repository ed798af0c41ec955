"""Reference values for @posttrain/policy, computed with PyTorch in float64 from float32 inputs.

1. Sampling distributions: for each case, the probabilities a sampler draws from after the logits
   warpers of Hugging Face transformers' `generate` in their order -- temperature, top-k, top-p,
   min-p -- each written here from its definition in transformers' logits_process.py
   (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper; min_tokens_to_keep 1).
2. Sequence log-probs: per-token, summed and averaged completion log-probs of a padded batch under a
   tiny causal LM whose logits are given directly (a lookup table), so the check covers the shift,
   the masks, temperature and the reductions.

Run with Debian's interpreter: /usr/bin/python3 scripts/reference/policy_ref.py
Writes packages/policy/fixtures/policy_ref.json (deterministic).
"""
import json
import os

import torch

from losses_common import f32, f64, i32

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
OUT = os.path.join(ROOT, 'packages', 'policy', 'fixtures', 'policy_ref.json')


def warp(logits, temperature, top_k, top_p, min_p):
    scores = logits.double() / temperature
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.numel()))[0][-1]
        scores = scores.masked_fill(scores < kth, float('-inf'))
    if top_p < 1:
        sorted_scores, sorted_idx = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[-1:] = False
        remove = remove_sorted.scatter(0, sorted_idx, remove_sorted)
        scores = scores.masked_fill(remove, float('-inf'))
    if min_p > 0:
        probs = scores.softmax(-1)
        remove = probs < min_p * probs.max()
        order = torch.argsort(scores, descending=True)
        remove[order[:1]] = False
        scores = scores.masked_fill(remove, float('-inf'))
    return scores.softmax(-1)


def sampling_cases():
    g = torch.Generator().manual_seed(1234)
    vectors = {
        'normal50': torch.randn(50, generator=g) * 2,
        'peaked40': torch.cat([torch.tensor([6.0, 5.5, 3.0]), torch.randn(37, generator=g)]),
        'flat30': torch.randn(30, generator=g) * 0.3,
        'wide64': torch.randn(64, generator=g) * 5,
    }
    settings = [
        (1.0, 0, 1.0, 0.0), (0.7, 0, 1.0, 0.0), (1.5, 10, 1.0, 0.0), (1.0, 5, 1.0, 0.0),
        (1.0, 0, 0.9, 0.0), (0.8, 0, 0.5, 0.0), (1.0, 0, 0.99, 0.0), (1.0, 20, 0.8, 0.0),
        (1.0, 0, 1.0, 0.1), (0.7, 0, 1.0, 0.3), (1.2, 15, 0.9, 0.05), (1.0, 0, 0.95, 0.2),
    ]
    cases = []
    for name, v in vectors.items():
        logits = v.to(torch.float32)
        assert len(set(logits.tolist())) == logits.numel(), 'no ties: the warpers order ties differently'
        for t, k, p, m in settings:
            cases.append({'name': f'{name} T={t} k={k} p={p} minP={m}', 'logits': f32(logits),
                          'filters': {'temperature': t, 'topK': k, 'topP': p, 'minP': m},
                          'probs': f64(warp(logits, t, k, p, m))})
    return cases


def logps_cases():
    g = torch.Generator().manual_seed(99)
    V, B, T = 11, 3, 6
    table = (torch.randn(V, V, generator=g) * 2).to(torch.float32)  # logits of the next token given the current one
    ids = torch.tensor([[1, 4, 2, 7, 3, 9], [5, 5, 8, 1, 0, 0], [2, 6, 10, 4, 7, 0]], dtype=torch.int32)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.int32)
    labels = ids.clone()
    labels[0, :2] = -100
    labels[1, :3] = -100
    labels[2, :1] = -100
    labels[mask == 0] = -100
    cases = []
    for temperature in (1.0, 0.7):
        logits = table.double()[ids.long()] / temperature  # [B, T, V]
        logp = logits.log_softmax(-1)
        token = torch.zeros(B, T, dtype=torch.float64)
        for b in range(B):
            for t in range(1, T):
                if labels[b, t] != -100 and mask[b, t] == 1:
                    token[b, t] = logp[b, t - 1, labels[b, t]]
        counted = ((labels != -100) & (mask == 1)).double()
        counted[:, 0] = 0
        tokens = counted.sum(1)
        cases.append({'name': f'table T={temperature}', 'temperature': temperature, 'table': f32(table), 'input_ids': i32(ids),
                      'attention_mask': i32(mask), 'labels': i32(labels), 'token_logps': f64(token), 'sum': f64(token.sum(1)),
                      'mean': f64(token.sum(1) / tokens.clamp(min=1)), 'tokens': f64(tokens)})
    return cases


def main():
    data = {'torch': torch.__version__, 'sampling': sampling_cases(), 'sequence_logps': logps_cases()}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        json.dump(data, f, separators=(',', ':'))
        f.write('\n')
    print(f'wrote {os.path.relpath(OUT, ROOT)} ({os.path.getsize(OUT)} bytes, {len(data["sampling"])} sampling cases)')


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""Reference values for @posttrain/policy's `perplexity`, computed with PyTorch.

The loop is the sliding-window evaluation of Hugging Face's perplexity guide ("Perplexity of
fixed-length models", transformers docs, perplexity.md), written here from its description:
windows of `max_length` tokens start every `stride` tokens; in each, the labels of the tokens the
previous window already reached are -100; the loss is the next-token cross-entropy of the
shifted logits over the remaining labels; the negative log-likelihoods are summed over windows
and divided by the number of scored tokens; the loop ends at the first window that reaches the
end. (The guide multiplies each window's mean loss by its count of scored tokens; summing the
per-token losses directly is the same number.)

The model is packages/models' tiny random Llama fixture (packages/models/fixtures/llama: hidden
32, 2 layers, vocab 96, llama3 RoPE), rebuilt with the plain-torch Llama of models_ref.py and
loaded from that fixture's model.safetensors, so the TypeScript test loads the very same weights
with loadModel. float32 forward on the CPU (one thread), float64 sums.

Run from the repository root with Debian's interpreter:
    /usr/bin/python3 scripts/reference/perplexity_ref.py
Writes packages/policy/fixtures/perplexity_ref.json (deterministic).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models_ref import CONFIGS, build, read_safetensors  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
MODEL = os.path.join(ROOT, 'packages', 'models', 'fixtures', 'llama')
OUT = os.path.join(ROOT, 'packages', 'policy', 'fixtures', 'perplexity_ref.json')


def logits_of(model, ids):
    x = ids[None]
    with torch.no_grad():
        logits, _ = model(x, torch.ones_like(x), torch.arange(ids.shape[0])[None])
    return logits[0]


def hf_sliding_window(model, ids, max_length, stride):
    L = ids.shape[0]
    nll_sum, n_tokens, prev_end, windows = 0.0, 0, 0, 0
    for begin in range(0, L, stride):
        end = min(begin + max_length, L)
        trg_len = end - prev_end
        input_ids = ids[begin:end]
        target_ids = input_ids.clone()
        target_ids[:-trg_len] = -100
        logits = logits_of(model, input_ids)
        loss = torch.nn.functional.cross_entropy(logits[:-1].double(), target_ids[1:], ignore_index=-100, reduction='sum')
        nll_sum += loss.item()
        n_tokens += int((target_ids[1:] != -100).sum())
        windows += 1
        prev_end = end
        if end == L:
            break
    nll = nll_sum / n_tokens
    return {'contextLength': max_length, 'stride': stride, 'windows': windows, 'tokens': n_tokens, 'nll': nll,
            'perplexity': float(torch.tensor(nll, dtype=torch.float64).exp())}


def main():
    torch.set_num_threads(1)
    model = build('llama')
    state = read_safetensors(os.path.join(MODEL, 'model.safetensors'))
    model.load_state_dict(state, strict=True)
    model.eval()
    V = CONFIGS['llama']['vocab_size']
    gen = torch.Generator().manual_seed(14)
    # A stream with structure (a repeated motif with noise), so context helps and the stride matters.
    motif = torch.randint(0, V, (23,), generator=gen)
    ids = motif.repeat(14)[:300].clone()
    noise = torch.rand(300, generator=gen) < 0.3
    ids[noise] = torch.randint(0, V, (int(noise.sum()),), generator=gen)
    cases = [hf_sliding_window(model, ids, m, s) for m, s in [(128, 128), (128, 64), (64, 32), (50, 17), (32, 1), (16, 16)]]
    short = ids[:20]
    short_cases = [hf_sliding_window(model, short, m, s) for m, s in [(128, 128), (128, 5), (20, 20)]]
    out = {'model': 'packages/models/fixtures/llama', 'token_ids': ids.tolist(), 'cases': cases,
           'short_token_ids': short.tolist(), 'short_cases': short_cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        json.dump(out, f, indent=1)
        f.write('\n')
    for c in cases + short_cases:
        print(c)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""PyTorch reference for `npm run bench`: the same tiny GPT, shapes and AdamW step, on this CPU.

Run with Debian's interpreter, which has python3-torch:

    /usr/bin/python3 scripts/reference/bench_torch.py [--threads N] [--seconds S]

Writes bench/results/torch.json ({"machine": {...}, "runs": [{name, backend, shape, msPerStep,
tokensPerSec, steps}]}), which bench/run.ts copies into latest.json as the reference so that
docs/performance.md can state the ratio measured in one run. The model mirrors
packages/tensor-core/src/testing/tiny-gpt.ts: GPT-2 blocks (pre-LayerNorm, GELU-tanh MLP of 4x
width, causal softmax attention), learned positions, output tied to the token embedding, mean
next-token cross-entropy, torch.optim.AdamW(lr=1e-3).
"""
import argparse
import json
import math
import os
import platform
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {
    "tiny": dict(vocab=256, d=128, heads=4, layers=2, seq=64, batch=8),
    "vocab32k": dict(vocab=32000, d=256, heads=4, layers=2, seq=128, batch=4),
}


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=-1)
        q, k, v = (m.view(b, t, self.heads, hd).transpose(1, 2) for m in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TinyGpt(nn.Module):
    def __init__(self, vocab, d, heads, layers, seq):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(seq, d)
        self.h = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.register_buffer("mask", torch.full((seq, seq), -1e9).triu(1))

    def loss(self, ids):
        x, y = ids[:, :-1], ids[:, 1:]
        t = x.shape[1]
        h = self.wte(x) + self.wpe(torch.arange(t))
        for block in self.h:
            h = block(h, self.mask[:t, :t])
        logits = self.ln_f(h) @ self.wte.weight.T
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def measure(name, s, seconds):
    torch.manual_seed(0)
    model = TinyGpt(s["vocab"], s["d"], s["heads"], s["layers"], s["seq"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, s["vocab"], (s["batch"], s["seq"]))

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.loss(ids)
        loss.backward()
        opt.step()
        return (time.perf_counter() - t0) * 1000, loss.item()

    for _ in range(3):
        step()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or (len(times) < 50 and time.perf_counter() < deadline):
        ms, _ = step()
        times.append(ms)
    ms = statistics.median(times)
    tokens = s["batch"] * (s["seq"] - 1)
    return {
        "name": f"train-step/{name}/torch-cpu",
        "backend": "torch-cpu",
        "shape": name,
        "msPerStep": round(ms, 2),
        "tokensPerSec": round(tokens * 1000 / ms, 2),
        "steps": len(times),
        "threads": torch.get_num_threads(),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "bench", "results", "torch.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = [measure(name, s, args.seconds) for name, s in SHAPES.items()]
    for r in runs:
        print(f"{r['name']:32} {r['msPerStep']:9.1f} ms/step {r['tokensPerSec']:8.0f} tokens/s ({r['steps']} steps)")
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__, "threads": args.threads},
        "runs": runs,
    }
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(out + ".tmp", out)
    print("wrote", out)


if __name__ == "__main__":
    main()

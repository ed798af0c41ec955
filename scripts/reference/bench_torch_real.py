#!/usr/bin/env python3
"""PyTorch reference for `npm run bench -- --suites real`: SmolLM2-135M's shapes on this CPU.

    /usr/bin/python3 scripts/reference/bench_torch_real.py [--threads N] [--seconds S]

Prints one JSON object {"machine": {...}, "runs": [...]} on stdout (bench/run.ts reads it and
writes each run's PyTorch figure and ratio beside ours). The model is written here from the Llama
architecture (no transformers on these machines): RMSNorm, rotary embeddings (theta 100000),
grouped-query attention (9 query heads over 3 key/value heads), SwiGLU MLP, tied embeddings;
random weights, as bench/real.ts. Runs, named as ours:
  real/forward           1 x 512 tokens, no gradient
  real/decode/batch1|8   greedy decoding with a KV cache, prompt 32, 32 new tokens
  real/lora-step         LoRA r 16 (alpha 32) on every linear layer but lm_head, --lora-batch x
                         --lora-seq tokens (default 4 x 256; bench/real.ts passes the shape wasm fits),
                         next-token cross-entropy, backward, AdamW on the adapters
Peak memory: the process's peak resident set (ru_maxrss) after each phase; the LoRA step's is
reported with the RSS before it (the weights and the interpreter).
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CFG = dict(vocab=49152, d=576, inter=1536, layers=30, heads=9, kv=3, theta=100000.0, eps=1e-5)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Linear(nn.Module):
    """A bias-free linear layer with an optional LoRA adapter (the base frozen)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.02)
        self.a = None

    def add_lora(self, r, alpha):
        self.weight.requires_grad_(False)
        self.a = nn.Parameter(torch.randn(r, self.weight.shape[1]) / math.sqrt(self.weight.shape[1]))
        self.b = nn.Parameter(torch.zeros(self.weight.shape[0], r))
        self.scale = alpha / r

    def forward(self, x):
        y = F.linear(x, self.weight)
        if self.a is not None:
            y = y + F.linear(F.linear(x, self.a), self.b) * self.scale
        return y


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.kv, self.hd = c["heads"], c["kv"], c["d"] // c["heads"]
        self.q_proj = Linear(c["d"], self.h * self.hd)
        self.k_proj = Linear(c["d"], self.kv * self.hd)
        self.v_proj = Linear(c["d"], self.kv * self.hd)
        self.o_proj = Linear(self.h * self.hd, c["d"])

    def forward(self, x, cos, sin, cache=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        rep = self.h // self.kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
        s = k.shape[2]
        if t > 1:
            mask = torch.full((t, s), float("-inf")).triu(s - t + 1)
            att = att + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, self.h * self.hd)
        return self.o_proj(y)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["d"], c["eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["d"], c["eps"])
        self.gate_proj = Linear(c["d"], c["inter"])
        self.up_proj = Linear(c["d"], c["inter"])
        self.down_proj = Linear(c["inter"], c["d"])

    def forward(self, x, cos, sin, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c["vocab"], c["d"])
        nn.init.normal_(self.embed.weight, std=0.02)
        self.layers = nn.ModuleList([Block(c) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["d"], c["eps"])
        hd = c["d"] // c["heads"]
        self.inv_freq = 1.0 / (c["theta"] ** (torch.arange(0, hd, 2).float() / hd))

    def rope(self, start, t):
        pos = torch.arange(start, start + t).float()
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[None, None], emb.sin()[None, None]

    def forward(self, ids, caches=None, start=0):
        x = self.embed(ids)
        cos, sin = self.rope(start, ids.shape[1])
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i])
        return F.linear(self.norm(x), self.embed.weight)  # tied output


def log(text):
    print(text, file=sys.stderr, flush=True)


def timed(step, seconds):
    first = step()
    log(f"  first step {first:.2f} s")
    warmup = 1 if first > 5 else 3
    for _ in range(warmup - 1):
        step()
    ms, deadline = [], time.perf_counter() + seconds
    least = 2 if first > 60 else 3
    while len(ms) < least or (len(ms) < 30 and time.perf_counter() < deadline):
        ms.append(step() * 1000)
    return statistics.median(ms), len(ms), warmup


def rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--lora-batch", type=int, default=4)
    p.add_argument("--lora-seq", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Llama(CFG).eval()
    params = sum(t.numel() for t in model.parameters())
    shape = f"smollm135m ({params / 1e6:.1f}M params, random weights)"
    runs = []

    with torch.no_grad():
        ids = torch.randint(0, CFG["vocab"], (1, 512))

        def forward():
            t0 = time.perf_counter()
            model(ids)
            return time.perf_counter() - t0

        log("forward 1x512")
        ms, n, w = timed(forward, a.seconds)
        runs.append(dict(name="real/forward/torch", backend="torch", shape=f"{shape}, 1x512", msPerStep=ms, tokensPerSec=512 * 1000 / ms, steps=n, warmupSteps=w))

        for batch in (1, 8):
            prompt = torch.randint(0, CFG["vocab"], (batch, 32))

            def decode():
                t0 = time.perf_counter()
                caches = [dict() for _ in range(CFG["layers"])]
                logits = model(prompt, caches, 0)
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                for i in range(31):
                    logits = model(nxt, caches, 32 + i)
                    nxt = logits[:, -1].argmax(-1, keepdim=True)
                return time.perf_counter() - t0

            log(f"decode batch {batch}")
            ms, n, w = timed(decode, a.seconds)
            per_token = ms / 32
            runs.append(dict(name=f"real/decode/torch/batch{batch}", backend="torch", shape=f"{shape}, prompt 32, 32 new tokens, batch {batch}, KV cache", msPerStep=per_token, tokensPerSec=batch * 1000 / per_token, steps=n, warmupSteps=w))

    for module in model.modules():
        if isinstance(module, Linear):
            module.add_lora(16, 32)
    model.embed.weight.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, RMSNorm):
            m.weight.requires_grad_(False)
    trainable = [t for t in model.parameters() if t.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    ids = torch.randint(0, CFG["vocab"], (a.lora_batch, a.lora_seq))
    model.train()
    rss_before = rss_bytes()

    def lora_step():
        t0 = time.perf_counter()
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, CFG["vocab"]), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    log(f"LoRA step {a.lora_batch}x{a.lora_seq}")
    ms, n, w = timed(lora_step, a.seconds)
    runs.append(dict(name="real/lora-step/torch", backend="torch", shape=f"{shape}, LoRA r 16 all-linear, {a.lora_batch}x{a.lora_seq}", msPerStep=ms, tokensPerSec=a.lora_batch * a.lora_seq * 1000 / ms, steps=n, warmupSteps=w, peakRssBytes=rss_bytes(), rssBeforeBytes=rss_before))

    machine = dict(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(), torch=torch.__version__, python=platform.python_version(), blas=torch.__config__.show().count("OpenBLAS") > 0 and "OpenBLAS" or "other")
    print(json.dumps(dict(machine=machine, runs=runs)))


if __name__ == "__main__":
    main()

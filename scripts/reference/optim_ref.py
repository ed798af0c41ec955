#!/usr/bin/python3
"""Reference values for tensor-core's optimisers, gradient clipping and LR schedules.

Run from the repository root with Debian's interpreter, which has PyTorch
(`apt-get install -y python3-torch`; the `python3` first on PATH may lack torch):

    /usr/bin/python3 scripts/reference/optim_ref.py

It writes two small JSON fixtures that packages/tensor-core's tests read, so CI needs no Python:

- packages/tensor-core/fixtures/optim.json: a fixed toy problem (three parameters of shapes
  [4, 3], [3] and [2, 2, 2], an input x [5, 4], targets t [5, 3], weights w [2, 2, 2], all from
  torch.manual_seed(0)) and, for several optimiser configurations, 20 steps of
  torch.optim.AdamW / torch.optim.SGD, optionally with torch.nn.utils.clip_grad_norm_: the loss
  before each step, the pre-clip global gradient norm, whether clipping scaled the gradients,
  and the parameters after the last step; the gradients of the step-0 loss at the initial
  parameters; and clip_grad_norm_ applied to fixed random gradients (seed 1) with a max_norm
  that clips and one that does not.
- packages/tensor-core/fixtures/schedules.json: the learning rate at optimizer steps 0..N-1 of
  torch.optim.lr_scheduler.LambdaLR driven by the lambdas of Hugging Face transformers'
  get_{constant,linear,cosine}_schedule_with_warmup and get_cosine_with_min_lr_schedule_with_warmup
  (copied below, since transformers is not installed here).

The loss at step k (0-based) is, with h = tanh(x @ a + b) and s_k = LOSS_SCALES[k % 4]:

    loss_k = s_k * ( mean((h - t)^2) + 0.1 * sum(w * c^2) + 0.05 * sum(tanh(c)) * mean(h) )

The scales make the gradient norm swing, so a fixed max_norm clips on some steps and not others.

Deterministic: fixed seeds, one thread, deterministic algorithms, float32 throughout. Every float
is written as Python's repr of the float32 value (exact when read back into a Float32Array).
"""
import json
import math
import os

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "packages", "tensor-core", "fixtures")
STEPS = 20
LOSS_SCALES = [1.0, 4.0, 0.5, 2.0]


def tolist(t):
    return t.detach().to(torch.float32).reshape(-1).tolist()


def make_problem():
    g = torch.Generator().manual_seed(0)
    params = {
        "a": (torch.randn(4, 3, generator=g) * 0.5),
        "b": (torch.randn(3, generator=g) * 0.5),
        "c": (torch.randn(2, 2, 2, generator=g) * 0.5),
    }
    data = {
        "x": torch.randn(5, 4, generator=g),
        "t": torch.randn(5, 3, generator=g) * 0.5,
        "w": torch.rand(2, 2, 2, generator=g) + 0.5,
    }
    return params, data


def loss_fn(p, d, k):
    h = torch.tanh(d["x"] @ p["a"] + p["b"])
    core = ((h - d["t"]) ** 2).mean() + 0.1 * (d["w"] * p["c"] ** 2).sum() + 0.05 * torch.tanh(p["c"]).sum() * h.mean()
    return LOSS_SCALES[k % len(LOSS_SCALES)] * core


def run(init, data, make_opt, max_norm):
    p = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    opt = make_opt(list(p.values()))
    losses, norms, clipped = [], [], []
    for k in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(p, data, k)
        loss.backward()
        losses.append(loss.item())
        if max_norm is not None:
            total = torch.nn.utils.clip_grad_norm_(list(p.values()), max_norm)
            norms.append(total.item())
            clipped.append(bool((max_norm / (total + 1e-6)).item() < 1.0))
        else:
            total = torch.norm(torch.stack([torch.norm(q.grad, 2) for q in p.values()]), 2)
            norms.append(total.item())
            clipped.append(False)
        opt.step()
    return {
        "losses": losses,
        "gradNorms": norms,
        "clipped": clipped,
        "finalParams": {k: tolist(v) for k, v in p.items()},
    }


def optim_fixture():
    init, data = make_problem()
    runs = []
    configs = [
        ("adamw", "AdamW", {"lr": 0.05, "betas": [0.9, 0.99], "eps": 1e-8, "weightDecay": 0.1}, 0.5,
         lambda ps: torch.optim.AdamW(ps, lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)),
        ("adamw-defaults", "AdamW", {}, None, lambda ps: torch.optim.AdamW(ps)),
        ("sgd-nesterov", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weightDecay": 0.01}, 0.5,
         lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("sgd-dampening", "SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.3}, None,
         lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.8, dampening=0.3)),
        ("sgd-plain", "SGD", {"lr": 0.1, "weightDecay": 0.05}, 1.0,
         lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=0.05)),
    ]
    for name, kind, options, max_norm, make_opt in configs:
        r = run(init, data, make_opt, max_norm)
        runs.append({"name": name, "optimizer": kind, "options": options, "maxNorm": max_norm, **r})
    p = {k: v.clone().requires_grad_(True) for k, v in init.items()}
    loss_fn(p, data, 0).backward()
    initial_grads = {k: tolist(v.grad) for k, v in p.items()}
    return {
        "generator": "scripts/reference/optim_ref.py",
        "torch": torch.__version__,
        "steps": STEPS,
        "initialGrads": initial_grads,
        "clip": clip_cases(),
        "lossScales": LOSS_SCALES,
        "shapes": {k: list(v.shape) for k, v in {**init, **data}.items()},
        "initialParams": {k: tolist(v) for k, v in init.items()},
        "data": {k: tolist(v) for k, v in data.items()},
        "runs": runs,
    }


def clip_cases():
    """torch.nn.utils.clip_grad_norm_ on fixed gradients, once clipping (max_norm below the norm), once not."""
    g = torch.Generator().manual_seed(1)
    shapes = {"a": [4, 3], "b": [3], "c": [2, 2, 2]}
    grads = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    cases = []
    for max_norm in (1.0, 100.0):
        ps = {k: torch.zeros(*s, requires_grad=True) for k, s in shapes.items()}
        for k, p in ps.items():
            p.grad = grads[k].clone()
        total = torch.nn.utils.clip_grad_norm_(list(ps.values()), max_norm)
        cases.append({"maxNorm": max_norm, "totalNorm": total.item(), "clipped": {k: tolist(p.grad) for k, p in ps.items()}})
    return {"shapes": shapes, "grads": {k: tolist(v) for k, v in grads.items()}, "cases": cases}


# --- Hugging Face transformers' schedule lambdas (transformers/optimization.py), verbatim in effect.
def constant_lambda(num_warmup_steps):
    def f(current_step):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1.0, num_warmup_steps))
        return 1.0
    return f


def linear_lambda(num_warmup_steps, num_training_steps):
    def f(current_step):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))
    return f


def cosine_lambda(num_warmup_steps, num_training_steps, num_cycles=0.5, min_lr_rate=0.0):
    def f(current_step):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
        factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
        if min_lr_rate:  # get_cosine_with_min_lr_schedule_with_warmup
            factor = factor * (1 - min_lr_rate) + min_lr_rate
        return max(0.0, factor)
    return f


def lambda_lr(base_lr, fn, n):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def schedules_fixture():
    cases = [
        ("constant", {"lr": 0.001, "warmupSteps": 0}, constant_lambda(0), 6),
        ("constant", {"lr": 0.001, "warmupSteps": 4}, constant_lambda(4), 8),
        ("linear", {"lr": 0.003, "warmupSteps": 3, "totalSteps": 10}, linear_lambda(3, 10), 13),
        ("linear", {"lr": 0.01, "warmupSteps": 0, "totalSteps": 5}, linear_lambda(0, 5), 7),
        ("cosine", {"lr": 0.002, "warmupSteps": 3, "totalSteps": 12}, cosine_lambda(3, 12), 12),
        ("cosine", {"lr": 0.002, "warmupSteps": 0, "totalSteps": 8, "numCycles": 1.5}, cosine_lambda(0, 8, 1.5), 10),
        ("cosine", {"lr": 0.002, "warmupSteps": 2, "totalSteps": 10, "minLr": 0.0002},
         cosine_lambda(2, 10, 0.5, 0.0002 / 0.002), 10),
    ]
    return {
        "generator": "scripts/reference/optim_ref.py",
        "torch": torch.__version__,
        "cases": [{"schedule": s, "options": o, "lrs": lambda_lr(o["lr"], fn, n)} for s, o, fn, n in cases],
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, fixture in (("optim.json", optim_fixture()), ("schedules.json", schedules_fixture())):
        path = os.path.join(OUT, name)
        with open(path, "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()

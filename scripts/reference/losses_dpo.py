#!/usr/bin/python3
"""PyTorch references for the DPO family of @posttrain/losses (packages/losses/src/dpo.ts and
dpo-variants.ts).

Run from the repository root with Debian's interpreter, which has torch:

    /usr/bin/python3 scripts/reference/losses_dpo.py

Writes packages/losses/fixtures/dpo_ref.json (byte-identical on every run), read by
packages/losses/src/dpo.test.ts. Format and helpers: scripts/reference/losses_common.py.

Every loss is written here from its paper and TRL's `DPOTrainer` formula, in float64, on the
float32 inputs exactly as stored. With a = policyChosen − refChosen, b = policyRejected − refRejected
(log-ratios), z = a − b and logsig(x) = −softplus(−x):

  dpoSigmoidLoss  −(1 − ε)·logsig(βz) − ε·logsig(−βz)                 Rafailov 2023 eq. 7; cDPO (Mitchell 2023)
  dpoHingeLoss    relu(1 − βz)                                         SLiC-HF / RSO hinge, TRL 'hinge'
  ipoLoss         (z − 1/(2β))²                                        Azar 2023 eq. 17 (β is τ)
  robustDpoLoss   (−(1 − ε)·logsig(βz) + ε·logsig(−βz)) / (1 − 2ε)     Chowdhury 2024, TRL 'robust'
  bcoPairLoss     −logsig(βa − δ) − logsig(−(βb − δ))                  Jung 2024, TRL 'bco_pair'
  ncaPairLoss     −logsig(βa) − ½·logsig(−βa) − ½·logsig(−βb)          Chen 2024, TRL 'nca_pair'
  sppoHardLoss    (a − 1/(2β))² + (b + 1/(2β))²                        Wu 2024 eq. 4.7 with P ∈ {1, 0}
  apoZeroLoss     1 − σ(βa) + σ(βb)                                    D'Oosterlinck 2024 eq. 7 (+1, as TRL)
  apoDownLoss     σ(βa) + 1 − σ(β(a − b))                              D'Oosterlinck 2024 eq. 8 (+1, as TRL)
  exoPairLoss     σ(βz)(logsig(βz) − log(1 − ε)) + σ(−βz)(logsig(−βz) − log ε)   Ji 2024 eq. 16

`loss` is the mean of `losses`; `chosenRewards` = βa and `rejectedRewards` = βb (detached). The
gradients are d loss / d each of the four inputs (the reference inputs included).

Cases, for each function:
  <fn>/random   B = 6, summed log-probs ~ N(−120, 40²) with the policy within a few nats of the
                reference (IPO: per-token averages ~ N(−1.5, 0.5²), as TRL feeds IPO), default options
  <fn>/options  a fresh B = 6 draw and a non-default option set
  <fn>/extreme  B = 6 log-probs between about −30 and −1600, arranged so that the log-ratios a, b
                are ±hundreds and z = a − b reaches about ±1400 (β·z ≈ ±140 at β = 0.1) on both
                sides within the batch: σ(−β|z|) underflows float32, so a naive log(sigmoid(x))
                gives −∞ (and NaN gradients); one row has a ≈ b ≈ +700
"""
import math

import torch
import torch.nn.functional as F

from losses_common import case, write

DEFAULTS = {
    'dpoSigmoidLoss': {'beta': 0.1, 'labelSmoothing': 0.0},
    'dpoHingeLoss': {'beta': 0.1},
    'ipoLoss': {'beta': 0.1},
    'robustDpoLoss': {'beta': 0.1, 'labelSmoothing': 0.0},
    'bcoPairLoss': {'beta': 0.1, 'delta': 0.0},
    'ncaPairLoss': {'beta': 0.1},
    'sppoHardLoss': {'beta': 0.1},
    'apoZeroLoss': {'beta': 0.1},
    'apoDownLoss': {'beta': 0.1},
    'exoPairLoss': {'beta': 0.1, 'labelSmoothing': 1e-3},
}


def logsig(x):
    return -F.softplus(-x)


def dpo_sigmoid(a, b, o):
    z, eps = o['beta'] * (a - b), o['labelSmoothing']
    return -(1 - eps) * logsig(z) - eps * logsig(-z)


def dpo_hinge(a, b, o):
    return torch.relu(1 - o['beta'] * (a - b))


def ipo(a, b, o):
    return (a - b - 1 / (2 * o['beta'])) ** 2


def robust(a, b, o):
    z, eps = o['beta'] * (a - b), o['labelSmoothing']
    return (-(1 - eps) * logsig(z) + eps * logsig(-z)) / (1 - 2 * eps)


def bco_pair(a, b, o):
    beta, delta = o['beta'], o['delta']
    return -logsig(beta * a - delta) - logsig(-(beta * b - delta))


def nca_pair(a, b, o):
    ra, rb = o['beta'] * a, o['beta'] * b
    return -logsig(ra) - 0.5 * logsig(-ra) - 0.5 * logsig(-rb)


def sppo_hard(a, b, o):
    half = 0.5 / o['beta']
    return (a - half) ** 2 + (b + half) ** 2


def apo_zero(a, b, o):
    return 1 - torch.sigmoid(o['beta'] * a) + torch.sigmoid(o['beta'] * b)


def apo_down(a, b, o):
    return torch.sigmoid(o['beta'] * a) + 1 - torch.sigmoid(o['beta'] * (a - b))


def exo_pair(a, b, o):
    z, eps = o['beta'] * (a - b), o['labelSmoothing']
    return torch.sigmoid(z) * (logsig(z) - math.log(1 - eps)) + torch.sigmoid(-z) * (logsig(-z) - math.log(eps))


FORMULAS = {
    'dpoSigmoidLoss': dpo_sigmoid,
    'dpoHingeLoss': dpo_hinge,
    'ipoLoss': ipo,
    'robustDpoLoss': robust,
    'bcoPairLoss': bco_pair,
    'ncaPairLoss': nca_pair,
    'sppoHardLoss': sppo_hard,
    'apoZeroLoss': apo_zero,
    'apoDownLoss': apo_down,
    'exoPairLoss': exo_pair,
}

# A non-default option set per function (passed to the function as given).
OPTIONS = {
    'dpoSigmoidLoss': {'beta': 0.5, 'labelSmoothing': 0.2},
    'dpoHingeLoss': {'beta': 0.5},
    'ipoLoss': {'beta': 0.5},
    'robustDpoLoss': {'beta': 0.3, 'labelSmoothing': 0.25},
    'bcoPairLoss': {'beta': 0.2, 'delta': 0.3},
    'ncaPairLoss': {'beta': 0.5},
    'sppoHardLoss': {'beta': 1.0},
    'apoZeroLoss': {'beta': 0.5},
    'apoDownLoss': {'beta': 0.5},
    'exoPairLoss': {'beta': 0.5, 'labelSmoothing': 0.1},
}

# The extreme case's options: the defaults, with a label smoothing where one is meaningful, so that
# both logsig(βz) and logsig(−βz) are taken far in their tails.
EXTREME = {
    'dpoSigmoidLoss': {'labelSmoothing': 0.1},
    'robustDpoLoss': {'labelSmoothing': 0.2},
}


def leaf(x):
    """A float32-exact float64 leaf that requires grad."""
    return x.detach().to(torch.float32).double().requires_grad_(True)


def draw_batch(g, kind, B=6):
    if kind == 'extreme':
        # Per row, one log-prob near zero ("hi", ~ −30) and one hundreds of nats down ("lo", ~ −700
        # and below) on each side: rows 0–4 alternate z ≈ +1400 and z ≈ −1400 (a and b of opposite
        # signs), row 5 has a ≈ b ≈ +700 (both log-ratios large, z moderate).
        hi = lambda: -30 - torch.randn(B, generator=g).abs() * 20
        lo = lambda: -700 - torch.randn(B, generator=g).abs() * 300
        hc, lc, hr, lr = hi(), lo(), hi(), lo()
        up = torch.tensor([True, False, True, False, True, True])
        down = torch.tensor([False, True, False, True, False, True])
        return {
            'policyChosenLogps': leaf(torch.where(up, hc, lc)),
            'refChosenLogps': leaf(torch.where(up, lc, hc)),
            'policyRejectedLogps': leaf(torch.where(down, hr, lr)),
            'refRejectedLogps': leaf(torch.where(down, lr, hr)),
        }
    if kind == 'average':  # per-token averages, as TRL feeds IPO
        ref_c, ref_r = torch.randn(B, generator=g) * 0.5 - 1.5, torch.randn(B, generator=g) * 0.5 - 1.5
        pol_c, pol_r = ref_c + torch.randn(B, generator=g) * 0.3, ref_r + torch.randn(B, generator=g) * 0.3
    else:  # summed log-probs
        ref_c, ref_r = torch.randn(B, generator=g) * 40 - 120, torch.randn(B, generator=g) * 40 - 120
        pol_c, pol_r = ref_c + torch.randn(B, generator=g) * 3, ref_r + torch.randn(B, generator=g) * 3
    return {'policyChosenLogps': leaf(pol_c), 'policyRejectedLogps': leaf(pol_r), 'refChosenLogps': leaf(ref_c), 'refRejectedLogps': leaf(ref_r)}


def make(fn, inputs, given):
    o = {**DEFAULTS[fn], **given}
    a = inputs['policyChosenLogps'] - inputs['refChosenLogps']
    b = inputs['policyRejectedLogps'] - inputs['refRejectedLogps']
    if fn == 'dpoHingeLoss':  # keep every pair off the kink, where the gradient is undefined
        assert (1 - o['beta'] * (a - b)).abs().min().item() > 1e-3
    losses = FORMULAS[fn](a, b, o)
    assert torch.isfinite(losses).all(), fn
    outputs = {
        'loss': losses.mean(),
        'losses': losses,
        'chosenRewards': (o['beta'] * a).detach(),
        'rejectedRewards': (o['beta'] * b).detach(),
    }
    return case(fn, inputs, outputs, given)


def main():
    cases = {}
    for i, fn in enumerate(FORMULAS):
        g = torch.Generator().manual_seed(6000 + i)
        kind = 'average' if fn == 'ipoLoss' else 'summed'
        cases[f'{fn}/random'] = make(fn, draw_batch(g, kind), {})
        cases[f'{fn}/options'] = make(fn, draw_batch(g, kind), OPTIONS[fn])
        extreme = draw_batch(g, 'extreme')
        z = (extreme['policyChosenLogps'] - extreme['refChosenLogps'] - extreme['policyRejectedLogps'] + extreme['refRejectedLogps']).detach()
        beta = {**DEFAULTS[fn], **EXTREME.get(fn, {})}['beta']
        # The point of the case: σ(±βz) leaves float32's range on both sides within the batch.
        assert (beta * z).max() > 104 and (beta * z).min() < -104, (fn, (beta * z).tolist())
        cases[f'{fn}/extreme'] = make(fn, extreme, EXTREME.get(fn, {}))
    write('dpo_ref', cases)


if __name__ == '__main__':
    main()

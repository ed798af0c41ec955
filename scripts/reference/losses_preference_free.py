#!/usr/bin/python3
"""PyTorch references for the reference-free preference losses and KTO of @posttrain/losses
(packages/losses/src/simpo.ts, orpo.ts, kto.ts).

Run from the repository root with Debian's interpreter, which has torch:

    /usr/bin/python3 scripts/reference/losses_preference_free.py

Writes packages/losses/fixtures/preference_free_ref.json (byte-identical on every run), read by
simpo.test.ts, orpo.test.ts and kto.test.ts. Format and helpers: scripts/reference/losses_common.py.

Every loss is written here from its paper and TRL's formula, in float64, on the float32 inputs
exactly as stored; logsig(x) = −softplus(−x), σ the logistic function.

  simpoLoss  c, r per-token average log-probs; z = β(c − r) − γ
             losses = −(1 − ε)·logsig(z) − ε·logsig(−z)                  Meng 2024 eq. 6 (+ TRL's ε)
             chosenRewards = βc, rejectedRewards = βr
  orpoLoss   c, r per-token average log-probs, clamped to ≤ −1e-7 inside log(1 − e^x) only
             logOdds = (c − r) − (log(1 − e^c) − log(1 − e^r))          Hong 2024 eq. 4–5
             oddsRatioLosses = −logsig(logOdds)                          eq. 7
             losses = chosenNll + β·oddsRatioLosses                      eq. 6 (chosenNll [B] or [])
  ktoLoss    ρ = policyLogps − refLogps, d = desirable ∈ {0, 1}
             z₀ = max(0, mean(policyKlLogps − refKlLogps)), no gradient  (or options.kl, clamped)
             losses = d·λ_D·(1 − σ(β(ρ − z₀))) + (1 − d)·λ_U·(1 − σ(β(z₀ − ρ)))   Ethayarajh 2024 eq. 8
             chosenRewards = βρ·d, rejectedRewards = βρ·(1 − d), kl = z₀

`loss` is the mean of `losses` in every case. The gradients are d loss / d every float input.

Cases:
  simpo/random        B = 8, averages ~ N(−1.5, 0.5²), defaults (β 2, γ 0.5, ε 0)
  simpo/options       β 2.5, γ 1.4, ε 0.1
  simpo/trl-defaults  β 0.1, γ 0.5: TRL CPOConfig(loss_type='simpo')'s defaults
  simpo/extreme       β 10, c − r of ±tens: β(c − r) − γ reaches ±hundreds
  simpo/long          B = 64
  orpo/random         B = 8, averages −|N(1.2, 0.4²)|, chosenNll [B], defaults (β 0.1)
  orpo/scalar-nll     chosenNll a scalar [] (TRL adds the batch's mean NLL), β 0.25
  orpo/near-zero      log-probs −1e-6, −1e-4, −1e-2 … and 0, −1e-9 (inside the clamp)
  orpo/very-negative  −50, −100, −30 against ordinary and near-zero values
  kto/random          B = 8, summed log-probs ~ N(−60, 15²), ρ ~ N(0, 2²), bool labels, KL pairs [8]
  kto/options         β 0.5, λ_D 1.33, λ_U 0.75, float 0/1 labels
  kto/all-desirable   every example desirable
  kto/all-undesirable every example undesirable
  kto/kl-negative     mean KL log-ratio < 0, so z₀ is clamped to 0
  kto/kl-option       z₀ given as options.kl = 0.7, no KL inputs
  kto/kl-length       5 KL pairs for a batch of 8
  kto/extreme         β 1, ρ of ±hundreds (σ saturates in float32) beside a few of order one
"""
import torch
import torch.nn.functional as F

from losses_common import case, draw, write

ORPO_CLAMP = -1e-7


def logsig(x):
    return -F.softplus(-x)


# ----------------------------------------------------------------------------------------- SimPO

def simpo(c, r, o):
    z = o['beta'] * (c - r) - o['gamma']
    eps = o['labelSmoothing']
    losses = -(1 - eps) * logsig(z) - eps * logsig(-z)
    return {'loss': losses.mean(), 'losses': losses,
            'chosenRewards': (o['beta'] * c).detach(), 'rejectedRewards': (o['beta'] * r).detach()}


SIMPO_DEFAULTS = {'beta': 2.0, 'gamma': 0.5, 'labelSmoothing': 0.0}


def simpo_case(c, r, options=None):
    o = {**SIMPO_DEFAULTS, **(options or {})}
    return case('simpoLoss', {'policyChosenLogps': c, 'policyRejectedLogps': r}, simpo(c, r, o), options)


# ------------------------------------------------------------------------------------------ ORPO

def log1m_exp(x):
    """log(1 − e^x) for x < 0, on x clamped to ≤ −1e-7 (the clamp orpoLoss documents)."""
    x = x.clamp(max=ORPO_CLAMP)
    return torch.log(-torch.expm1(x))  # exact enough in float64 on both sides of −ln 2


def orpo(c, r, nll, o):
    log_odds = (c - r) - (log1m_exp(c) - log1m_exp(r))
    or_losses = -logsig(log_odds)
    losses = nll + o['beta'] * or_losses
    return {'loss': losses.mean(), 'losses': losses, 'logOdds': log_odds.detach(), 'oddsRatioLosses': or_losses.detach(),
            'chosenRewards': (o['beta'] * c).detach(), 'rejectedRewards': (o['beta'] * r).detach()}


ORPO_DEFAULTS = {'beta': 0.1}


def orpo_case(c, r, nll, options=None):
    o = {**ORPO_DEFAULTS, **(options or {})}
    return case('orpoLoss', {'policyChosenLogps': c, 'policyRejectedLogps': r, 'chosenNll': nll}, orpo(c, r, nll, o), options)


def leaf(values):
    """float32-exact float64 leaf from a list of numbers."""
    return torch.tensor(values, dtype=torch.float32).double().requires_grad_(True)


# ------------------------------------------------------------------------------------------- KTO

KTO_DEFAULTS = {'beta': 0.1, 'desirableWeight': 1.0, 'undesirableWeight': 1.0, 'kl': None}


def kto(p, ref, d, pkl, rkl, o):
    if o['kl'] is None:
        z0 = (pkl - rkl).mean().clamp(min=0).detach()
    else:
        z0 = torch.tensor(max(o['kl'], 0.0), dtype=torch.float64)
    rho = p - ref
    d = d.double()
    desirable_losses = 1 - torch.sigmoid(o['beta'] * (rho - z0))
    undesirable_losses = 1 - torch.sigmoid(o['beta'] * (z0 - rho))
    losses = d * o['desirableWeight'] * desirable_losses + (1 - d) * o['undesirableWeight'] * undesirable_losses
    # TRL concatenates the two groups' losses and takes the mean: a permutation of `losses`.
    rewards = (o['beta'] * rho).detach()
    return {'loss': losses.mean(), 'losses': losses, 'kl': z0,
            'chosenRewards': rewards * d, 'rejectedRewards': rewards * (1 - d)}


def kto_case(p, ref, d, pkl=None, rkl=None, options=None):
    o = {**KTO_DEFAULTS, **(options or {})}
    inputs = {'policyLogps': p, 'refLogps': ref, 'desirable': d}
    if pkl is not None:
        inputs.update({'policyKlLogps': pkl, 'refKlLogps': rkl})
    return case('ktoLoss', inputs, kto(p, ref, d, pkl, rkl, o), options)


def kto_draw(g, b, b_kl=None, kl_shift=0.5, std=15.0, rho_std=2.0):
    policy = draw([b], g, std=std, mean=-60.0)
    ref = (policy.detach() + torch.randn([b], generator=g, dtype=torch.float32).double() * rho_std).float().double().requires_grad_(True)
    n = b if b_kl is None else b_kl
    pkl = draw([n], g, std=std, mean=-60.0)
    rkl = (pkl.detach() - kl_shift + torch.randn([n], generator=g, dtype=torch.float32).double()).float().double().requires_grad_(True)
    return policy, ref, pkl, rkl


def main():
    g = torch.Generator().manual_seed(20240614)
    cases = {}

    # SimPO
    cases['simpo/random'] = simpo_case(draw([8], g, 0.5, -1.5), draw([8], g, 0.5, -1.5))
    cases['simpo/options'] = simpo_case(draw([8], g, 0.5, -1.5), draw([8], g, 0.5, -1.5), {'beta': 2.5, 'gamma': 1.4, 'labelSmoothing': 0.1})
    cases['simpo/trl-defaults'] = simpo_case(draw([8], g, 0.5, -1.5), draw([8], g, 0.5, -1.5), {'beta': 0.1, 'gamma': 0.5})
    cases['simpo/extreme'] = simpo_case(leaf([-0.01, -45.0, -0.5, -30.0, -12.5, -60.0, -1e-4, -3.0]),
                                        leaf([-45.0, -0.01, -30.0, -0.5, -60.0, -12.5, -3.0, -1e-4]),
                                        {'beta': 10.0, 'gamma': 5.0, 'labelSmoothing': 0.05})
    cases['simpo/long'] = simpo_case(draw([64], g, 0.7, -1.2), draw([64], g, 0.7, -1.6), {'beta': 2.5, 'gamma': 1.0})

    # ORPO
    def neg(x):
        return (-x.detach().abs()).float().double().requires_grad_(True)

    cases['orpo/random'] = orpo_case(neg(draw([8], g, 0.4, 1.2)), neg(draw([8], g, 0.4, 1.4)), draw([8], g, 0.3, 1.1).detach().abs().requires_grad_(True))
    cases['orpo/scalar-nll'] = orpo_case(neg(draw([8], g, 0.4, 1.2)), neg(draw([8], g, 0.4, 1.4)), leaf(1.37), {'beta': 0.25})
    cases['orpo/near-zero'] = orpo_case(leaf([-1e-6, -1e-4, -1e-2, -0.3, -2.0, 0.0, -1e-9, -1e-6]),
                                        leaf([-0.5, -1e-6, -1e-3, -1e-5, -1e-6, -0.7, -2.5, -1e-9]),
                                        leaf([0.5, 1.0, 1.5, 2.0, 0.25, 0.75, 1.25, 1.75]), {'beta': 0.5})
    cases['orpo/very-negative'] = orpo_case(leaf([-50.0, -0.2, -100.0, -1e-6, -30.0, -1.0]),
                                            leaf([-0.3, -50.0, -1e-6, -100.0, -40.0, -30.0]),
                                            leaf([50.0, 0.2, 100.0, 1e-6, 30.0, 1.0]))

    # KTO
    p, ref, pkl, rkl = kto_draw(g, 8)
    cases['kto/random'] = kto_case(p, ref, torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool), pkl, rkl)
    p, ref, pkl, rkl = kto_draw(g, 8)
    cases['kto/options'] = kto_case(p, ref, torch.tensor([0, 1, 1, 0, 1, 0, 0, 1], dtype=torch.float32), pkl, rkl,
                                    {'beta': 0.5, 'desirableWeight': 1.33, 'undesirableWeight': 0.75})
    p, ref, pkl, rkl = kto_draw(g, 6)
    cases['kto/all-desirable'] = kto_case(p, ref, torch.ones(6, dtype=torch.bool), pkl, rkl, {'undesirableWeight': 2.0})
    p, ref, pkl, rkl = kto_draw(g, 6)
    cases['kto/all-undesirable'] = kto_case(p, ref, torch.zeros(6, dtype=torch.bool), pkl, rkl, {'desirableWeight': 3.0})
    p, ref, pkl, rkl = kto_draw(g, 8, kl_shift=-2.0)
    cases['kto/kl-negative'] = kto_case(p, ref, torch.tensor([1, 0, 0, 1, 1, 0, 1, 0], dtype=torch.bool), pkl, rkl)
    p, ref, _, _ = kto_draw(g, 8)
    cases['kto/kl-option'] = kto_case(p, ref, torch.tensor([1, 1, 0, 0, 1, 0, 1, 0], dtype=torch.bool), options={'kl': 0.7, 'beta': 0.3})
    p, ref, pkl, rkl = kto_draw(g, 8, b_kl=5)
    cases['kto/kl-length'] = kto_case(p, ref, torch.tensor([0, 0, 1, 0, 1, 1, 0, 0], dtype=torch.bool), pkl, rkl)
    p, ref, pkl, rkl = kto_draw(g, 8, kl_shift=3.0)
    rho = torch.tensor([-400.0, 350.0, 2.5, -1.5, 800.0, -900.0, 0.3, 20.0], dtype=torch.float64)
    ref = (p.detach() - rho).float().double().requires_grad_(True)
    cases['kto/extreme'] = kto_case(p, ref, torch.tensor([1, 0, 1, 0, 1, 0, 1, 0], dtype=torch.bool), pkl, rkl, {'beta': 1.0})

    write('preference_free_ref', cases)


if __name__ == '__main__':
    main()

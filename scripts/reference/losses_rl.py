#!/usr/bin/python3
"""PyTorch references of @posttrain/losses' online-RL functions (packages/losses/src/{kl,gae,ppo,grpo,rloo}.ts).

Run from the repository root with Debian's interpreter (it has torch):

    /usr/bin/python3 scripts/reference/losses_rl.py

Writes packages/losses/fixtures/rl_ref.json (format in losses_common.py), byte-identical on every
run. Every formula below is written from its paper and from TRL's trainers (the defaults and the
reductions), in float64 on float32-drawn inputs:

  k1, k2, k3      Schulman 2020, "Approximating KL Divergence": with log r = ref − policy,
                  k1 = −log r, k2 = (log r)²/2, k3 = (r − 1) − log r, elementwise.
  gae             Schulman et al. 2016, eq. 16, a reverse scan that skips masked steps: the value
                  after the last unmasked step is 0 (bootstrapping stops at the end of the response).
                  For contiguous masks this equals TRL's PPO scan on rewards·mask and values·mask
                  (checked below).
  ppoPolicyLoss   Schulman et al. 2017, eq. 7, as TRL's PPO trainer reduces it (masked token mean),
                  optional dual clip (Ye et al. 2020, eq. 5) for A < 0.
  ppoValueLoss    TRL's clipped value loss, 0.5 · masked mean of max((v − R)², (clip(v, old ± ε) − R)²).
  grpoAdvantages  Shao et al. 2024 (outcome supervision) with TRL's scale_rewards: per-group mean
                  subtracted, divided by (std + 1e-4), std with Bessel's correction (torch.std).
  grpoLoss        TRL GRPOTrainer._compute_loss: per-token clipped surrogate with ε_low / ε_high
                  (DAPO), + β·k3, reduced by loss_type 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo'; clip
                  ratios (low / high / region) and kl as TRL logs them. importance_sampling_level
                  'sequence' (GSPO, Zheng et al. 2025, arXiv 2507.18071): one log-weight per
                  completion, the masked mean of its token log-ratios, [B, 1]; the clipped term is
                  [B, 1], the β·k3 term [B, T] is added by broadcasting, the reductions are unchanged
                  (the mask broadcasts the [B, 1] term over T), and the clip ratios are means over
                  the B completions (TRL's global_masked_mean for a [B, 1] tensor).
  rlooAdvantages  Ahmadian et al. 2024: reward minus the mean of the other k − 1 of its group.
  rlooLoss        TRL RLOOTrainer._compute_loss: the ratio of the completions' summed log-probs,
                  exp(Σ m·logp − Σ m·old), clipped as PPO with ε_low / ε_high, −min(ρA, clip(ρ)A)
                  averaged over the B completions; clip ratios (low/high/region means, low min,
                  high max) over completions, as TRL logs them.

Masked positions may hold anything (TRL fills them with INVALID_LOGPROB = 1.0); the references
replace them by neutral values before any exp, as TRL's masked_fill does, and some cases put large
garbage there to check that nothing leaks. Gradients are of `loss` with respect to the inputs
that require grad (the policy log-probs, the values); the advantage functions have none.
"""
import math

import torch

from losses_common import case, draw, write

torch.set_default_dtype(torch.float64)
CASES = {}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def const(x):
    """A float64 tensor of float32-exact values that does not require grad (stored as float32)."""
    return torch.as_tensor(x, dtype=torch.float32).double()


def lengths_mask(lengths, T):
    return const([[1.0 if t < n else 0.0 for t in range(T)] for n in lengths])


def masked_mean(x, m):
    return (x * m).sum() / m.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# KL estimators
# ---------------------------------------------------------------------------------------------
def kl_estimators(logprobs, ref):
    log_r = ref - logprobs
    return {'k1': -log_r, 'k2': 0.5 * log_r ** 2, 'k3': torch.expm1(log_r) - log_r}


def kl_cases():
    g = gen(100)
    lp = draw([4, 7], g, std=1.0, mean=-2.0)
    ref = draw([4, 7], g, std=1.0, mean=-2.0)
    # extreme: log r up to ±20 (k3 ≈ e^20 ≈ 4.9e8 at +20), and tiny ones (|log r| ~ 1e-4, where
    # (r − 1) − log r cancels without expm1)
    g2 = gen(101)
    lp_x = (draw([2, 6], g2, std=3.0, mean=-5.0)).detach()
    diff = const([[20.0, -20.0, 15.5, -15.5, 1e-4, -1e-4], [7.0, -7.0, 3e-3, -3e-3, 0.0, 1.0]])
    ref_x = const((lp_x + diff).float()).requires_grad_(True)
    lp_x.requires_grad_(True)
    for fn in ('k1', 'k2', 'k3'):
        for name, (a, b) in {'random': (lp, ref), 'extreme': (lp_x, ref_x)}.items():
            kl = kl_estimators(a, b)[fn]
            CASES[f'{fn}_{name}'] = case(fn, {'logprobs': a, 'refLogprobs': b}, {'kl': kl, 'loss': kl.sum()})


# ---------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------
def gae_ref(rewards, values, mask, gamma, lam):
    B, T = rewards.shape
    keep = mask > 0
    r = torch.where(keep, rewards, torch.zeros_like(rewards))
    v = torch.where(keep, values, torch.zeros_like(values))
    adv = torch.zeros(B, T)
    next_value = torch.zeros(B)
    last = torch.zeros(B)
    for t in reversed(range(T)):
        k = keep[:, t]
        delta = r[:, t] + gamma * next_value - v[:, t]
        a = delta + gamma * lam * last
        adv[:, t] = torch.where(k, a, torch.zeros(B))
        last = torch.where(k, a, last)
        next_value = torch.where(k, v[:, t], next_value)
    returns = torch.where(keep, adv + v, torch.zeros_like(adv))
    return adv, returns


def gae_trl(rewards, values, mask, gamma, lam):
    """TRL's PPO scan (rewards and values zeroed where masked), for contiguous masks only."""
    r, v = rewards * mask, values * mask
    T = r.shape[1]
    last, out = 0.0, []
    for t in reversed(range(T)):
        nv = v[:, t + 1] if t < T - 1 else 0.0
        delta = r[:, t] + gamma * nv - v[:, t]
        last = delta + gamma * lam * last
        out.append(last)
    adv = torch.stack(out[::-1], 1)
    return adv * mask, (adv + v) * mask


def gae_case(name, seed, B, T, mask, options, contiguous):
    g = gen(seed)
    rewards = draw([B, T], g, std=0.5).detach()
    values = draw([B, T], g, std=1.0).detach()
    gamma = options.get('gamma', 1.0)
    lam = options.get('lambda', 0.95)
    adv, ret = gae_ref(rewards, values, mask, gamma, lam)
    if contiguous:
        a2, r2 = gae_trl(rewards, values, mask, gamma, lam)
        assert torch.allclose(adv, a2, atol=1e-12) and torch.allclose(ret, r2, atol=1e-12), name
    CASES[name] = case('gae', {'rewards': rewards, 'values': values, 'mask': mask}, {'advantages': adv, 'returns': ret}, options)


def gae_cases():
    # right-padded responses of different lengths (one full), TRL's defaults γ = 1, λ = 0.95
    gae_case('gae_defaults', 200, 3, 6, lengths_mask([6, 4, 1], 6), {}, True)
    # an all-masked row, a left-padded row, a row with a hole (a masked tool output mid-response)
    mask = const([[1, 1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 1, 1, 1, 0]])
    gae_case('gae_holes_all_masked', 201, 4, 9, mask, {'gamma': 0.99, 'lambda': 0.9}, False)
    gae_case('gae_long', 202, 2, 160, lengths_mask([160, 97], 160), {'gamma': 0.999, 'lambda': 0.97}, True)
    gae_case('gae_monte_carlo', 203, 2, 7, lengths_mask([7, 5], 7), {'gamma': 1.0, 'lambda': 1.0}, True)
    gae_case('gae_one_step', 204, 2, 5, lengths_mask([5, 3], 5), {'gamma': 0.0, 'lambda': 0.0}, True)


# ---------------------------------------------------------------------------------------------
# PPO
# ---------------------------------------------------------------------------------------------
def ppo_policy_ref(logprobs, old, advantages, mask, clip_range=0.2, dual_clip=None):
    keep = mask > 0
    log_ratio = torch.where(keep, logprobs - old, torch.zeros_like(logprobs))
    adv = torch.where(keep, advantages, torch.zeros_like(advantages))
    ratio = torch.exp(log_ratio)
    l1 = -adv * ratio
    l2 = -adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    clipped = torch.max(l1, l2)
    if dual_clip is not None:
        l3 = -adv * dual_clip
        per_token = torch.where(adv < 0, torch.min(clipped, l3), clipped)
        dual = ((adv < 0) & (l3 < clipped)).double()
    else:
        per_token = clipped
        dual = torch.zeros_like(clipped)
    n = mask.sum()
    big = torch.full_like(ratio, math.inf)
    out = {
        'loss': masked_mean(per_token, mask),
        'clipFraction': masked_mean((l2 > l1).double(), mask),
        'dualClipFraction': masked_mean(dual, mask),
        'approxKl': 0.5 * masked_mean(log_ratio ** 2, mask),
        'ratioMean': masked_mean(ratio, mask),
        'ratioMin': torch.where(n > 0, torch.where(keep, ratio, big).min(), torch.tensor(0.0)),
        'ratioMax': torch.where(n > 0, torch.where(keep, ratio, -big).max(), torch.tensor(0.0)),
    }
    return out


def ppo_policy_case(name, seed, B, T, mask, spread, options, garbage=False, diffs=None):
    g = gen(seed)
    old = draw([B, T], g, std=1.0, mean=-3.0).detach()
    if diffs is None:
        diffs = draw([B, T], g, std=spread).detach()
    logprobs = const((old + diffs).float())
    if garbage:  # masked positions: huge log-ratios and advantages that must not leak
        logprobs = torch.where(mask > 0, logprobs, const(torch.full([B, T], 300.0)))
    logprobs.requires_grad_(True)
    advantages = draw([B, T], g, std=1.0).detach()
    if garbage:
        advantages = torch.where(mask > 0, advantages, const(torch.full([B, T], -1e30)))
    out = ppo_policy_ref(logprobs, old, advantages, mask, options.get('clipRange', 0.2), options.get('dualClip'))
    CASES[name] = case('ppoPolicyLoss', {'logprobs': logprobs, 'oldLogprobs': old, 'advantages': advantages, 'mask': mask}, out, options)


def ppo_value_ref(values, old, returns, mask, clip_range_value=0.2):
    keep = mask > 0
    zeros = torch.zeros_like(values)
    v, o, r = (torch.where(keep, x, zeros) for x in (values, old, returns))
    clipped = torch.max(torch.min(v, o + clip_range_value), o - clip_range_value)  # clamp(v, o − ε, o + ε)
    l1 = (v - r) ** 2
    l2 = (clipped - r) ** 2
    return {'loss': 0.5 * masked_mean(torch.max(l1, l2), mask), 'clipFraction': masked_mean((l2 > l1).double(), mask)}


def ppo_value_case(name, seed, B, T, mask, spread, options, garbage=False):
    g = gen(seed)
    old = draw([B, T], g, std=1.0).detach()
    values = const((old + draw([B, T], g, std=spread).detach()).float())
    returns = draw([B, T], g, std=1.5).detach()
    if garbage:
        values = torch.where(mask > 0, values, const(torch.full([B, T], 1e30)))
    values.requires_grad_(True)
    out = ppo_value_ref(values, old, returns, mask, options.get('clipRangeValue', 0.2))
    CASES[name] = case('ppoValueLoss', {'values': values, 'oldValues': old, 'returns': returns, 'mask': mask}, out, options)


def ppo_cases():
    m = lengths_mask([8, 5, 0, 2], 8)  # row 2 all masked
    ppo_policy_case('ppo_policy_defaults', 300, 4, 8, m, 0.3, {})
    ppo_policy_case('ppo_policy_masked_garbage', 301, 3, 6, lengths_mask([6, 3, 0], 6), 0.4, {'clipRange': 0.1}, garbage=True)
    diffs = const([[20.0, -20.0, 20.0, -20.0, 0.05, -0.05], [-20.0, 20.0, 12.0, -12.0, 0.3, -0.3]])
    ppo_policy_case('ppo_policy_extreme', 302, 2, 6, lengths_mask([6, 6], 6), 0.0, {'clipRange': 0.2}, diffs=diffs)
    ppo_policy_case('ppo_policy_dual_clip', 303, 4, 10, lengths_mask([10, 7, 10, 4], 10), 1.2, {'clipRange': 0.2, 'dualClip': 3.0})
    ppo_policy_case('ppo_policy_long', 304, 2, 128, lengths_mask([128, 77], 128), 0.2, {'clipRange': 0.3})
    ppo_policy_case('ppo_policy_all_masked', 305, 2, 4, lengths_mask([0, 0], 4), 0.5, {})
    ppo_value_case('ppo_value_defaults', 310, 4, 8, m, 0.3, {})
    ppo_value_case('ppo_value_masked_garbage', 311, 3, 6, lengths_mask([6, 2, 0], 6), 1.0, {'clipRangeValue': 0.5}, garbage=True)
    ppo_value_case('ppo_value_extreme', 312, 2, 6, lengths_mask([6, 5], 6), 20.0, {'clipRangeValue': 0.2})
    ppo_value_case('ppo_value_long', 313, 2, 128, lengths_mask([128, 50], 128), 0.3, {'clipRangeValue': 0.1})


# ---------------------------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------------------------
def grpo_advantages_ref(rewards, group_size=8, scale='group', epsilon=1e-4):
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(1).repeat_interleave(group_size)
    if scale in ('group', 'none'):
        std = grouped.std(1).repeat_interleave(group_size)  # Bessel's correction, as torch.std
    else:
        std = rewards.std().expand_as(rewards)
    adv = rewards - mean
    if scale != 'none':
        adv = adv / (std + epsilon)
    return {'advantages': adv, 'mean': mean, 'std': std}


def grpo_advantages_case(name, rewards, options):
    out = grpo_advantages_ref(rewards, **{'group_size': options.get('groupSize', 8), 'scale': options.get('scale', 'group'), 'epsilon': options.get('epsilon', 1e-4)})
    CASES[name] = case('grpoAdvantages', {'rewards': rewards}, out, options)


def grpo_loss_ref(logprobs, old, ref, advantages, mask, epsilon_low=0.2, epsilon_high=0.2, beta=0.0, normalization='dapo', max_completion_length=256, importance_sampling_level='token'):
    keep = mask > 0
    zeros = torch.zeros_like(logprobs)
    if old is None:
        old = logprobs.detach()
    log_ratio = torch.where(keep, logprobs - old, zeros)
    if importance_sampling_level == 'sequence':
        log_weight = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)  # [B, 1]
    else:
        log_weight = log_ratio  # [B, T]
    ratio = torch.exp(log_weight)
    A = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * A, torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * A)
    out = {}
    if beta != 0.0:
        d = torch.where(keep, ref - logprobs, zeros)
        kl = torch.expm1(d) - d
        per_token = per_token + beta * kl
        out['kl'] = masked_mean(kl, mask)
    B = logprobs.shape[0]
    if normalization == 'grpo':
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif normalization in ('bnpo', 'dapo'):
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    elif normalization == 'dr_grpo':
        loss = (per_token * mask).sum() / (B * max_completion_length)
    low = (ratio < 1 - epsilon_low) & (A < 0)
    high = (ratio > 1 + epsilon_high) & (A > 0)
    if importance_sampling_level == 'sequence':
        clip_mean = lambda x: x.double().mean()  # noqa: E731  (over the B completions, all of them)
    else:
        clip_mean = lambda x: masked_mean(x.double(), mask)  # noqa: E731
    out.update({'loss': loss, 'clipRatioLow': clip_mean(low), 'clipRatioHigh': clip_mean(high), 'clipRatio': clip_mean(low | high)})
    return out


def grpo_loss_case(name, seed, B, T, mask, spread, options, with_old=True, diffs=None, ref_diffs=None):
    g = gen(seed)
    base = draw([B, T], g, std=1.0, mean=-2.5).detach()
    if diffs is None:
        diffs = draw([B, T], g, std=spread).detach()
    logprobs = const((base + diffs).float()).requires_grad_(True)
    rewards = draw([B], g, std=1.0).detach()
    advantages = const(grpo_advantages_ref(rewards, group_size=B // 2 if B % 2 == 0 and B > 2 else B)['advantages'].float())
    inputs = {'logprobs': logprobs}
    old = base if with_old else None
    if with_old:
        inputs['oldLogprobs'] = base
    ref = None
    if options.get('beta', 0.0) > 0:
        if ref_diffs is None:
            ref_diffs = draw([B, T], g, std=0.5).detach()
        ref = const((logprobs.detach() + ref_diffs).float())
        inputs['refLogprobs'] = ref
    inputs['advantages'] = advantages
    inputs['mask'] = mask
    keys = {'epsilonLow': 'epsilon_low', 'epsilonHigh': 'epsilon_high', 'beta': 'beta', 'normalization': 'normalization', 'maxCompletionLength': 'max_completion_length', 'importanceSamplingLevel': 'importance_sampling_level'}
    out = grpo_loss_ref(logprobs, old, ref, advantages, mask, **{keys[k]: v for k, v in options.items()})
    CASES[name] = case('grpoLoss', inputs, out, options)


def grpo_cases():
    g = gen(400)
    grpo_advantages_case('grpo_adv_group', draw([12], g).detach(), {'groupSize': 4})
    grpo_advantages_case('grpo_adv_batch', draw([9], g, std=2.0).detach(), {'groupSize': 3, 'scale': 'batch'})
    grpo_advantages_case('grpo_adv_none', draw([8], g).detach(), {'groupSize': 2, 'scale': 'none'})
    # binary rewards with TRL's 8 generations: one group all right, one all wrong (std 0 → 0), mixed ones;
    # and a constant group of 0.3 (not exact in binary), whose advantages must still be exactly 0
    binary = const([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    grpo_advantages_case('grpo_adv_binary_defaults', binary, {})
    grpo_advantages_case('grpo_adv_large_epsilon', draw([6], g, mean=100.0).detach(), {'groupSize': 3, 'epsilon': 0.5})

    m = lengths_mask([10, 7, 0, 3, 10, 1], 10)  # row 2 all masked
    for i, norm in enumerate(('grpo', 'bnpo', 'dr_grpo', 'dapo')):
        grpo_loss_case(f'grpo_loss_{norm}', 410 + i, 6, 10, m, 0.3, {'normalization': norm, 'epsilonLow': 0.2, 'epsilonHigh': 0.28, 'maxCompletionLength': 16})
    grpo_loss_case('grpo_loss_beta_grpo', 420, 6, 10, m, 0.3, {'normalization': 'grpo', 'beta': 0.04})
    grpo_loss_case('grpo_loss_beta_dr_grpo', 421, 4, 12, lengths_mask([12, 5, 9, 0], 12), 0.3, {'normalization': 'dr_grpo', 'beta': 0.1, 'maxCompletionLength': 12})
    grpo_loss_case('grpo_loss_defaults', 422, 4, 8, lengths_mask([8, 6, 4, 2], 8), 0.2, {})
    grpo_loss_case('grpo_loss_on_policy', 423, 4, 8, lengths_mask([8, 6, 0, 2], 8), 0.0, {'normalization': 'grpo', 'beta': 0.04}, with_old=False)
    diffs = const([[20.0, -20.0, 20.0, -20.0, 0.1, -0.1], [-20.0, 20.0, 10.0, -10.0, 0.25, -0.25], [20.0, -20.0, 0.0, 0.0, 0.0, 0.0], [-20.0, 20.0, 0.2, 0.2, -0.2, -0.2]])
    ref_diffs = const([[20.0, -20.0, 1.0, -1.0, 0.0, 0.0], [-20.0, 20.0, 0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [5.0, -5.0, 0.0, 0.0, 0.0, 0.0]])
    grpo_loss_case('grpo_loss_extreme', 424, 4, 6, lengths_mask([6, 6, 2, 6], 6), 0.0, {'normalization': 'bnpo', 'epsilonLow': 0.2, 'epsilonHigh': 0.28, 'beta': 0.04}, diffs=diffs, ref_diffs=ref_diffs)
    grpo_loss_case('grpo_loss_long', 425, 4, 96, lengths_mask([96, 40, 71, 5], 96), 0.2, {'normalization': 'grpo', 'epsilonHigh': 0.28, 'maxCompletionLength': 128})

    # GSPO (importance_sampling_level='sequence'): every loss_type, with and without oldLogprobs, β > 0.
    # spread 0.6 per token and ε 0.05 / 0.08 so that some completions' mean log-ratios clip on each side.
    seq = {'importanceSamplingLevel': 'sequence'}
    for i, norm in enumerate(('grpo', 'bnpo', 'dr_grpo', 'dapo')):
        grpo_loss_case(f'gspo_loss_{norm}', 430 + i, 6, 10, m, 0.6, {**seq, 'normalization': norm, 'epsilonLow': 0.05, 'epsilonHigh': 0.08, 'maxCompletionLength': 16})
    for i, norm in enumerate(('grpo', 'bnpo', 'dr_grpo', 'dapo')):
        grpo_loss_case(f'gspo_loss_beta_{norm}', 434 + i, 6, 10, m, 0.6, {**seq, 'normalization': norm, 'beta': 0.04, 'epsilonLow': 0.05, 'epsilonHigh': 0.08, 'maxCompletionLength': 12})
    grpo_loss_case('gspo_loss_on_policy', 438, 4, 8, lengths_mask([8, 6, 0, 2], 8), 0.0, {**seq, 'normalization': 'grpo', 'beta': 0.04}, with_old=False)
    grpo_loss_case('gspo_loss_on_policy_dapo', 439, 4, 8, lengths_mask([8, 6, 0, 2], 8), 0.0, {**seq}, with_old=False)
    grpo_loss_case('gspo_loss_paper_clip', 440, 8, 16, lengths_mask([16, 12, 9, 16, 3, 1, 14, 16], 16), 0.002, {**seq, 'normalization': 'grpo', 'epsilonLow': 3e-4, 'epsilonHigh': 4e-4})
    # mean log-ratios of +20, −20, +15 (garbage 1e4 under the mask) and +2.5, with ±20 KL terms
    seq_diffs = const([[20.0, 20.0, 20.0, 20.0, 20.0, 20.0], [-20.0, -20.0, -20.0, -20.0, -20.0, -20.0], [10.0, 20.0, 1e4, -1e4, 1e4, -1e4], [-20.0, 20.0, 5.0, 5.0, -5.0, 10.0]])
    grpo_loss_case('gspo_loss_extreme', 441, 4, 6, lengths_mask([6, 6, 2, 6], 6), 0.0, {**seq, 'normalization': 'dapo', 'epsilonLow': 0.2, 'epsilonHigh': 0.28, 'beta': 0.04}, diffs=seq_diffs, ref_diffs=ref_diffs)
    grpo_loss_case('gspo_loss_long', 442, 4, 96, lengths_mask([96, 40, 71, 5], 96), 0.2, {**seq, 'normalization': 'grpo', 'epsilonLow': 0.01, 'epsilonHigh': 0.01})


# ---------------------------------------------------------------------------------------------
# RLOO
# ---------------------------------------------------------------------------------------------
def rloo_ref(rewards, group_size=2):
    grouped = rewards.view(-1, group_size)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (group_size - 1)
    return {'advantages': (grouped - baseline).reshape(-1), 'baseline': baseline.reshape(-1)}


def rloo_cases():
    g = gen(500)
    for name, rewards, options in (
        ('rloo_k4', draw([12], g).detach(), {'groupSize': 4}),
        ('rloo_defaults', draw([6], g, std=3.0).detach(), {}),
        ('rloo_binary_k8', const([1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]), {'groupSize': 8}),
        ('rloo_large_k3', draw([9], g, std=5.0, mean=50.0).detach(), {'groupSize': 3}),
    ):
        CASES[name] = case('rlooAdvantages', {'rewards': rewards}, rloo_ref(rewards, options.get('groupSize', 2)), options)


def rloo_loss_ref(logprobs, old, advantages, mask, epsilon_low=0.2, epsilon_high=0.2):
    keep = mask > 0
    zeros = torch.zeros_like(logprobs)
    if old is None:
        old = logprobs.detach()
    log_ratio = torch.where(keep, logprobs - old, zeros).sum(-1)  # (Σ m·logp) − (Σ m·old), [B]
    ratio = torch.exp(log_ratio)
    loss = (-torch.min(ratio * advantages, torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * advantages)).mean()
    low = ((ratio < 1 - epsilon_low) & (advantages < 0)).double()
    high = ((ratio > 1 + epsilon_high) & (advantages > 0)).double()
    return {'loss': loss, 'clipRatioLow': low.mean(), 'clipRatioLowMin': low.min(), 'clipRatioHigh': high.mean(), 'clipRatioHighMax': high.max(), 'clipRatio': (low + high).clamp(max=1.0).mean()}


def rloo_loss_case(name, seed, B, T, mask, spread, options, with_old=True, diffs=None, garbage=False, advantages=None):
    g = gen(seed)
    base = draw([B, T], g, std=1.0, mean=-2.5).detach()
    if diffs is None:
        diffs = draw([B, T], g, std=spread).detach()
    logprobs = const((base + diffs).float())
    if garbage:  # huge values under the mask must not reach the sums
        logprobs = torch.where(mask > 0, logprobs, const(torch.full([B, T], 1e4)))
    logprobs.requires_grad_(True)
    if advantages is None:
        advantages = const(rloo_ref(draw([B], g, std=1.0).detach(), 2)['advantages'].float())
    inputs = {'logprobs': logprobs}
    if with_old:
        inputs['oldLogprobs'] = base
    inputs['advantages'] = advantages
    inputs['mask'] = mask
    keys = {'epsilonLow': 'epsilon_low', 'epsilonHigh': 'epsilon_high'}
    out = rloo_loss_ref(logprobs, base if with_old else None, advantages, mask, **{keys[k]: v for k, v in options.items()})
    CASES[name] = case('rlooLoss', inputs, out, options)


def rloo_loss_cases():
    m = lengths_mask([10, 7, 0, 3, 10, 1], 10)  # row 2 all masked
    rloo_loss_case('rloo_loss_defaults', 510, 6, 10, m, 0.1, {})
    rloo_loss_case('rloo_loss_clip_higher', 511, 8, 6, lengths_mask([6, 5, 4, 6, 2, 6, 3, 1], 6), 0.15, {'epsilonLow': 0.2, 'epsilonHigh': 0.28}, garbage=True)
    rloo_loss_case('rloo_loss_on_policy', 512, 4, 8, lengths_mask([8, 6, 0, 2], 8), 0.0, {}, with_old=False)
    # summed log-ratios of +3 (A > 0: clipped high; A < 0: unclipped), −3 (A < 0: clipped low; A > 0: unclipped),
    # ±0.1 inside the clip range, and +30 with A < 0 (an unclipped ratio of e^30)
    diffs = const([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0], [-1.0, -1.0, -1.0, 0.0], [-1.0, -1.0, -1.0, 0.0], [0.05, 0.05, 0.0, 0.0], [-0.05, -0.05, 0.0, 0.0], [10.0, 10.0, 10.0, 5.0]])
    advantages = const([1.5, -0.5, -2.0, 0.25, 1.0, -1.0, -0.001])
    rloo_loss_case('rloo_loss_extreme', 513, 7, 4, lengths_mask([3, 3, 3, 3, 2, 2, 3], 4), 0.0, {'epsilonLow': 0.2, 'epsilonHigh': 0.2}, diffs=diffs, advantages=advantages)
    rloo_loss_case('rloo_loss_long', 514, 4, 96, lengths_mask([96, 40, 71, 5], 96), 0.01, {'epsilonHigh': 0.28})


if __name__ == '__main__':
    kl_cases()
    gae_cases()
    ppo_cases()
    grpo_cases()
    rloo_cases()
    rloo_loss_cases()
    write('rl_ref', CASES)

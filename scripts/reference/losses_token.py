#!/usr/bin/python3
"""PyTorch references of @posttrain/losses' token-level functions and the Bradley-Terry loss.

Run from the repository root with Debian's interpreter, which has torch:

    /usr/bin/python3 scripts/reference/losses_token.py

Writes packages/losses/fixtures/token_ref.json (format: scripts/reference/losses_common.py), read by
packages/losses/src/{token-logprobs,masked,causal-lm-loss,reward}.test.ts. Every input is drawn in
float32 and every reference is computed in float64 from exactly those values.

Functions without a loss of their own (tokenLogprobs, sequenceLogprobs, entropyFromLogits,
maskedMean, maskedWhiten) get a scalar `loss` = Σ weights ⊙ output, with random `weights` stored as
an input that needs no gradient: its gradient is the full vector-Jacobian product with random
cotangents, so every element of d output / d input is checked.

The references are written here from the formulas (TRL's for masked_mean / masked_var /
masked_whiten and RewardTrainer.compute_loss; log-softmax and entropy from their definitions):
  token log-prob   log p(y) = x_y − logsumexp(x); 0 where the label is the ignore index
  sequence         Σ_{t ≥ 1} keep[t] · log p(labels[t] | logits[t − 1]); keep = mask[t] > 0 and
                   labels[t] ≠ ignoreIndex; average divides by max(Σ keep, 1)
  causal LM        −Σ keep · log p over logits[:, :-1] against labels[:, 1:]; mean divides by
                   max(tokens, 1); correctSum counts argmax hits; entropySum sums the entropy
  entropy          −Σ p log p with 0 · log 0 = 0
  masked mean      Σ x·m / max(Σ m, 1) over all elements or one axis
  masked whiten    (x − μ) · rsqrt(σ² + 1e-8), σ² with Bessel's correction n/(n − 1) (n ≥ 2; 1
                   otherwise), + μ again when shiftMean is false; masked-out positions are 0
  Bradley-Terry    softplus(−(r_c − r_r − margin)) + c · (r_c + r_r)², loss = mean; accuracy =
                   mean(r_c > r_r); margin = r_c − r_r
"""
import torch

from losses_common import case, draw, write

IGNORE = -100


# ----------------------------------------------------------------------------------------- formulas

def token_logprobs(logits, labels, ignore=IGNORE):
    keep = labels != ignore
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    picked = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return torch.where(keep, picked, torch.zeros_like(picked))


def sequence_logprobs(logits, labels, mask, average, ignore=IGNORE):
    target = labels[:, 1:]
    keep = (mask[:, 1:] > 0) & (target != ignore)
    per_token = token_logprobs(logits[:, :-1], torch.where(keep, target, torch.full_like(target, ignore)), ignore)
    logps = per_token.sum(-1)
    tokens = keep.sum(-1).double()
    if average:
        logps = logps / tokens.clamp(min=1)
    return logps, tokens


def entropy(logits):
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
    return -plogp.sum(-1)


def causal_lm(logits, labels, reduction, ignore=IGNORE):
    target = labels[:, 1:]
    keep = target != ignore
    shifted = logits[:, :-1]
    loss_sum = -token_logprobs(shifted, target, ignore).sum()
    tokens = keep.sum().double()
    # Every counted argmax is unique in float32, so no backend's tie-breaking matters.
    top2 = shifted.detach().float()[keep].topk(2, dim=-1).values if bool(keep.any()) else torch.zeros(0, 2)
    assert bool((top2[:, 0] > top2[:, 1]).all()), 'tied argmax at a counted position'
    correct = ((shifted.argmax(-1) == target) & keep).sum().double()
    entropy_sum = torch.where(keep, entropy(shifted), torch.zeros(keep.shape, dtype=torch.float64)).sum()
    loss = loss_sum / tokens.clamp(min=1) if reduction == 'mean' else loss_sum
    return {'loss': loss, 'lossSum': loss_sum, 'tokens': tokens, 'correctSum': correct, 'entropySum': entropy_sum}


def masked_mean(x, mask, axis=None):
    if axis is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(axis) / mask.sum(axis).clamp(min=1)


def masked_whiten(x, mask, shift_mean=True):
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    var = var * (n / (n - 1) if float(n) >= 2 else 1.0)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask > 0, whitened, torch.zeros_like(whitened))


def bradley_terry(chosen, rejected, margin=None, center=0.0):
    diff = chosen - rejected
    losses = torch.nn.functional.softplus(-(diff - margin if margin is not None else diff))
    losses = losses + center * (chosen + rejected) ** 2
    return {'loss': losses.mean(), 'losses': losses, 'accuracy': (chosen > rejected).double().mean(), 'margin': diff}


# ------------------------------------------------------------------------------------------- inputs

def gen(seed):
    return torch.Generator().manual_seed(seed)


def weights(shape, g):
    """Random cotangents for the harness loss Σ weights ⊙ output (no gradient of their own)."""
    return draw(shape, g).detach()


def labels_for(logits, g, p_argmax=0.5):
    """Labels [B, T] where label t is the argmax of logits[:, t − 1] with probability p_argmax (so
    correctSum is not just 0), else uniform; label 0 is uniform."""
    B, T, V = logits.shape
    labels = torch.randint(0, V, (B, T), generator=g)
    pick = torch.rand(B, T, generator=g) < p_argmax
    labels[:, 1:] = torch.where(pick[:, 1:], logits[:, :-1].detach().argmax(-1), labels[:, 1:])
    return labels.to(torch.int32)


def prefix(B, T, lengths):
    """[B, T] bool, True on each row's first lengths[b] positions."""
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def extreme_logits(g, B, T, V, peak):
    """N(0, 25²) clipped to ±(peak − 1), with one +peak and one −peak entry per position; returns the
    logits and the indices of both entries."""
    x = (torch.randn(B, T, V, generator=g, dtype=torch.float32) * 25).clamp(-(peak - 1), peak - 1)
    hi = torch.randint(0, V, (B, T), generator=g)
    lo = (hi + 1 + torch.randint(0, V - 1, (B, T), generator=g)) % V
    x.scatter_(2, hi[..., None], peak)
    x.scatter_(2, lo[..., None], -peak)
    return x.double().requires_grad_(True), hi, lo


# -------------------------------------------------------------------------------------------- cases

def token_case(logits, labels, g, options=None):
    w = weights(labels.shape, g)
    logps = token_logprobs(logits, labels.long(), (options or {}).get('ignoreIndex', IGNORE))
    return case('tokenLogprobs', {'logits': logits, 'labels': labels, 'weights': w}, {'logps': logps, 'loss': (w * logps).sum()}, options)


def sequence_case(logits, labels, mask, g, average, options=None):
    w = weights(labels.shape[:1], g)
    logps, tokens = sequence_logprobs(logits, labels.long(), mask, average, (options or {}).get('ignoreIndex', IGNORE))
    return case('sequenceLogprobs', {'logits': logits, 'labels': labels, 'mask': mask, 'weights': w},
                {'logps': logps, 'tokens': tokens, 'loss': (w * logps).sum()}, {'average': average, **(options or {})})


def causal_case(logits, labels, reduction, options=None):
    ignore = (options or {}).get('ignoreIndex', IGNORE)
    return case('causalLmLoss', {'logits': logits, 'labels': labels}, causal_lm(logits, labels.long(), reduction, ignore), {'reduction': reduction, **(options or {})})


def entropy_case(logits, g):
    w = weights(logits.shape[:-1], g)
    h = entropy(logits)
    return case('entropyFromLogits', {'logits': logits, 'weights': w}, {'entropy': h, 'loss': (w * h).sum()})


def masked_mean_case(x, mask, g, axis=None):
    out = masked_mean(x, mask, axis)
    w = weights(out.shape, g)
    return case('maskedMean', {'x': x, 'mask': mask, 'weights': w}, {'mean': out, 'loss': (w * out).sum()}, {} if axis is None else {'axis': axis})


def masked_whiten_case(x, mask, g, shift_mean):
    out = masked_whiten(x, mask, shift_mean)
    w = weights(out.shape, g)
    return case('maskedWhiten', {'x': x, 'mask': mask, 'weights': w}, {'whitened': out, 'loss': (w * out).sum()}, {'shiftMean': shift_mean})


def bt_case(chosen, rejected, margin=None, center=None):
    inputs = {'chosenScores': chosen, 'rejectedScores': rejected}
    options = {}
    if margin is not None:
        inputs['margin'] = margin  # passed as the `margin` option by the test
    if center is not None:
        options['centerCoefficient'] = center
    return case('bradleyTerryLoss', inputs, bradley_terry(chosen, rejected, margin, center or 0.0), options)


def main():
    cases = {}

    # tokenLogprobs ---------------------------------------------------------------------------------
    g = gen(11)
    logits = draw((3, 7, 11), g, std=2.0)
    labels = labels_for(logits, g)
    labels[prefix(3, 7, [2, 0, 3])] = IGNORE
    labels[1, 5] = IGNORE
    cases['token_basic'] = token_case(logits, labels, g)

    g = gen(12)
    logits = draw((3, 5, 9), g, std=2.0)
    labels = labels_for(logits, g)
    labels[1] = IGNORE
    cases['token_all_masked_row'] = token_case(logits, labels, g)

    g = gen(13)
    logits, hi, lo = extreme_logits(g, 2, 4, 40, 100.0)
    labels = torch.where(torch.arange(4)[None, :] % 2 == 0, hi, lo).to(torch.int32)  # log p ≈ 0 and ≈ −200
    cases['token_extreme'] = token_case(logits, labels, g)

    g = gen(14)
    logits = draw((1, 1, 3000), g, std=3.0)
    labels = torch.randint(0, 3000, (1, 1), generator=g).to(torch.int32)
    cases['token_long_vocab'] = token_case(logits, labels, g)

    g = gen(15)
    logits = draw((2, 4, 6), g, std=2.0)
    labels = labels_for(logits, g)
    labels[0, 1] = -1
    labels[1, 3] = -1
    cases['token_ignore_index'] = token_case(logits, labels, g, {'ignoreIndex': -1})

    # sequenceLogprobs -------------------------------------------------------------------------------
    g = gen(21)
    B, T, V = 4, 9, 13
    logits = draw((B, T, V), g, std=2.0)
    labels = labels_for(logits, g)
    mask = (~prefix(B, T, [3, 2, 4, 9])).double()  # completion after the prompt; row 3 all masked
    mask[0, 7:] = 0  # right padding
    mask[2, 8] = 0
    labels[2, 6] = IGNORE  # an ignored label inside a completion: not counted either
    cases['sequence_sum'] = sequence_case(logits, labels, mask, g, average=False)
    cases['sequence_average'] = sequence_case(logits, labels, mask, g, average=True)

    g = gen(22)
    logits, hi, lo = extreme_logits(g, 2, 6, 30, 100.0)
    labels = torch.where(torch.arange(6)[None, :] % 2 == 0, lo.roll(1, dims=1), hi.roll(1, dims=1)).to(torch.int32)
    mask = (~prefix(2, 6, [1, 2])).double()
    cases['sequence_extreme'] = sequence_case(logits, labels, mask, g, average=False)

    g = gen(23)
    B, T, V = 2, 48, 8
    logits = draw((B, T, V), g, std=1.5)
    labels = labels_for(logits, g)
    mask = (~prefix(B, T, [10, 25])).double()
    mask[1, 50:] = 0
    cases['sequence_long'] = sequence_case(logits, labels, mask, g, average=True)

    # causalLmLoss (the cases sft_ref.py had when the loss lived in @posttrain/sft, both reductions) ------------------------
    g = gen(31)
    B, T, V = 3, 7, 11
    logits = draw((B, T, V), g, std=2.0)
    labels = labels_for(logits, g)
    masked = prefix(B, T, [2, 3, 1])
    masked[2, 4] = True
    labels[masked] = IGNORE
    cases['causal_basic_sum'] = causal_case(logits, labels, 'sum')
    cases['causal_basic_mean'] = causal_case(logits, labels, 'mean')

    g = gen(32)
    B, T, V = 3, 6, 13
    logits = draw((B, T, V), g, std=2.0)
    labels = labels_for(logits, g)
    labels[prefix(B, T, [1, T, 2])] = IGNORE  # row 1 is ignored throughout
    cases['causal_all_masked_row'] = causal_case(logits, labels, 'mean')

    for name, seed, peak in (('causal_extreme', 33, 80.0), ('causal_beyond_exp_range', 34, 100.0)):
        g = gen(seed)
        logits, hi, lo = extreme_logits(g, 2, 6, 50, peak)
        labels = torch.where(torch.arange(6)[None, :] % 2 == 0, lo.roll(1, dims=1), hi.roll(1, dims=1)).to(torch.int32)
        labels[prefix(2, 6, [1, 2])] = IGNORE
        cases[name] = causal_case(logits, labels, 'mean')

    g = gen(35)
    logits = draw((1, 2, 1200), g, std=2.0)
    labels = torch.tensor([[IGNORE, int(torch.randint(0, 1200, (1,), generator=g))]], dtype=torch.int32)
    cases['causal_long_vocab'] = causal_case(logits, labels, 'sum')

    g = gen(36)
    logits = draw((2, 5, 7), g, std=2.0)
    labels = labels_for(logits, g)
    labels[:, 0] = 0
    labels[1, 2] = 0  # with ignoreIndex 0, every position labelled 0 (by chance too) is skipped
    cases['causal_ignore_index'] = causal_case(logits, labels, 'mean', {'ignoreIndex': 0})

    g = gen(37)
    logits = draw((2, 3, 5), g, std=2.0)
    cases['causal_no_tokens'] = causal_case(logits, torch.full((2, 3), IGNORE, dtype=torch.int32), 'mean')

    # entropyFromLogits -------------------------------------------------------------------------------
    g = gen(41)
    cases['entropy_basic'] = entropy_case(draw((3, 5, 17), g, std=3.0), g)

    g = gen(42)
    logits, _, _ = extreme_logits(g, 2, 3, 20, 100.0)
    with torch.no_grad():
        logits[1, 2] = 0.0  # a uniform row: ties everywhere, entropy log V
        logits[0, 1, :10] = 100.0  # ten tied maxima
    cases['entropy_extreme'] = entropy_case(logits, g)

    g = gen(43)
    cases['entropy_rank2_long_vocab'] = entropy_case(draw((1, 1000), g, std=2.0), g)

    g = gen(44)
    cases['entropy_rank1'] = entropy_case(draw((6,), g, std=1.0), g)

    # maskedMean ----------------------------------------------------------------------------------------
    g = gen(51)
    x = draw((4, 6), g, std=2.0, mean=1.0)
    mask = (torch.rand(4, 6, generator=g) < 0.6).double()
    mask[2] = 0  # an all-masked row
    mask[0, 0] = 1
    cases['masked_mean_all'] = masked_mean_case(x, mask, g)
    cases['masked_mean_axis1'] = masked_mean_case(x, mask, g, axis=1)
    cases['masked_mean_axis0'] = masked_mean_case(x, mask, g, axis=0)

    g = gen(52)
    x = draw((2, 3, 5), g, std=50.0)
    mask = (torch.rand(2, 3, 5, generator=g) < 0.5).double()
    mask[1, 1] = 0
    cases['masked_mean_axis_neg1'] = masked_mean_case(x, mask, g, axis=-1)

    # maskedWhiten --------------------------------------------------------------------------------------
    g = gen(61)
    x = draw((4, 8), g, std=2.0, mean=3.0)
    mask = (~prefix(4, 8, [2, 8, 0, 5])).double()  # row 1 all masked
    mask[3, 7] = 0
    cases['masked_whiten_shift'] = masked_whiten_case(x, mask, g, shift_mean=True)
    cases['masked_whiten_no_shift'] = masked_whiten_case(x, mask, g, shift_mean=False)

    g = gen(62)
    x = draw((3, 40), g, std=30.0, mean=-10.0)
    mask = (torch.rand(3, 40, generator=g) < 0.7).double()
    cases['masked_whiten_long'] = masked_whiten_case(x, mask, g, shift_mean=True)

    # bradleyTerryLoss ----------------------------------------------------------------------------------
    g = gen(71)
    chosen, rejected = draw((8,), g, std=2.0), draw((8,), g, std=2.0)
    cases['bt_basic'] = bt_case(chosen, rejected)
    margin = draw((8,), g).detach().abs()
    cases['bt_margin'] = bt_case(chosen, rejected, margin=margin)
    cases['bt_center'] = bt_case(chosen, rejected, center=0.01)
    cases['bt_margin_center'] = bt_case(chosen, rejected, margin=margin, center=0.5)

    g = gen(72)
    c32 = torch.tensor([60.0, -60.0, 3.5, 0.25, -2.0, 80.0], dtype=torch.float32)
    r32 = torch.tensor([-40.0, 45.0, 3.5, 0.25, 1.0, -20.0], dtype=torch.float32)  # ties at 2 and 3
    chosen, rejected = c32.double().requires_grad_(True), r32.double().requires_grad_(True)
    cases['bt_extreme_and_ties'] = bt_case(chosen, rejected, margin=torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0, 0.0], dtype=torch.float64), center=0.001)

    write('token_ref', cases)


if __name__ == '__main__':
    main()

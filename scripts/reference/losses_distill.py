#!/usr/bin/python3
"""PyTorch references for the distillation and continual-learning losses of @posttrain/losses
(packages/losses/src/distill.ts and ewc.ts).

Run from the repository root with Debian's interpreter, which has torch:

    /usr/bin/python3 scripts/reference/losses_distill.py

Writes packages/losses/fixtures/distill_ref.json (byte-identical on every run), read by
packages/losses/src/distill.test.ts and ewc.test.ts. Format and helpers:
scripts/reference/losses_common.py.

Every formula is written here from its paper, in float64, on the float32 inputs exactly as stored.
With p_t = softmax(teacher / T), p_s = softmax(student / T) over the vocabulary and
s = T² (1 when scaleByTemperatureSquared is false), per token:

  forwardKl       s · KL(p_t ‖ p_s) = s · Σ_v p_t (log p_t − log p_s)      Hinton et al. 2015, §2
  reverseKl       s · KL(p_s ‖ p_t)                                          Gu et al. 2024 (MiniLLM)
  generalizedJsd  s · [β KL(p_t ‖ m) + (1 − β) KL(p_s ‖ m)],                 Agarwal et al. 2024, eq. 1
                  log m = logsumexp(log β + log p_t, log(1 − β) + log p_s);
                  β = 0 is forwardKl and β = 1 is reverseKl (TRL's special cases)
  totalVariation  s · ½ Σ_v |p_t − p_s|                                      Wen et al. 2023 (f-distill)

then masked (mask is 0/1) and averaged over the unmasked tokens of the batch: loss =
Σ perToken / max(Σ mask, 1). hintonKdLoss = α·kd + (1 − α)·ce, with kd = forwardKl(T, T² on) and
ce = mean over tokens with mask 1 and label ≠ −100 of −log softmax(student)[label] (labels aligned
with the logits: labels[b, t] is the token logits[b, t] predicts).

topKForwardKl (a teacher cached as its top-K log-probs ℓ at T = 1, ids into the student's V): with
q = softmax_k(ℓ / T) over the K entries (the top K renormalised; our choice) and
log p_s = log_softmax(student / T) over all V, gathered at the ids,
  topKForwardKl   s · Σ_k q_k (log q_k − log p_s[id_k])                      Hinton et al. 2015, §2
then masked and averaged as above; gradient with respect to the student's logits only. At K = V it
is forwardKl.

fisherDiagonal (Kirkpatrick et al. 2017): mean over batches of the squared gradient of each batch's
loss with respect to each parameter. ewcPenalty: (λ/2) Σ_i F_i (θ_i − θ*_i)² (Kirkpatrick eq. 3).

Cases:
  <fn>/T1, <fn>/T2        B = 3, T = 5, V = 7, logits ~ N(0, 2²) (teacher ~ N(0.3, 3²)), a
                          prompt-like masked prefix, row 1 all masked
  <fn>/extreme            B = 2, T = 4, V = 9, logits ~ N(0, 50²) clamped to ±100, with exact ±100
                          entries: exp(100) overflows float32, log-probs reach −200
  <fn>/long               B = 2, T = 24, V = 6, random mask, T = 2
  <fn>/extreme-T2         the KLs on extreme logits at T = 2; forwardKl/T2-unscaled without T²
  generalizedJsd/beta*    β ∈ {0, 0.5, 0.9, 1} at T = 1 and T = 2, TRL's unscaled loss at β = 0.5,
                          T = 2, β = 0.1 on the long case, extreme logits at β = 0.5 (T = 1) and
                          β = 0.9 (T = 2)
  hintonKdLoss/*          T ∈ {1, 2}, α ∈ {0.5, 0.2}, labels with −100, extreme logits
  fisherDiagonal/*        softmax regression (3 batches of 5), binary logistic regression with
                          batches of one example (the per-example empirical Fisher), a tanh MLP
  topKForwardKl/*         its own generator, after every other case (so adding them changed none):
                          B = 3, T = 5, V = 7 with K = 3 (T = 1) and K = 4 (T = 2, scaled and
                          unscaled), row 1 all masked; K = V = 7 with each token's ids in a random
                          order (T = 1, T = 2); K = 1 (cross-entropy); extreme logits ±100 with
                          K = 5 at T = 1 and T = 2; B = 2, T = 24, V = 40, K = 8 with a random mask.
                          The teacher's top K by torch.topk of its float64 log-probs, stored as float32.
                          Masks from randn (not rand, whose draws differ between machines)
  ewcPenalty/*            three parameters (a matrix, a vector, a scalar), λ = 1 and λ = 5000 with
                          large differences; gradients with respect to params, anchors and fisher
"""
import math

import torch
import torch.nn.functional as F

from losses_common import case, draw, write


def logits_draw(shape, g, std, mean=0.0, clamp=None, extremes=0):
    x = torch.randn(shape, generator=g, dtype=torch.float32) * std + mean
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
        flat = x.view(-1)
        idx = torch.randperm(flat.numel(), generator=g)[:extremes]
        flat[idx[: extremes // 2]] = clamp
        flat[idx[extremes // 2:]] = -clamp
    return x.to(torch.float32).double().requires_grad_(True)


def prefix_mask(B, T, prompt, all_masked_row=None):
    m = torch.ones(B, T, dtype=torch.float64)
    for b, p in enumerate(prompt):
        m[b, :p] = 0
    if all_masked_row is not None:
        m[all_masked_row] = 0
    return m


def masked_mean(per, mask):
    per = per * mask
    return per.sum() / mask.sum().clamp(min=1), per


def kl(lp, lq):
    """KL(p ‖ q) per token from log-probs."""
    return (lp.exp() * (lp - lq)).sum(-1)


def divergence(fn, student, teacher, mask, o):
    T = o['temperature']
    ls, lt = F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1)
    if fn == 'forwardKl':
        per = kl(lt, ls)
    elif fn == 'reverseKl':
        per = kl(ls, lt)
    elif fn == 'totalVariation':
        per = 0.5 * (lt.exp() - ls.exp()).abs().sum(-1)
    elif fn == 'generalizedJsd':
        beta = o['beta']
        if beta == 0:
            per = kl(lt, ls)
        elif beta == 1:
            per = kl(ls, lt)
        else:
            lm = torch.logsumexp(torch.stack([lt + math.log(beta), ls + math.log(1 - beta)]), 0)
            per = beta * kl(lt, lm) + (1 - beta) * kl(ls, lm)
    else:
        raise ValueError(fn)
    if o.get('scaleByTemperatureSquared', True):
        per = per * T * T
    loss, per = masked_mean(per, mask)
    return {'loss': loss, 'perToken': per}


def hinton(student, teacher, labels, mask, o):
    T, alpha = o['temperature'], o['alpha']
    kd = divergence('forwardKl', student, teacher, mask, {'temperature': T})['loss']
    logp = F.log_softmax(student, -1)
    valid = mask * (labels != -100).double()
    safe = labels.clamp(min=0)
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    ce = (nll * valid).sum() / valid.sum().clamp(min=1)
    return {'loss': alpha * kd + (1 - alpha) * ce, 'kd': kd, 'ce': ce}


def distill_cases(cases):
    g = torch.Generator().manual_seed(20240606)

    def standard():
        s = logits_draw((3, 5, 7), g, 2.0)
        t = logits_draw((3, 5, 7), g, 3.0, 0.3)
        return s, t, prefix_mask(3, 5, [1, 0, 2], all_masked_row=1)

    def extreme():
        s = logits_draw((2, 4, 9), g, 50.0, clamp=100.0, extremes=12)
        t = logits_draw((2, 4, 9), g, 50.0, clamp=100.0, extremes=12)
        return s, t, prefix_mask(2, 4, [0, 1])

    def long():
        s = logits_draw((2, 24, 6), g, 2.0)
        t = logits_draw((2, 24, 6), g, 2.0, -0.5)
        m = (torch.rand(2, 24, generator=g) > 0.25).double()
        return s, t, m

    def add(name, fn, inputs, options):
        s, t, m = inputs
        cases[name] = case(fn, {'studentLogits': s, 'teacherLogits': t, 'mask': m}, divergence(fn, s, t, m, options), options)

    for fn in ['forwardKl', 'reverseKl', 'totalVariation']:
        add(f'{fn}/T1', fn, standard(), {'temperature': 1.0})
        add(f'{fn}/T2', fn, standard(), {'temperature': 2.0})
        add(f'{fn}/extreme', fn, extreme(), {'temperature': 1.0})
        add(f'{fn}/long', fn, long(), {'temperature': 2.0})
    # |p_t − p_s| has no derivative where p_t = p_s. With logits of ±100 many probabilities underflow
    # to 0 in float32 but not in float64, so the sign of p_t − p_s there (hence the subgradient) is
    # an artefact of precision: this case checks values only; T1, T2 and long check the gradient.
    cases['totalVariation/extreme']['grads'] = {}
    add('forwardKl/T2-unscaled', 'forwardKl', standard(), {'temperature': 2.0, 'scaleByTemperatureSquared': False})
    add('forwardKl/extreme-T2', 'forwardKl', extreme(), {'temperature': 2.0})
    add('reverseKl/extreme-T2', 'reverseKl', extreme(), {'temperature': 2.0})

    for beta in [0.0, 0.5, 0.9, 1.0]:
        for T in [1.0, 2.0]:
            add(f'generalizedJsd/beta{beta}-T{int(T)}', 'generalizedJsd', standard(), {'beta': beta, 'temperature': T})
    add('generalizedJsd/beta0.5-T2-unscaled', 'generalizedJsd', standard(), {'beta': 0.5, 'temperature': 2.0, 'scaleByTemperatureSquared': False})
    add('generalizedJsd/beta0.1-long', 'generalizedJsd', long(), {'beta': 0.1, 'temperature': 1.0})
    add('generalizedJsd/beta0.5-extreme', 'generalizedJsd', extreme(), {'beta': 0.5, 'temperature': 1.0})
    add('generalizedJsd/beta0.9-extreme-T2', 'generalizedJsd', extreme(), {'beta': 0.9, 'temperature': 2.0})

    def labels_for(B, T, V, ignore):
        y = torch.randint(0, V, (B, T), generator=g)
        for b, t in ignore:
            y[b, t] = -100
        return y

    for name, draw_inputs, ignore, o in [
        ('hintonKdLoss/T1', standard, [(0, 3), (2, 4)], {'temperature': 1.0, 'alpha': 0.5}),
        ('hintonKdLoss/T2', standard, [(0, 3)], {'temperature': 2.0, 'alpha': 0.5}),
        ('hintonKdLoss/T2-alpha0.2', standard, [(2, 2)], {'temperature': 2.0, 'alpha': 0.2}),
        ('hintonKdLoss/extreme', extreme, [(1, 3)], {'temperature': 2.0, 'alpha': 0.5}),
    ]:
        s, t, m = draw_inputs()
        y = labels_for(s.shape[0], s.shape[1], s.shape[2], ignore)
        cases[name] = case('hintonKdLoss', {'studentLogits': s, 'teacherLogits': t, 'labels': y, 'mask': m}, hinton(s, t, y, m, o), o)


def fisher_cases(cases):
    g = torch.Generator().manual_seed(1612_00796)

    def const(shape, std=1.0):
        return draw(shape, g, std).detach()

    def fisher(params, batches, loss_fn):
        total = {k: torch.zeros_like(v) for k, v in params.items()}
        for batch in batches:
            leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            grads = torch.autograd.grad(loss_fn(leaves, batch), list(leaves.values()))
            for k, gr in zip(leaves, grads):
                total[k] += gr ** 2
        return {k: v / len(batches) for k, v in total.items()}

    def add(name, params, batches, loss_fn):
        inputs = {f'param.{k}': v for k, v in params.items()}
        for i, batch in enumerate(batches):
            for k, v in batch.items():
                inputs[f'batch{i}.{k}'] = v
        out = {f'fisher.{k}': v for k, v in fisher(params, batches, loss_fn).items()}
        cases[name] = case('fisherDiagonal', inputs, out)  # the model is named by the case

    # Softmax regression: logits = x W + b, mean cross-entropy over the batch.
    params = {'weight': const((4, 3)), 'bias': const((3,))}
    batches = [{'x': const((5, 4)), 'y': torch.randint(0, 3, (5,), generator=g)} for _ in range(3)]
    add('fisherDiagonal/softmax-regression', params, batches,
        lambda p, b: F.cross_entropy(b['x'] @ p['weight'] + p['bias'], b['y']))

    # Binary logistic regression, one example per batch: the per-example empirical Fisher.
    params = {'weight': const((4,)), 'bias': const(())}
    batches = [{'x': const((1, 4)), 'y': torch.randint(0, 2, (1,), generator=g)} for _ in range(6)]
    add('fisherDiagonal/logistic-per-example', params, batches,
        lambda p, b: F.binary_cross_entropy_with_logits(b['x'] @ p['weight'] + p['bias'], b['y'].double()))

    # A tanh MLP with squared error (a nonlinear model, gradients through two layers).
    params = {'fc1.weight': const((3, 5)), 'fc1.bias': const((5,)), 'fc2.weight': const((5, 2))}
    batches = [{'x': const((4, 3)), 'target': const((4, 2))} for _ in range(2)]
    add('fisherDiagonal/tanh-mlp', params, batches,
        lambda p, b: ((torch.tanh(b['x'] @ p['fc1.weight'] + p['fc1.bias']) @ p['fc2.weight'] - b['target']) ** 2).mean())


def ewc_cases(cases):
    g = torch.Generator().manual_seed(3)
    shapes = {'layer.weight': (3, 4), 'layer.bias': (4,), 'scale': ()}

    def add(name, lam, spread):
        inputs, total = {}, 0
        for k, shape in shapes.items():
            theta = draw(shape, g, spread)
            anchor = draw(shape, g, spread)
            fisher = draw(shape, g).detach().pow(2).to(torch.float32).double().requires_grad_(True)
            inputs[f'param.{k}'], inputs[f'anchor.{k}'], inputs[f'fisher.{k}'] = theta, anchor, fisher
            total = total + (fisher * (theta - anchor) ** 2).sum()
        cases[name] = case('ewcPenalty', inputs, {'loss': lam / 2 * total}, {'lambda': lam})

    add('ewcPenalty/lambda1', 1.0, 1.0)
    add('ewcPenalty/lambda5000-large', 5000.0, 30.0)


def topk_forward_kl(student, ids, teacher_logprobs, mask, o):
    T = o['temperature']
    lq = F.log_softmax(teacher_logprobs / T, -1)
    ls = F.log_softmax(student / T, -1).gather(-1, ids)
    per = (lq.exp() * (lq - ls)).sum(-1)
    if o.get('scaleByTemperatureSquared', True):
        per = per * T * T
    loss, per = masked_mean(per, mask)
    return {'loss': loss, 'perToken': per}


def topk_cases(cases):
    g = torch.Generator().manual_seed(2015_03531)

    def cache(teacher, K, shuffle=False):
        """The teacher's top-K ids (int64) and float32 log-probs at T = 1, a constant (no gradient)."""
        logprobs = F.log_softmax(teacher.detach().double(), -1)
        if shuffle:  # every id once per token, in a random order (K = V)
            ids = torch.argsort(torch.randn(teacher.shape, generator=g), -1)[..., :K]
        else:
            ids = logprobs.topk(K, -1).indices
        return ids, logprobs.gather(-1, ids).to(torch.float32).double()

    def standard(V=7):
        s = logits_draw((3, 5, V), g, 2.0)
        t = logits_draw((3, 5, V), g, 3.0, 0.3)
        return s, t, prefix_mask(3, 5, [1, 0, 2], all_masked_row=1)

    def extreme():
        s = logits_draw((2, 4, 9), g, 50.0, clamp=100.0, extremes=12)
        t = logits_draw((2, 4, 9), g, 50.0, clamp=100.0, extremes=12)
        return s, t, prefix_mask(2, 4, [0, 1])

    def long():
        s = logits_draw((2, 24, 40), g, 2.0)
        t = logits_draw((2, 24, 40), g, 3.0)
        m = (torch.randn(2, 24, generator=g) > -0.67).double()
        return s, t, m

    def add(name, inputs, K, options, shuffle=False):
        s, t, m = inputs
        ids, lp = cache(t, K, shuffle)
        cases[name] = case('topKForwardKl', {'studentLogits': s, 'teacherIds': ids, 'teacherLogprobs': lp, 'mask': m}, topk_forward_kl(s, ids, lp, m, options), options)

    add('topKForwardKl/T1', standard(), 3, {'temperature': 1.0})
    add('topKForwardKl/T2', standard(), 4, {'temperature': 2.0})
    add('topKForwardKl/T2-unscaled', standard(), 4, {'temperature': 2.0, 'scaleByTemperatureSquared': False})
    add('topKForwardKl/K=V-T1', standard(), 7, {'temperature': 1.0}, shuffle=True)
    add('topKForwardKl/K=V-T2', standard(), 7, {'temperature': 2.0}, shuffle=True)
    add('topKForwardKl/K1', standard(), 1, {'temperature': 1.0})
    add('topKForwardKl/extreme', extreme(), 5, {'temperature': 1.0})
    add('topKForwardKl/extreme-T2', extreme(), 5, {'temperature': 2.0})
    add('topKForwardKl/long', long(), 8, {'temperature': 2.0})


if __name__ == '__main__':
    cases = {}
    distill_cases(cases)
    fisher_cases(cases)
    ewc_cases(cases)
    topk_cases(cases)
    write('distill_ref', cases)

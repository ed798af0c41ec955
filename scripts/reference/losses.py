#!/usr/bin/python3
"""Every PyTorch reference of @posttrain/losses: runs the group scripts in turn.

    /usr/bin/python3 scripts/reference/losses.py

Each group script computes, in float64 on float32-drawn inputs, the value and the gradients of
its functions and writes packages/losses/fixtures/<group>_ref.json (format and helpers in
losses_common.py); the tests in packages/losses/src/*.test.ts read them, so CI needs no Python.

  losses_token.py            tokenLogprobs, sequenceLogprobs, causalLmLoss, entropyFromLogits,
                             maskedMean, maskedWhiten, bradleyTerryLoss
  losses_dpo.py              dpoSigmoidLoss … exoPairLoss (the DPO family)
  losses_preference_free.py  simpoLoss, orpoLoss, ktoLoss
  losses_rl.py               k1, k2, k3, gae, ppoPolicyLoss, ppoValueLoss, grpoAdvantages,
                             grpoLoss, rlooAdvantages
  losses_distill.py          forwardKl, reverseKl, totalVariation, generalizedJsd, hintonKdLoss,
                             fisherDiagonal, ewcPenalty
Every script is deterministic: running this twice leaves `git status` clean.
"""
import os
import runpy

HERE = os.path.dirname(os.path.abspath(__file__))
GROUPS = ['losses_token', 'losses_dpo', 'losses_preference_free', 'losses_rl', 'losses_distill']

if __name__ == '__main__':
    for group in GROUPS:
        runpy.run_path(os.path.join(HERE, f'{group}.py'), run_name='__main__')

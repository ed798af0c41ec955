#!/usr/bin/python3
"""Structured pruning references for packages/prune (pruneHeads, pruneMlpChannels).

Run from the repository root with Debian's interpreter, which has torch:

    /usr/bin/python3 scripts/reference/prune_structured_ref.py            # writes the fixture
    /usr/bin/python3 scripts/reference/prune_structured_ref.py --check DIR CASE
        # loads a checkpoint that posttrain saved after pruning (config.json + model.safetensors
        # in DIR), runs the PyTorch reference forward of it, and compares with CASE's
        # masked-original logits from the fixture

The dense models are the tiny Hugging Face checkpoints of packages/models/fixtures (written by
models_ref.py, whose torch re-implementations of HF Llama / Qwen2 / GPT-2 are reused here):
  llama  4 query heads sharing 2 key/value heads (groups of 2), head_dim 8, hidden 32,
         intermediate 64, 2 layers, tied embeddings, llama3 RoPE scaling
  qwen2  the same head layout with q/k/v biases, intermediate 48, untied lm_head
  gpt2   4 heads, n_embd 32, MLP 128 wide (c_fc / c_proj are Conv1D, weight [in, out])

Each case fixes a removal (the same one the TypeScript test asks for explicitly) and computes,
with torch from the dense weights:
  masked_logits  the ORIGINAL model (unchanged shapes) with the removed query heads' o_proj
                 columns and the removed channels' down_proj columns (GPT-2: mlp.c_proj rows)
                 set to zero: the removed units contribute nothing, everything else is as before;
  pruned_logits  a SMALLER model: config rewritten (num_attention_heads, num_key_value_heads,
                 intermediate_size / n_inner; head_dim kept), q_proj rows / o_proj columns of the
                 removed heads, k_proj / v_proj rows of removed key/value heads, gate/up rows and
                 down columns of removed channels (biases alike) cut out;
and asserts they agree within 1e-5 (float32 summation order). The fixture stores the removal,
the pruned config's sizes and the parameter count, the input ids and both logits.

Cases:
  llama_groups  kvGroups "remove": layer 0 loses KV group 1 (query heads 2, 3), layer 1 loses
                group 0 (heads 0, 1) -> 2 heads, 1 KV head; and 16 of 64 MLP channels per layer.
  llama_thin    kvGroups "thin": layer 0 loses query heads 0 and 3, layer 1 heads 1 and 2 (one per
                group) -> 2 heads, 2 KV heads.
  qwen2_groups  as llama_groups with q/k/v biases (layer 0: group 0, layer 1: group 1) and 12 of
                48 channels.
  gpt2_mlp      GPT-2 MLP channels only: 32 of 128 per layer (n_inner written).
Channel lists are drawn with torch.Generator seeded per case (sorted).

Writes packages/prune/src/fixtures/structured.json.
"""
import argparse
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_ref as M  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
MODELS = os.path.join(ROOT, 'packages', 'models', 'fixtures')
OUT = os.path.join(ROOT, 'packages', 'prune', 'src', 'fixtures', 'structured.json')
TOL = 1e-5


def load_dense(name):
    with open(os.path.join(MODELS, name, 'config.json')) as f:
        c = json.load(f)
    return c, M.read_safetensors(os.path.join(MODELS, name, 'model.safetensors'))


def build(c, state):
    if c['model_type'] == 'gpt2':
        model = M.GPT2LMHeadModel(c)
    else:
        model = M.LlamaForCausalLM(c, qkv_bias=c['model_type'] == 'qwen2')
    model.load_state_dict(state, strict=True)
    return model.eval()


def forward(model, ids):
    with torch.no_grad():
        logits, _ = model(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None].expand_as(ids))
    return logits


def block(units, width):
    return [u * width + j for u in units for j in range(width)]


def keep(size, removed):
    return [i for i in range(size) if i not in set(removed)]


def masked_state(c, state, heads, channels):
    """The original shapes, with the removed units' output weights zeroed."""
    s = {k: v.clone() for k, v in state.items()}
    for layer in range(len(channels)):
        if c['model_type'] == 'gpt2':
            s[f'transformer.h.{layer}.mlp.c_proj.weight'][channels[layer], :] = 0  # Conv1D [in, out]
            continue
        hd = c.get('head_dim') or c['hidden_size'] // c['num_attention_heads']
        if heads:
            s[f'model.layers.{layer}.self_attn.o_proj.weight'][:, block(heads[layer], hd)] = 0
        s[f'model.layers.{layer}.mlp.down_proj.weight'][:, channels[layer]] = 0
    return s


def pruned(c, state, heads, channels, thin):
    """The smaller model's config and state dict."""
    c2 = dict(c)
    s = {k: v.clone() for k, v in state.items()}
    if c['model_type'] == 'gpt2':
        inner = c['n_inner'] or 4 * c['n_embd']
        for layer, removed in enumerate(channels):
            kept = torch.tensor(keep(inner, removed))
            p = f'transformer.h.{layer}.mlp'
            s[f'{p}.c_fc.weight'] = s[f'{p}.c_fc.weight'][:, kept].contiguous()
            s[f'{p}.c_fc.bias'] = s[f'{p}.c_fc.bias'][kept].contiguous()
            s[f'{p}.c_proj.weight'] = s[f'{p}.c_proj.weight'][kept, :].contiguous()
        c2['n_inner'] = inner - len(channels[0])
        return c2, s
    H, Hkv, inner = c['num_attention_heads'], c['num_key_value_heads'], c['intermediate_size']
    hd = c.get('head_dim') or c['hidden_size'] // H
    group = H // Hkv
    removed_kv = [[] if thin else sorted({h // group for h in hs}) for hs in heads]
    for layer in range(c['num_hidden_layers']):
        a = f'model.layers.{layer}.self_attn'
        kq = torch.tensor(block(keep(H, heads[layer]), hd))
        kkv = torch.tensor(block(keep(Hkv, removed_kv[layer]), hd))
        s[f'{a}.q_proj.weight'] = s[f'{a}.q_proj.weight'][kq].contiguous()
        s[f'{a}.o_proj.weight'] = s[f'{a}.o_proj.weight'][:, kq].contiguous()
        for proj in ('k_proj', 'v_proj'):
            s[f'{a}.{proj}.weight'] = s[f'{a}.{proj}.weight'][kkv].contiguous()
        if f'{a}.q_proj.bias' in s:
            s[f'{a}.q_proj.bias'] = s[f'{a}.q_proj.bias'][kq].contiguous()
            for proj in ('k_proj', 'v_proj'):
                s[f'{a}.{proj}.bias'] = s[f'{a}.{proj}.bias'][kkv].contiguous()
        m = f'model.layers.{layer}.mlp'
        kc = torch.tensor(keep(inner, channels[layer]))
        s[f'{m}.gate_proj.weight'] = s[f'{m}.gate_proj.weight'][kc].contiguous()
        s[f'{m}.up_proj.weight'] = s[f'{m}.up_proj.weight'][kc].contiguous()
        s[f'{m}.down_proj.weight'] = s[f'{m}.down_proj.weight'][:, kc].contiguous()
    c2['head_dim'] = hd  # no longer hidden_size / num_attention_heads, so it must be written
    c2['num_attention_heads'] = H - len(heads[0])
    c2['num_key_value_heads'] = Hkv - len(removed_kv[0])
    c2['intermediate_size'] = inner - len(channels[0])
    return c2, s


CASES = [
    # name, model, heads removed per layer, kvGroups, channels removed per layer (count), seed
    ('llama_groups', 'llama', [[2, 3], [0, 1]], 'remove', 16, 11),
    ('llama_thin', 'llama', [[0, 3], [1, 2]], 'thin', 0, 12),
    ('qwen2_groups', 'qwen2', [[0, 1], [2, 3]], 'remove', 12, 13),
    ('gpt2_mlp', 'gpt2', None, None, 32, 14),
]


def sizes(c):
    if c['model_type'] == 'gpt2':
        return {'numHeads': c['n_head'], 'numKvHeads': c['n_head'], 'intermediateSize': c['n_inner'] or 4 * c['n_embd']}
    return {'numHeads': c['num_attention_heads'], 'numKvHeads': c['num_key_value_heads'], 'intermediateSize': c['intermediate_size']}


def make_case(name, model_name, heads, kv_groups, n_channels, seed):
    c, state = load_dense(model_name)
    gen = torch.Generator().manual_seed(seed)
    inner = sizes(c)['intermediateSize']
    layers = c.get('num_hidden_layers') or c['n_layer']
    channels = [sorted(torch.randperm(inner, generator=gen)[:n_channels].tolist()) for _ in range(layers)]
    ids = torch.randint(3, c['vocab_size'], (1, 8), generator=gen)
    masked = forward(build(c, masked_state(c, state, heads, channels)), ids)
    c2, s2 = pruned(c, state, heads, channels, kv_groups == 'thin')
    small = build(c2, s2)
    small_logits = forward(small, ids)
    dense = forward(build(c, state), ids)
    diff = M.maxdiff(masked, small_logits)
    moved = M.maxdiff(masked, dense)
    assert diff < TOL, f'{name}: pruned vs masked {diff:.2e}'
    assert moved > 1e-2, f'{name}: the removal barely changes the logits ({moved:.2e}); the test would prove little'
    print(f'{name}: {sizes(c)} -> {sizes(c2)}; parameters {sum(v.numel() for v in state.values())} -> '
          f'{sum(v.numel() for v in s2.values())}; |pruned - masked| {diff:.2e}, |masked - dense| {moved:.2e}')
    return {
        'name': name,
        'model': model_name,
        'heads': heads,
        'kv_groups': kv_groups,
        'channels': channels,
        'after': sizes(c2),
        'num_parameters': sum(v.numel() for v in s2.values()),
        'input_ids': ids.tolist(),
        'masked_logits': M.floats(masked[0]),
        'pruned_logits': M.floats(small_logits[0]),
    }


def check(folder, case_name):
    with open(OUT) as f:
        case = next(c for c in json.load(f)['cases'] if c['name'] == case_name)
    with open(os.path.join(folder, 'config.json')) as f:
        c = json.load(f)
    state = M.read_safetensors(os.path.join(folder, 'model.safetensors'))
    if c.get('tie_word_embeddings'):
        state.pop('lm_head.weight', None)
    assert sizes(c) == case['after'], f"config sizes {sizes(c)} != expected {case['after']}"
    logits = forward(build(c, state), torch.tensor(case['input_ids']))
    diff = M.maxdiff(logits[0], torch.tensor(case['masked_logits']))
    print(f'{case_name}: torch forward of {folder} ({sizes(c)}) vs masked original: max |diff| {diff:.2e}')
    assert diff < 1e-4, diff


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', nargs=2, metavar=('DIR', 'CASE'))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.check:
        check(*args.check)
        return
    cases = [make_case(*case) for case in CASES]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, 'w') as f:
        f.write(M.dumps({'tolerance': TOL, 'cases': cases}) + '\n')
    print(f'{os.path.relpath(OUT, ROOT)}: {os.path.getsize(OUT)} bytes')


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""Tiny random causal LMs in Hugging Face layout, with PyTorch reference outputs, for
packages/models.

Run from the repository root with Debian's interpreter, which has torch
(`apt-get install -y python3-torch`; the `python3` first on PATH may lack it):

    /usr/bin/python3 scripts/reference/models_ref.py                # writes the fixtures
    /usr/bin/python3 scripts/reference/models_ref.py --sensitivity  # same files, and prints how
                                                                    # far the logits move under
                                                                    # typical mistakes (see below)

No `transformers` or `safetensors` module is needed: the three architectures are re-written
below as plain torch modules following the published Hugging Face definitions line by line
(transformers 4.4x `models/gpt2/modeling_gpt2.py`, `models/llama/modeling_llama.py`,
`models/qwen2/modeling_qwen2.py`, `modeling_rope_utils.py`), and the safetensors file is
written by hand. The output is byte-identical on every run (fixed seeds, float32 on the CPU,
one thread).

Writes, for NAME in gpt2, llama, qwen2, the folder packages/models/fixtures/NAME/ (160-200 KB
each, about 0.52 MB for all three) with:
  config.json        the fields Hugging Face writes for that model_type (4.4x style: rope_theta
                     and rope_scaling, not v5's rope_parameters; keys sorted; no
                     transformers_version, since no transformers wrote it). Dropouts are 0.0.
                     Qwen2: sliding_window 4096 with use_sliding_window false, as hub configs
                     carry it (HF >= 4.45 itself would save null there); no attention_bias key
                     (Qwen2Config has none; the biases are implied by model_type qwen2).
  model.safetensors  the state dict in F32 under exactly HF's keys; tied output embeddings
                     are not stored (no `lm_head.weight` for gpt2 and llama), as
                     save_pretrained does. Header: 8-byte little-endian length, compact JSON
                     with "__metadata__": {"format": "pt"} first, padded with spaces to a
                     multiple of 8; tensors laid out in name order (all F32, which is the order
                     of the Rust implementation), raw little-endian data.
  reference.json     {
                       "model_type", "seed", "num_parameters" (unique parameters, tied ones once),
                       "rope_inv_freq" (llama, qwen2: the float32 inverse frequencies HF uses,
                                        after llama3 scaling where configured),
                       "cases": [ { "name", "input_ids" [B][T], "attention_mask" [B][T],
                                    "position_ids" [B][T], ("segment_ids" [B][T] for "packed"),
                                    "compare_mask" [B][T] (1 where a test must compare: every
                                    token except left padding),
                                    "logits" [B][T][V], "hidden" [B][T][d] } ],
                       "greedy": { "prompt" [5], "new_tokens" [8], "logprobs" [8],
                                   "min_margin" (smallest top-1 minus top-2 logit over the steps) }
                     }
                     Floats are float32 values printed in their shortest round-trip form
                     (parse as a double, Math.fround gives back the exact float32).

Cases (token ids drawn uniformly from [3, vocab), so no special token appears by accident):
  single       B=1, T=7, no padding, position_ids 0..6, attention_mask all ones.
  batch        B=2, T=6, no padding.
  left_padded  B=2, T=6; row 0 is 2 pad tokens (pad id = eos id) then 4 real tokens, row 1 has
               6 real tokens. position_ids = attention_mask.cumsum(-1) - 1 with pad positions set
               to 1 (what GenerationMixin.prepare_inputs_for_generation passes). Attention mask =
               causal AND key is not padding. The pad query rows attend to nothing: here every
               score of such a row is finfo.min, so the softmax is uniform over all T keys; HF's
               eager GPT-2 (min + min = -inf on pad keys) and SDPA (_unmask_unattended) give other,
               equally meaningless values. compare_mask is 0 there: tests must skip them.
  packed       B=1, T=10: two examples of lengths 4 and 6 back to back, segment_ids
               [0,0,0,0,1,1,1,1,1,1], position_ids restarting at 0 for the second example,
               attention mask = causal AND same segment (block-diagonal causal). This is what HF
               builds itself (transformers >= 4.5x) when it detects packed position_ids with no
               attention_mask, and what flash-attention's varlen path computes.

Greedy: 8 tokens picked by argmax, each step running the full forward on the whole growing
sequence (no KV cache, no stopping at eos); logprobs[i] = log_softmax(logits of the last
position)[new_tokens[i]]. The prompt (5 tokens) is the first of a deterministic series of random
prompts whose every step has a top-1 / top-2 logit margin of at least 1e-2 (so a correct float32
implementation picks the same tokens) and whose 8 new tokens hold at least 3 distinct ids (tiny
tied models like to repeat one token forever, which would test little).

Self-checks (the script stops with an AssertionError if one fails):
  - packed: the logits and hidden states of each segment equal those of the same example run
    alone (B=1, positions from 0), within 1e-5;
  - left_padded: the real tokens' logits and hidden states equal those of the same row run
    alone without padding, within 1e-5 (exact up to float32 summation order: a masked key gets
    weight exp(finfo.min - max) = 0 exactly, and the shifted position_ids give the real tokens
    the same positions);
  - the float32 forward agrees with a float64 forward of the same weights within 1e-5 (the
    float32 noise floor is printed);
  - greedy margins >= 1e-2; llama3 rope scaling changes the frequencies (see below);
  - the written files read back: the safetensors bytes give the state dict bit for bit, and a
    model loaded from them reproduces the stored logits exactly.

Weights: torch.manual_seed(SEED) per model, then the parameters in registration order: every
weight matrix (embeddings, Linear, Conv1D) ~ WEIGHT_STD * N(0, 1), norm weights
1 + NORM_STD * N(0, 1), every bias (LayerNorm bias included) BIAS_STD * N(0, 1).
WEIGHT_STD is 0.15, not HF's initializer_range 0.02 (which config.json still states, as the
init a fresh model would use): at 0.02 attention is almost uniform and every MLP
pre-activation is tiny, so the logits hardly depend on the details under test. --sensitivity
measured, as the largest logit change over the compared positions, at std 0.02 -> 0.15:
  gpt2  gelu (erf) instead of gelu_new           1.3e-6 -> 8.3e-4
  llama rope_theta 5e5 instead of 1e4            2.0e-5 -> 4.2e-2
  llama llama3 rope scaling ignored              2.2e-4 -> 4.3e-1
  llama interleaved instead of rotate_half RoPE  1.8e-3 -> 2.3
so at 0.02 the first two would pass a 1e-4 logits tolerance and the third barely fails it.
At 0.15 every mistake the flag tries (also: no causal mask, segments ignored, kv head h % Hkv,
biases zeroed, norm weights 1, square projection transposed, the other family's norm eps
1e-5/1e-6) moves some logit by >= 5e-4, while float32 rounding stays near 2e-6.

Architecture details followed (HF source in parentheses):
  GPT-2 (GPT2LMHeadModel):
    h = wte[ids] + wpe[position_ids]                                    (GPT2Model.forward)
    block: h = h + attn(ln_1(h)); h = h + mlp(ln_2(h))                   (GPT2Block.forward)
    LayerNorm(n_embd, eps=layer_norm_epsilon=1e-5), biased variance      (nn.LayerNorm)
    Conv1D(nf, nx): weight [nx=in, nf=out], y = addmm(bias, x, weight)   (pytorch_utils.Conv1D)
    q, k, v = c_attn(x).split(n_embd, dim=2); heads = view(B,T,H,hd).permute(0,2,1,3)
    w = q @ k^T / sqrt(hd) (scale_attn_weights, no layer-idx scaling, no reorder/upcast);
    masked entries -> finfo(float32).min; softmax(-1); out = w @ v; merge heads; c_proj
                                                                         (GPT2Attention._attn)
    mlp = c_proj(gelu_new(c_fc(x))), n_inner null -> 4*n_embd           (GPT2MLP)
    gelu_new(x) = 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x^3)))        (NewGELUActivation)
    ln_f, then logits = h @ wte^T (lm_head tied to wte, no bias)
  Llama (LlamaForCausalLM), grouped-query attention, tied embeddings:
    RMSNorm: x32 = x.float(); x32 * rsqrt(mean(x32^2, -1) + eps); weight * x  (LlamaRMSNorm)
    layer: h = h + self_attn(input_layernorm(h)); h = h + mlp(post_attention_layernorm(h))
    q = q_proj(x).view(B,T,H,hd).transpose(1,2), k, v likewise with Hkv heads
    RoPE: inv_freq = 1 / theta^(arange(0, hd, 2).float() / hd)   (_compute_default_rope_parameters)
          freqs = inv_freq[:, None] @ position_ids[None, :] (float32), emb = cat(freqs, freqs),
          cos = emb.cos(), sin = emb.sin() (attention_scaling 1.0)    (LlamaRotaryEmbedding)
          q' = q*cos + rotate_half(q)*sin, rotate_half(x) = cat(-x[..., hd/2:], x[..., :hd/2])
          (half split, not interleaved pairs)                        (apply_rotary_pos_emb)
    llama3 scaling (_compute_llama3_parameters, in float32): wavelen = 2*pi/inv_freq;
          wavelen > old/low_ff -> inv_freq/factor; wavelen < old/high_ff -> unchanged;
          otherwise smooth = (old/wavelen - low_ff)/(high_ff - low_ff),
          inv_freq = (1 - smooth)*inv_freq/factor + smooth*inv_freq.
          With head_dim 8, theta 1e4, factor 8, low 1, high 4, original_max_position_embeddings
          64 the four wavelengths 6.28, 62.8, 628, 6283 fall in all three branches (unchanged,
          smoothed, divided by 8, divided by 8): the script asserts this.
    repeat_kv: k[:, :, None].expand(B, Hkv, n_rep, T, hd).reshape(B, H, T, hd), so query head h
          uses kv head h // n_rep (not h % Hkv)                          (repeat_kv)
    w = q @ k^T * hd^-0.5 + mask (0 or finfo.min); softmax in float32; out = w @ v;
          transpose(1,2).reshape(B,T,H*hd); o_proj                       (eager_attention_forward)
    mlp = down_proj(silu(gate_proj(x)) * up_proj(x)), no biases (mlp_bias false)  (LlamaMLP)
    norm, then logits = h @ embed_tokens^T (tie_word_embeddings true)
  Qwen2 (Qwen2ForCausalLM): Llama's computation with q_proj/k_proj/v_proj biases (always on in
    Qwen2Attention; Qwen2's config has no attention_bias field, so none is written), o_proj
    without bias, rope_theta 1e6, no rope_scaling, rms_norm_eps 1e-6, untied lm_head
    (lm_head.weight [V, d] stored), use_sliding_window false (every layer full attention).
"""
import argparse
import json
import math
import os
import struct

import torch
from torch import nn

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
FIXTURES = os.path.join(ROOT, 'packages', 'models', 'fixtures')

CONFIGS = {
    'gpt2': {
        'activation_function': 'gelu_new',
        'architectures': ['GPT2LMHeadModel'],
        'attn_pdrop': 0.0,
        'bos_token_id': 0,
        'embd_pdrop': 0.0,
        'eos_token_id': 0,
        'initializer_range': 0.02,
        'layer_norm_epsilon': 1e-05,
        'model_type': 'gpt2',
        'n_embd': 32,
        'n_head': 4,
        'n_inner': None,
        'n_layer': 2,
        'n_positions': 64,
        'reorder_and_upcast_attn': False,
        'resid_pdrop': 0.0,
        'scale_attn_by_inverse_layer_idx': False,
        'scale_attn_weights': True,
        'summary_activation': None,
        'summary_first_dropout': 0.1,
        'summary_proj_to_labels': True,
        'summary_type': 'cls_index',
        'summary_use_proj': True,
        'tie_word_embeddings': True,
        'torch_dtype': 'float32',
        'use_cache': True,
        'vocab_size': 96,
    },
    'llama': {
        'architectures': ['LlamaForCausalLM'],
        'attention_bias': False,
        'attention_dropout': 0.0,
        'bos_token_id': 1,
        'eos_token_id': 2,
        'head_dim': 8,
        'hidden_act': 'silu',
        'hidden_size': 32,
        'initializer_range': 0.02,
        'intermediate_size': 64,
        'max_position_embeddings': 128,
        'mlp_bias': False,
        'model_type': 'llama',
        'num_attention_heads': 4,
        'num_hidden_layers': 2,
        'num_key_value_heads': 2,
        'pretraining_tp': 1,
        'rms_norm_eps': 1e-05,
        'rope_scaling': {
            'factor': 8.0,
            'high_freq_factor': 4.0,
            'low_freq_factor': 1.0,
            'original_max_position_embeddings': 64,
            'rope_type': 'llama3',
        },
        'rope_theta': 10000.0,
        'tie_word_embeddings': True,
        'torch_dtype': 'float32',
        'use_cache': True,
        'vocab_size': 96,
    },
    'qwen2': {
        'architectures': ['Qwen2ForCausalLM'],
        'attention_dropout': 0.0,
        'bos_token_id': 1,
        'eos_token_id': 2,
        'hidden_act': 'silu',
        'hidden_size': 32,
        'initializer_range': 0.02,
        'intermediate_size': 48,
        'max_position_embeddings': 128,
        'max_window_layers': 28,
        'model_type': 'qwen2',
        'num_attention_heads': 4,
        'num_hidden_layers': 2,
        'num_key_value_heads': 2,
        'rms_norm_eps': 1e-06,
        'rope_scaling': None,
        'rope_theta': 1000000.0,
        'sliding_window': 4096,
        'tie_word_embeddings': False,
        'torch_dtype': 'float32',
        'use_cache': True,
        'use_sliding_window': False,
        'vocab_size': 96,
    },
}
SEEDS = {'gpt2': 1000, 'llama': 2000, 'qwen2': 3000}
MIN_GREEDY_MARGIN = 1e-2
GREEDY_MIN_DISTINCT = 3
# Parameter draws (see the docstring for why WEIGHT_STD is not initializer_range = 0.02).
WEIGHT_STD = 0.15
BIAS_STD = 0.1
NORM_STD = 0.1
TOL = 1e-5

# Mistakes injected by --sensitivity (all off when writing fixtures).
FAULTS = set()


def mask_value(dtype):
    return torch.finfo(dtype).min


def additive_mask(allowed, dtype):
    """allowed [B, T, T] bool -> [B, 1, T, T] of 0 where attended, finfo.min elsewhere."""
    zero = torch.zeros((), dtype=dtype)
    return torch.where(allowed, zero, torch.full((), mask_value(dtype), dtype=dtype))[:, None]


def build_allowed(attention_mask, segment_ids):
    B, T = attention_mask.shape
    i = torch.arange(T)
    allowed = (i[None, :] <= i[:, None])[None].expand(B, T, T)
    if 'no_causal' in FAULTS:
        allowed = torch.ones(B, T, T, dtype=torch.bool)
    allowed = allowed & attention_mask.bool()[:, None, :]
    if segment_ids is not None and 'ignore_segments' not in FAULTS:
        allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])
    return allowed


# ---------------------------------------------------------------------------------------------
# GPT-2


class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.empty(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def gelu_new(x):
    if 'exact_gelu' in FAULTS:
        return torch.nn.functional.gelu(x)
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_dim = c['n_embd']
        self.num_heads = c['n_head']
        self.head_dim = self.embed_dim // self.num_heads
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)

    def split_heads(self, t):
        return t.view(t.size()[:-1] + (self.num_heads, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        q, k, v = self.c_attn(x).split(self.embed_dim, dim=2)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        w = w + mask
        w = nn.functional.softmax(w, dim=-1)
        out = torch.matmul(w, v)
        out = out.permute(0, 2, 1, 3).contiguous()
        out = out.view(out.size()[:-2] + (self.embed_dim,))
        return self.c_proj(out)


class GPT2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        inner = c['n_inner'] if c['n_inner'] is not None else 4 * c['n_embd']
        self.c_fc = Conv1D(inner, c['n_embd'])
        self.c_proj = Conv1D(c['n_embd'], inner)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c['n_embd'], c['layer_norm_epsilon']
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = GPT2Attention(c)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = GPT2MLP(c)

    def forward(self, h, mask):
        h = h + self.attn(self.ln_1(h), mask)
        return h + self.mlp(self.ln_2(h))


class GPT2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c['vocab_size'], c['n_embd'])
        self.wpe = nn.Embedding(c['n_positions'], c['n_embd'])
        self.h = nn.ModuleList([GPT2Block(c) for _ in range(c['n_layer'])])
        self.ln_f = nn.LayerNorm(c['n_embd'], eps=c['layer_norm_epsilon'])


class GPT2LMHeadModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = GPT2Model(c)

    def forward(self, input_ids, attention_mask, position_ids, segment_ids=None):
        t = self.transformer
        dtype = t.wte.weight.dtype
        mask = additive_mask(build_allowed(attention_mask, segment_ids), dtype)
        h = t.wte(input_ids) + t.wpe(position_ids)
        for block in t.h:
            h = block(h, mask)
        h = t.ln_f(h)
        logits = torch.matmul(h, t.wte.weight.t())
        return logits, h


# ---------------------------------------------------------------------------------------------
# Llama / Qwen2


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.variance_epsilon = eps

    def forward(self, x):
        input_dtype = x.dtype
        x = x.to(torch.float32) if input_dtype != torch.float64 else x
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * x.to(input_dtype)


def rope_inv_freq(c):
    """_compute_default_rope_parameters, then _compute_llama3_parameters when configured; float32."""
    head_dim = c.get('head_dim') or c['hidden_size'] // c['num_attention_heads']
    base = c['rope_theta']
    if 'wrong_theta' in FAULTS:
        base = 10000.0 if base != 10000.0 else 500000.0
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    rs = c.get('rope_scaling')
    if rs is None or 'no_rope_scaling' in FAULTS:
        return inv_freq
    assert rs['rope_type'] == 'llama3'
    factor = rs['factor']
    low_freq_factor = rs['low_freq_factor']
    high_freq_factor = rs['high_freq_factor']
    old_context_len = rs['original_max_position_embeddings']
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotate_interleaved(x):  # the GPT-J / Meta-checkpoint convention, used only as a fault
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def rope_cos_sin(inv_freq, position_ids, dtype):
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    if dtype == torch.float64:  # the float64 cross-check computes the angles in float64 too
        inv_freq_expanded, position_ids_expanded = inv_freq_expanded.double(), position_ids_expanded.double()
    freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
    if 'interleaved_rope' in FAULTS:
        emb = torch.repeat_interleave(freqs, 2, dim=-1)
    else:
        emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rot = rotate_interleaved if 'interleaved_rope' in FAULTS else rotate_half
    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


def repeat_kv(x, n_rep):
    B, Hkv, T, hd = x.shape
    if n_rep == 1:
        return x
    if 'kv_modulo' in FAULTS:
        return x.repeat(1, n_rep, 1, 1)
    return x[:, :, None, :, :].expand(B, Hkv, n_rep, T, hd).reshape(B, Hkv * n_rep, T, hd)


class Attention(nn.Module):
    def __init__(self, c, qkv_bias):
        super().__init__()
        d = c['hidden_size']
        self.num_heads = c['num_attention_heads']
        self.num_kv_heads = c['num_key_value_heads']
        self.head_dim = c.get('head_dim') or d // self.num_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        n_rep = self.num_heads // self.num_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        w = w + mask
        softmax_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        w = nn.functional.softmax(w, dim=-1, dtype=softmax_dtype).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(B, T, -1)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, inter = c['hidden_size'], c['intermediate_size']
        self.gate_proj = nn.Linear(d, inter, bias=False)
        self.up_proj = nn.Linear(d, inter, bias=False)
        self.down_proj = nn.Linear(inter, d, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c, qkv_bias):
        super().__init__()
        self.self_attn = Attention(c, qkv_bias)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c['hidden_size'], c['rms_norm_eps'])
        self.post_attention_layernorm = RMSNorm(c['hidden_size'], c['rms_norm_eps'])

    def forward(self, h, cos, sin, mask):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    def __init__(self, c, qkv_bias):
        super().__init__()
        self.embed_tokens = nn.Embedding(c['vocab_size'], c['hidden_size'])
        self.layers = nn.ModuleList([DecoderLayer(c, qkv_bias) for _ in range(c['num_hidden_layers'])])
        self.norm = RMSNorm(c['hidden_size'], c['rms_norm_eps'])


class LlamaForCausalLM(nn.Module):
    """Also Qwen2ForCausalLM (qkv_bias=True)."""

    def __init__(self, c, qkv_bias):
        super().__init__()
        self.c = c
        self.model = LlamaModel(c, qkv_bias)
        if not c['tie_word_embeddings']:
            self.lm_head = nn.Linear(c['hidden_size'], c['vocab_size'], bias=False)

    def forward(self, input_ids, attention_mask, position_ids, segment_ids=None):
        m = self.model
        dtype = m.embed_tokens.weight.dtype
        mask = additive_mask(build_allowed(attention_mask, segment_ids), dtype)
        cos, sin = rope_cos_sin(rope_inv_freq(self.c), position_ids, dtype)
        h = m.embed_tokens(input_ids)
        for layer in m.layers:
            h = layer(h, cos, sin, mask)
        h = m.norm(h)
        w = m.embed_tokens.weight if self.c['tie_word_embeddings'] else self.lm_head.weight
        return torch.matmul(h, w.t()), h


def build(name):
    c = CONFIGS[name]
    if c['model_type'] == 'gpt2':
        model = GPT2LMHeadModel(c)
    else:
        model = LlamaForCausalLM(c, qkv_bias=c['model_type'] == 'qwen2')
    torch.manual_seed(SEEDS[name])
    with torch.no_grad():
        for key, p in model.named_parameters():
            leaf = key.split('.')[-2]
            if key.endswith('.bias'):
                p.copy_(BIAS_STD * torch.randn(p.shape))
            elif leaf.startswith('ln_') or leaf.endswith('norm') or leaf.endswith('layernorm'):
                p.copy_(1.0 + NORM_STD * torch.randn(p.shape))
            else:
                p.copy_(WEIGHT_STD * torch.randn(p.shape))
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Cases


def make_cases(c, gen):
    V, pad = c['vocab_size'], c['eos_token_id']

    def ids(*shape):
        return torch.randint(3, V, shape, generator=gen)

    cases = []
    x = ids(1, 7)
    cases.append({'name': 'single', 'input_ids': x, 'attention_mask': torch.ones_like(x),
                  'position_ids': torch.arange(7)[None]})
    x = ids(2, 6)
    cases.append({'name': 'batch', 'input_ids': x, 'attention_mask': torch.ones_like(x),
                  'position_ids': torch.arange(6)[None].expand(2, 6).clone()})
    x = ids(2, 6)
    x[0, :2] = pad
    am = torch.ones_like(x)
    am[0, :2] = 0
    pos = am.long().cumsum(-1) - 1
    pos.masked_fill_(am == 0, 1)
    cases.append({'name': 'left_padded', 'input_ids': x, 'attention_mask': am, 'position_ids': pos})
    x = ids(1, 10)
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1, 1]])
    cases.append({'name': 'packed', 'input_ids': x, 'attention_mask': torch.ones_like(x),
                  'position_ids': torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5]]), 'segment_ids': seg})
    for case in cases:
        case['compare_mask'] = case['attention_mask'].clone()
    return cases


def run(model, case):
    with torch.no_grad():
        return model(case['input_ids'], case['attention_mask'], case['position_ids'], case.get('segment_ids'))


def run_alone(model, row_ids):
    T = row_ids.shape[0]
    with torch.no_grad():
        return model(row_ids[None], torch.ones(1, T, dtype=torch.long), torch.arange(T)[None])


def maxdiff(a, b):
    return float((a.double() - b.double()).abs().max())


def self_checks(name, model, cases):
    report = {}
    by = {c['name']: c for c in cases}
    # packed == the two examples run separately
    case = by['packed']
    logits, hidden = run(model, case)
    seg = case['segment_ids'][0]
    d = 0.0
    for s in (0, 1):
        idx = (seg == s).nonzero().flatten()
        l1, h1 = run_alone(model, case['input_ids'][0, idx])
        d = max(d, maxdiff(logits[0, idx], l1[0]), maxdiff(hidden[0, idx], h1[0]))
    assert d <= TOL, f'{name}: packed differs from separate runs by {d}'
    report['packed_vs_separate'] = d
    # left padded real tokens == unpadded row
    case = by['left_padded']
    logits, hidden = run(model, case)
    d = 0.0
    for b in range(case['input_ids'].shape[0]):
        real = case['attention_mask'][b].bool()
        l1, h1 = run_alone(model, case['input_ids'][b, real])
        d = max(d, maxdiff(logits[b, real], l1[0]), maxdiff(hidden[b, real], h1[0]))
    assert d <= TOL, f'{name}: left-padded real tokens differ from the unpadded row by {d}'
    report['left_padded_vs_unpadded'] = d
    # float32 vs float64 of the same weights
    m64 = build(name).double()
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    d = 0.0
    for case in cases:
        l32, h32 = run(model, case)
        l64, h64 = run(m64, case)
        keep = case['compare_mask'].bool()
        d = max(d, maxdiff(l32[keep], l64[keep]), maxdiff(h32[keep], h64[keep]))
    assert d <= TOL, f'{name}: float32 and float64 forwards differ by {d}'
    report['float32_vs_float64'] = d
    return report


def greedy(model, c, gen):
    V = c['vocab_size']
    for attempt in range(100):
        prompt = torch.randint(3, V, (5,), generator=gen)
        seq = prompt.clone()
        new_tokens, logprobs, margins = [], [], []
        for _ in range(8):
            logits, _ = run_alone(model, seq)
            last = logits[0, -1]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            tok = int(torch.argmax(last))
            new_tokens.append(tok)
            logprobs.append(float(torch.log_softmax(last, dim=-1)[tok]))
            seq = torch.cat([seq, torch.tensor([tok])])
        if min(margins) >= MIN_GREEDY_MARGIN and len(set(new_tokens)) >= GREEDY_MIN_DISTINCT:
            return {'prompt': prompt.tolist(), 'new_tokens': new_tokens, 'logprobs': logprobs,
                    'min_margin': min(margins)}, attempt
    raise AssertionError('no prompt with clear greedy margins and varied tokens found')


# ---------------------------------------------------------------------------------------------
# Output


def f32_short(x):
    """Shortest decimal that parses back (as a double, then rounded to float32) to float32(x)."""
    f = struct.unpack('<f', struct.pack('<f', x))[0]
    if f == 0:
        return 0.0
    for digits in range(1, 10):
        s = float(f'{f:.{digits}g}')
        if struct.unpack('<f', struct.pack('<f', s))[0] == f:
            return s
    raise AssertionError(x)


def dumps(obj, indent=0):
    """JSON with innermost lists of numbers on one line."""
    pad = ' ' * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in obj.items()]
        return pad + '{\n' + ',\n'.join(items) + '\n' + pad + '}'
    if isinstance(obj, list) and obj and all(isinstance(v, (list, dict)) for v in obj):
        return pad + '[\n' + ',\n'.join(dumps(v, indent + 1) for v in obj) + '\n' + pad + ']'
    return pad + json.dumps(obj, separators=(', ', ': '))


def floats(t):
    """A float tensor as nested lists of shortest float32 decimals."""
    if t.dim() == 1:
        return [f32_short(v) for v in t.tolist()]
    return [floats(s) for s in t]


def write_safetensors(path, state):
    names = sorted(state)
    header = {'__metadata__': {'format': 'pt'}}
    offset, chunks = 0, []
    for name in names:
        t = state[name].detach().to(torch.float32).contiguous()
        raw = struct.pack(f'<{t.numel()}f', *t.reshape(-1).tolist())
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(chunks))


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        b, e = info['data_offsets']
        vals = struct.unpack(f'<{(e - b) // 4}f', data[8 + n + b:8 + n + e])
        out[name] = torch.tensor(vals, dtype=torch.float32).reshape(info['shape'])
    return out


def expected_keys(c):
    if c['model_type'] == 'gpt2':
        keys = ['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.ln_f.weight', 'transformer.ln_f.bias']
        for i in range(c['n_layer']):
            p = f'transformer.h.{i}.'
            keys += [p + s for s in ('ln_1.weight', 'ln_1.bias', 'attn.c_attn.weight', 'attn.c_attn.bias',
                                     'attn.c_proj.weight', 'attn.c_proj.bias', 'ln_2.weight', 'ln_2.bias',
                                     'mlp.c_fc.weight', 'mlp.c_fc.bias', 'mlp.c_proj.weight', 'mlp.c_proj.bias')]
        return keys
    keys = ['model.embed_tokens.weight', 'model.norm.weight']
    for i in range(c['num_hidden_layers']):
        p = f'model.layers.{i}.'
        keys += [p + s for s in ('input_layernorm.weight', 'self_attn.q_proj.weight', 'self_attn.k_proj.weight',
                                 'self_attn.v_proj.weight', 'self_attn.o_proj.weight', 'post_attention_layernorm.weight',
                                 'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight')]
        if c['model_type'] == 'qwen2':
            keys += [p + s for s in ('self_attn.q_proj.bias', 'self_attn.k_proj.bias', 'self_attn.v_proj.bias')]
    if not c['tie_word_embeddings']:
        keys.append('lm_head.weight')
    return keys


def check_llama3_branches(c):
    rs = c['rope_scaling']
    head_dim = c['head_dim']
    base = 1.0 / (c['rope_theta'] ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    wavelen = 2 * math.pi / base
    old = rs['original_max_position_embeddings']
    unchanged = int((wavelen < old / rs['high_freq_factor']).sum())
    divided = int((wavelen > old / rs['low_freq_factor']).sum())
    smoothed = len(wavelen) - unchanged - divided
    assert unchanged >= 1 and divided >= 1 and smoothed >= 1, (unchanged, smoothed, divided)
    scaled = rope_inv_freq(c)
    return {'base_inv_freq': base.tolist(), 'scaled_inv_freq': scaled.tolist(), 'wavelen': wavelen.tolist(),
            'unchanged': unchanged, 'smoothed': smoothed, 'divided': divided}


def generate_model(name):
    c = CONFIGS[name]
    model = build(name)
    state = model.state_dict()
    keys = expected_keys(c)
    assert sorted(state) == sorted(keys), (sorted(set(state) ^ set(keys)))
    gen = torch.Generator().manual_seed(SEEDS[name] + 1)
    cases = make_cases(c, gen)
    checks = self_checks(name, model, cases)
    g, attempts = greedy(model, c, gen)
    out_cases = []
    for case in cases:
        logits, hidden = run(model, case)
        entry = {'name': case['name']}
        for key in ('input_ids', 'attention_mask', 'position_ids', 'segment_ids', 'compare_mask'):
            if key in case:
                entry[key] = case[key].tolist()
        entry['logits'] = floats(logits)
        entry['hidden'] = floats(hidden)
        out_cases.append(entry)
    ref = {'model_type': c['model_type'], 'seed': SEEDS[name],
           'num_parameters': sum(t.numel() for t in state.values())}
    if c['model_type'] != 'gpt2':
        ref['rope_inv_freq'] = floats(rope_inv_freq(c))
    ref['cases'] = out_cases
    ref['greedy'] = {k: (floats(torch.tensor(v)) if k == 'logprobs' else v) for k, v in g.items()}
    ref['greedy']['min_margin'] = f32_short(g['min_margin'])

    folder = os.path.join(FIXTURES, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write('\n')
    write_safetensors(os.path.join(folder, 'model.safetensors'), state)
    with open(os.path.join(folder, 'reference.json'), 'w') as f:
        f.write(dumps(ref) + '\n')

    # Read everything back: the safetensors file reproduces the state dict bit for bit, and a
    # model loaded from it reproduces the stored logits.
    back = read_safetensors(os.path.join(folder, 'model.safetensors'))
    assert sorted(back) == sorted(state) and all(torch.equal(back[k], state[k]) for k in state)
    model2 = build(name)
    model2.load_state_dict(back)
    with open(os.path.join(folder, 'reference.json')) as f:
        stored = json.load(f)
    for case, entry in zip(cases, stored['cases']):
        logits, _ = run(model2, case)
        assert torch.equal(logits, torch.tensor(entry['logits'], dtype=torch.float32)), case['name']

    print(f'{name}: {ref["num_parameters"]} parameters; packed vs separate {checks["packed_vs_separate"]:.2e}, '
          f'left-padded vs unpadded {checks["left_padded_vs_unpadded"]:.2e}, float32 vs float64 '
          f'{checks["float32_vs_float64"]:.2e}; greedy {g["new_tokens"]} min margin {g["min_margin"]:.2e} '
          f'(prompt #{attempts})')
    if c.get('rope_scaling'):
        b = check_llama3_branches(c)
        print(f'  llama3 rope: wavelen {[round(w, 2) for w in b["wavelen"]]} -> {b["unchanged"]} unchanged, '
              f'{b["smoothed"]} smoothed, {b["divided"]} divided; inv_freq {b["base_inv_freq"]} -> {b["scaled_inv_freq"]}')
    for fname in ('config.json', 'model.safetensors', 'reference.json'):
        print(f'  {os.path.relpath(os.path.join(folder, fname), ROOT)}: {os.path.getsize(os.path.join(folder, fname))} bytes')
    return model, cases


def sensitivity(name, model, cases):
    """How far the logits move (max abs over compared positions) under typical mistakes."""
    import copy

    c = CONFIGS[name]
    base = {case['name']: run(model, case)[0] for case in cases}

    def worst(m):
        return max(maxdiff(run(m, case)[0][case['compare_mask'].bool()], base[case['name']][case['compare_mask'].bool()])
                   for case in cases)

    faults = ['no_causal', 'ignore_segments']
    if c['model_type'] == 'gpt2':
        faults += ['exact_gelu']
    else:
        faults += ['interleaved_rope', 'wrong_theta', 'kv_modulo']
        if c.get('rope_scaling'):
            faults.append('no_rope_scaling')
    results = {}
    for fault in faults:
        FAULTS.clear()
        FAULTS.add(fault)
        results[fault] = worst(model)
        FAULTS.clear()
    # Loading mistakes, made on a copy of the weights.
    edits = {
        'zero_biases': lambda k, m: k.endswith('.bias'),
        'unit_norm_weights': lambda k, m: ('ln_' in k or 'norm' in k) and k.endswith('.weight'),
        'transposed_square_proj': lambda k, m: k.endswith('attn.c_proj.weight') or k.endswith('o_proj.weight'),
    }
    for label, pick in edits.items():
        m = copy.deepcopy(model)
        if not any(pick(k, m) for k, _ in m.named_parameters()):
            continue
        with torch.no_grad():
            for k, p in m.named_parameters():
                if pick(k, m):
                    if label == 'zero_biases':
                        p.zero_()
                    elif label == 'unit_norm_weights':
                        p.fill_(1.0)
                    else:
                        p.copy_(p.t().clone())
        results[label] = worst(m)
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, nn.LayerNorm):
            mod.eps = 1e-6 if mod.eps != 1e-6 else 1e-5
        if isinstance(mod, RMSNorm):
            mod.variance_epsilon = 1e-6 if mod.variance_epsilon != 1e-6 else 1e-5
    results['other_norm_eps'] = worst(m)
    for label, d in results.items():
        print(f'  sensitivity {name} {label}: max |d logits| = {d:.2e}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sensitivity', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in ('gpt2', 'llama', 'qwen2'):
        model, cases = generate_model(name)
        if args.sensitivity:
            sensitivity(name, model, cases)


if __name__ == '__main__':
    main()

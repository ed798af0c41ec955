import { Embedding, Linear, Module, ModuleList, RMSNorm, Rng, silu, tf, type CausalLM, type LinearLike, type ForwardOptions, type ForwardOutput } from '@posttrain/tensor-core';
import { LayerKVCache, attentionContext, scaledDotProductAttention, type AttentionContext } from './attention.js';
import type { LlamaConfig } from '@posttrain/tensor-core';
import { checkForwardInputs } from './inputs.js';
import { outputLogits } from './lm-head.js';
import { applyRope, ropeInverseFrequencies, ropeTables } from './rope.js';

interface Rotary {
  cos: tf.Tensor;
  sin: tf.Tensor;
}

class LlamaAttention extends Module {
  readonly qProj: LinearLike;
  readonly kProj: LinearLike;
  readonly vProj: LinearLike;
  readonly oProj: LinearLike;

  constructor(
    private readonly config: LlamaConfig,
    rng: Rng,
  ) {
    super();
    const { hiddenSize: d, numHeads: h, numKvHeads: hkv, headDim: hd, initializerRange: std, qkvBias, outputBias } = config;
    this.qProj = this.registerModule('q_proj', new Linear(d, h * hd, { bias: qkvBias, rng, std }));
    this.kProj = this.registerModule('k_proj', new Linear(d, hkv * hd, { bias: qkvBias, rng, std }));
    this.vProj = this.registerModule('v_proj', new Linear(d, hkv * hd, { bias: qkvBias, rng, std }));
    this.oProj = this.registerModule('o_proj', new Linear(h * hd, d, { bias: outputBias, rng, std }));
  }

  forward(x: tf.Tensor, context: AttentionContext, rotary: Rotary, layer: number): tf.Tensor {
    const [b, t] = x.shape as [number, number];
    const hd = this.config.headDim;
    // The head counts come from the projections' widths, not the config captured at construction,
    // so a model whose heads were removed in place (@posttrain/prune's pruneHeads) runs unchanged.
    const heads = (m: tf.Tensor) => m.reshape([b, t, (m.shape[2] as number) / hd, hd]).transpose([0, 2, 1, 3]); // [B, n, T, hd]
    const q = applyRope(heads(this.qProj.forward(x)), rotary.cos, rotary.sin);
    const k = applyRope(heads(this.kProj.forward(x)), rotary.cos, rotary.sin);
    const v = heads(this.vProj.forward(x));
    const kv = context.cache ? context.cache.append(layer, k, v) : { k, v };
    return this.oProj.forward(scaledDotProductAttention(q, kv.k, kv.v, context.mask));
  }
}

class LlamaMlp extends Module {
  readonly gateProj: LinearLike;
  readonly upProj: LinearLike;
  readonly downProj: LinearLike;

  constructor(config: LlamaConfig, rng: Rng) {
    super();
    const { hiddenSize: d, intermediateSize: inner, initializerRange: std, mlpBias: bias } = config;
    this.gateProj = this.registerModule('gate_proj', new Linear(d, inner, { bias, rng, std }));
    this.upProj = this.registerModule('up_proj', new Linear(d, inner, { bias, rng, std }));
    this.downProj = this.registerModule('down_proj', new Linear(inner, d, { bias, rng, std }));
  }

  /** SwiGLU (Shazeer 2020): down(silu(gate(x)) · up(x)). */
  forward(x: tf.Tensor): tf.Tensor {
    return this.downProj.forward(silu(this.gateProj.forward(x)).mul(this.upProj.forward(x)));
  }
}

class LlamaDecoderLayer extends Module {
  readonly inputLayernorm: RMSNorm;
  readonly selfAttn: LlamaAttention;
  readonly postAttentionLayernorm: RMSNorm;
  readonly mlp: LlamaMlp;

  constructor(config: LlamaConfig, rng: Rng) {
    super();
    const eps = config.rmsNormEps;
    this.selfAttn = this.registerModule('self_attn', new LlamaAttention(config, rng));
    this.mlp = this.registerModule('mlp', new LlamaMlp(config, rng));
    this.inputLayernorm = this.registerModule('input_layernorm', new RMSNorm(config.hiddenSize, { eps }));
    this.postAttentionLayernorm = this.registerModule('post_attention_layernorm', new RMSNorm(config.hiddenSize, { eps }));
  }

  forward(x: tf.Tensor, context: AttentionContext, rotary: Rotary, layer: number): tf.Tensor {
    const h = x.add(this.selfAttn.forward(this.inputLayernorm.forward(x), context, rotary, layer));
    return h.add(this.mlp.forward(this.postAttentionLayernorm.forward(h)));
  }
}

class LlamaBody extends Module {
  readonly embedTokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;

  constructor(config: LlamaConfig, rng: Rng) {
    super();
    this.embedTokens = this.registerModule('embed_tokens', new Embedding(config.vocabSize, config.hiddenSize, { rng, std: config.initializerRange }));
    this.layers = this.registerModule('layers', new ModuleList(Array.from({ length: config.numLayers }, () => new LlamaDecoderLayer(config, rng))));
    this.norm = this.registerModule('norm', new RMSNorm(config.hiddenSize, { eps: config.rmsNormEps }));
  }
}

/**
 * The Llama architecture (Touvron et al. 2023) — RMSNorm, RoPE (with `llama3` scaling),
 * grouped-query attention, SwiGLU — which also covers Qwen2/2.5 (q/k/v biases), SmolLM/SmolLM2 and
 * Mistral without a sliding window. Parameter paths are Hugging Face's (`model.layers.0.self_attn.q_proj.weight`).
 *
 * @example
 * ```ts
 * const model = createModel({ modelType: 'llama', vocabSize: 256, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2 });
 * const { logits, hidden } = model.forward(ids, { attentionMask }); // [B, T, 256], [B, T, 64]
 * ```
 */
export class LlamaForCausalLM extends Module implements CausalLM {
  readonly model: LlamaBody;
  readonly lmHead: LinearLike | undefined;
  private readonly inverseFrequencies: tf.Tensor;

  /** `initialize: false` fills weights with zeros instead of sampling them (a checkpoint will overwrite them). */
  constructor(
    readonly config: LlamaConfig,
    seed = 0,
    options: { initialize?: boolean } = {},
  ) {
    super();
    const rng = new Rng(seed);
    const init = options.initialize === false ? { ...config, initializerRange: 0 } : config;
    this.model = this.registerModule('model', new LlamaBody(init, rng));
    this.lmHead = config.tieWordEmbeddings ? undefined : this.registerModule('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false, rng, std: init.initializerRange }));
    const inv = ropeInverseFrequencies(config.headDim, config.ropeTheta, config.ropeScaling);
    this.inverseFrequencies = this.registerBuffer('rotary_inv_freq', tf.tensor(inv), { persistent: false });
  }

  forward(inputIds: tf.Tensor, options: ForwardOptions = {}): ForwardOutput {
    const { model: body, config } = this;
    checkForwardInputs(inputIds, options, { architecture: config.modelType, vocabSize: config.vocabSize, maxPositions: config.maxPositions, positionsKey: 'max_position_embeddings' });
    let cache: LayerKVCache | undefined;
    const { logits, hidden } = tf.tidy(() => {
      const context = attentionContext(inputIds, options, config.numLayers, this);
      cache = context.cache;
      const rotary = ropeTables(context.positions, this.inverseFrequencies);
      let h = body.embedTokens.forward(inputIds);
      let layer = 0;
      for (const decoder of body.layers) h = decoder.forward(h, context, rotary, layer++);
      const hidden = body.norm.forward(h);
      return { logits: outputLogits(hidden, body.embedTokens.weight, this.lmHead), hidden };
    });
    return cache ? { logits, hidden, cache } : { logits, hidden };
  }
}

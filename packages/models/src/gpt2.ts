import { Conv1D, Embedding, LayerNorm, Linear, Module, ModuleList, Rng, geluTanh, tf, type CausalLM, type LinearLike, type ForwardOptions, type ForwardOutput } from '@posttrain/tensor-core';
import { checkForwardInputs } from './inputs.js';
import { outputLogits } from './lm-head.js';
import { LayerKVCache, attentionContext, scaledDotProductAttention, type AttentionContext } from './attention.js';
import type { Gpt2Config } from '@posttrain/tensor-core';

class Gpt2Attention extends Module {
  readonly cAttn: LinearLike;
  readonly cProj: LinearLike;

  constructor(
    private readonly config: Gpt2Config,
    rng: Rng,
  ) {
    super();
    const { hiddenSize: d, initializerRange: std, numLayers } = config;
    this.cAttn = this.registerModule('c_attn', new Conv1D(d, 3 * d, { rng, std }));
    // GPT-2 scales residual projections by 1/√(2·layers) at initialisation (Radford et al. 2019, §2.3).
    this.cProj = this.registerModule('c_proj', new Conv1D(d, d, { rng, std: std / Math.sqrt(2 * numLayers) }));
  }

  forward(x: tf.Tensor, context: AttentionContext, layer: number): tf.Tensor {
    const [b, t] = x.shape as [number, number];
    const { numHeads: h, headDim: hd } = this.config;
    const heads = (m: tf.Tensor) => m.reshape([b, t, h, hd]).transpose([0, 2, 1, 3]); // [B, H, T, hd]
    const [q, k, v] = tf.split(this.cAttn.forward(x), 3, -1).map(heads);
    const kv = context.cache ? context.cache.append(layer, k, v) : { k, v };
    return this.cProj.forward(scaledDotProductAttention(q, kv.k, kv.v, context.mask));
  }
}

class Gpt2Mlp extends Module {
  readonly cFc: LinearLike;
  readonly cProj: LinearLike;

  constructor(config: Gpt2Config, rng: Rng) {
    super();
    const { hiddenSize: d, intermediateSize: inner, initializerRange: std, numLayers } = config;
    this.cFc = this.registerModule('c_fc', new Conv1D(d, inner, { rng, std }));
    this.cProj = this.registerModule('c_proj', new Conv1D(inner, d, { rng, std: std / Math.sqrt(2 * numLayers) }));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.cProj.forward(geluTanh(this.cFc.forward(x)));
  }
}

class Gpt2Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: Gpt2Attention;
  readonly ln2: LayerNorm;
  readonly mlp: Gpt2Mlp;

  constructor(config: Gpt2Config, rng: Rng) {
    super();
    const eps = config.layerNormEps;
    this.ln1 = this.registerModule('ln_1', new LayerNorm(config.hiddenSize, { eps }));
    this.attn = this.registerModule('attn', new Gpt2Attention(config, rng));
    this.ln2 = this.registerModule('ln_2', new LayerNorm(config.hiddenSize, { eps }));
    this.mlp = this.registerModule('mlp', new Gpt2Mlp(config, rng));
  }

  forward(x: tf.Tensor, context: AttentionContext, layer: number): tf.Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x), context, layer));
    return h.add(this.mlp.forward(this.ln2.forward(h)));
  }
}

class Gpt2Body extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly h: ModuleList<Gpt2Block>;
  readonly lnF: LayerNorm;

  constructor(config: Gpt2Config, rng: Rng) {
    super();
    const std = config.initializerRange;
    this.wte = this.registerModule('wte', new Embedding(config.vocabSize, config.hiddenSize, { rng, std }));
    this.wpe = this.registerModule('wpe', new Embedding(config.maxPositions, config.hiddenSize, { rng, std }));
    this.h = this.registerModule('h', new ModuleList(Array.from({ length: config.numLayers }, () => new Gpt2Block(config, rng))));
    this.lnF = this.registerModule('ln_f', new LayerNorm(config.hiddenSize, { eps: config.layerNormEps }));
  }
}

/**
 * GPT-2 (Radford et al. 2019) with Hugging Face's parameter paths (`transformer.h.0.attn.c_attn.weight`,
 * …) and `Conv1D` projections stored `[in, out]`; the output projection is tied to `transformer.wte`
 * unless the config says otherwise.
 *
 * @example
 * ```ts
 * const model = createModel({ modelType: 'gpt2', vocabSize: 256, hiddenSize: 64, numLayers: 2, numHeads: 4, maxPositions: 128 });
 * const { logits } = model.forward(tf.tensor2d([[1, 2, 3]], undefined, 'int32')); // [1, 3, 256]
 * ```
 */
export class Gpt2LMHeadModel extends Module implements CausalLM {
  readonly transformer: Gpt2Body;
  readonly lmHead: LinearLike | undefined;

  /** `initialize: false` fills weights with zeros instead of sampling them (a checkpoint will overwrite them). */
  constructor(
    readonly config: Gpt2Config,
    seed = 0,
    options: { initialize?: boolean } = {},
  ) {
    super();
    const rng = new Rng(seed);
    const init = options.initialize === false ? { ...config, initializerRange: 0 } : config;
    this.transformer = this.registerModule('transformer', new Gpt2Body(init, rng));
    this.lmHead = config.tieWordEmbeddings ? undefined : this.registerModule('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false, rng, std: init.initializerRange }));
  }

  forward(inputIds: tf.Tensor, options: ForwardOptions = {}): ForwardOutput {
    const { transformer: body, config } = this;
    checkForwardInputs(inputIds, options, { architecture: 'GPT-2', vocabSize: config.vocabSize, maxPositions: config.maxPositions, positionsKey: 'n_positions' });
    let cache: LayerKVCache | undefined;
    const { logits, hidden } = tf.tidy(() => {
      const context = attentionContext(inputIds, options, config.numLayers, this);
      cache = context.cache;
      let h = body.wte.forward(inputIds).add(body.wpe.forward(context.positions));
      let layer = 0;
      for (const block of body.h) h = block.forward(h, context, layer++);
      const hidden = body.lnF.forward(h);
      return { logits: outputLogits(hidden, body.wte.weight, this.lmHead), hidden };
    });
    return cache ? { logits, hidden, cache } : { logits, hidden };
  }
}

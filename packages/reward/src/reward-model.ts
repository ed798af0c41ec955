// RewardModel: a CausalLM backbone + a scalar head read at each sequence's last real token.
import { Linear, Module, PosttrainError, Rng, checkNumber, formatShape, resolveOptions, tf, type CausalLM, type ModelConfig } from '@posttrain/tensor-core';

/**
 * Options of {@link RewardModel}.
 *
 * @example
 * ```ts
 * const options: Partial<RewardModelOptions> = { seed: 1, bias: false };
 * ```
 */
export interface RewardModelOptions {
  /** Seed of the head's initialisation: normal with std 0.02, as transformers initialises `score` (default 0). */
  seed: number;
  /** Give the head a bias (default false, as Hugging Face's `*ForSequenceClassification` `score`). */
  bias: boolean;
}

/**
 * The defaults of {@link RewardModel}'s options.
 *
 * @example
 * ```ts
 * new RewardModel(backbone, { ...defaultRewardModelOptions, seed: 3 });
 * ```
 */
export const defaultRewardModelOptions: Readonly<RewardModelOptions> = Object.freeze({ seed: 0, bias: false });

/**
 * Options of {@link RewardModel.forward} and {@link RewardModel.values}.
 *
 * @example
 * ```ts
 * const options: RewardForwardOptions = { attentionMask }; // [B, T], 1 real, 0 padding
 * ```
 */
export interface RewardForwardOptions {
  /** `[B, T]`, 1 for real tokens and 0 for padding, on either side (default: all real). */
  attentionMask?: tf.Tensor;
}

/**
 * What {@link RewardModel.forward} returns; the caller disposes both tensors.
 *
 * @example
 * ```ts
 * const { rewards, hidden }: RewardOutput = rm.forward(ids, { attentionMask });
 * tf.dispose([rewards, hidden]);
 * ```
 */
export interface RewardOutput {
  /** `[B]` the head at each row's last non-padding token. */
  rewards: tf.Tensor1D;
  /** `[B, T, H]` the backbone's final hidden states. */
  hidden: tf.Tensor3D;
}

/** The name the head is registered under, as in Hugging Face's `*ForSequenceClassification`. */
const HEAD = 'score';
/** The backbone child that is not part of a reward model: the LM head (Hugging Face's classification models have none). */
const DROPPED = 'lm_head';

/**
 * `[B, T]` mask → `[B]` int32 index of the last position whose mask is 1 (0 for a row without
 * any): `max_t(t · mask[b, t])`. Right padding gives length − 1, left padding T − 1.
 */
function lastTokenIndices(mask: tf.Tensor, t: number): tf.Tensor1D {
  return tf.tidy(() => tf.max(tf.mul(tf.cast(tf.greater(mask, 0), 'int32'), tf.range(0, t, 1, 'int32')), 1) as tf.Tensor1D);
}

/**
 * A reward model: any {@link CausalLM} backbone and a scalar head `score` (a `Linear(hidden, 1)`,
 * no bias by default) read at each sequence's last non-padding token, found from the attention
 * mask, so right and left padding both work. It is a {@link Module} whose tree holds the
 * backbone's children under their own names plus `score`, so its parameter paths are those of
 * Hugging Face's sequence-classification checkpoints: `model.layers.0.self_attn.q_proj.weight` …
 * `score.weight` for a Llama-family backbone (`LlamaForSequenceClassification`), `transformer.h.0…`
 * for GPT-2. The backbone's `lm_head` (an untied LM head) is left out of the tree: it is not saved,
 * not trained and not adapted (a tied model has none). `applyLora`, the trainer and
 * checkpoints work on it as on any module; children are shared with the backbone, so adapters
 * put on one are seen by the other.
 *
 * {@link values} applies the same head at every position (`[B, T]`): that is the value head PPO
 * will read per token, and `forward`'s reward is `values` at the last real token.
 *
 * @example
 * ```ts
 * const backbone = await loadModel('examples/sft/tiny-base');
 * const rm = new RewardModel(backbone, { seed: 0 });
 * [...rm.namedParameters().keys()].at(-1);                  // 'score.weight'
 * const { rewards, hidden } = rm.forward(inputIds, { attentionMask }); // [B], [B, T, H]
 * const values = rm.values(inputIds, { attentionMask });                // [B, T]
 * ```
 */
export class RewardModel extends Module {
  /** The language model whose hidden states are scored. */
  readonly backbone: CausalLM;
  /** The head: weight `[1, hidden]` (and bias `[1]` with `bias: true`). */
  readonly score: Linear;

  constructor(backbone: CausalLM, options?: Partial<RewardModelOptions>) {
    super();
    const o = resolveOptions('RewardModel', options, defaultRewardModelOptions);
    checkNumber('RewardModel', 'seed', o.seed, 'an integer', Number.isInteger);
    if (typeof o.bias !== 'boolean') throw new PosttrainError('INVALID_OPTION', `RewardModel: expected bias to be a boolean; got ${JSON.stringify(o.bias)}`);
    if (!backbone || typeof backbone.forward !== 'function' || typeof backbone.namedChildren !== 'function' || !backbone.config) {
      throw new PosttrainError('INVALID_ARGUMENT', `RewardModel: expected backbone to be a CausalLM (a Module with config and forward); got ${backbone === null ? 'null' : typeof backbone}`, {
        help: "load one with @posttrain/models' loadModel, or pass your own CausalLM",
      });
    }
    const hidden = backbone.config.hiddenSize;
    checkNumber('RewardModel', 'backbone.config.hiddenSize', hidden, 'a positive integer', (v) => Number.isInteger(v) && v > 0);
    this.backbone = backbone;
    const kept = [...backbone.namedChildren()].filter(([name]) => name !== DROPPED);
    if (kept.some(([name]) => name === HEAD)) {
      throw new PosttrainError('INVALID_ARGUMENT', `RewardModel: the backbone already has a child named "${HEAD}", which is the head's name`, {
        help: 'pass the language model without a classification head',
      });
    }
    for (const [name, child] of kept) this.registerModule(name, child);
    // Every backbone parameter must sit in a kept child or the LM head, or the reward model would not train or save it.
    const covered = new Set<tf.Variable>();
    for (const child of backbone.namedChildren().values()) for (const p of child.namedParameters().values()) covered.add(p);
    const loose = [...backbone.namedParameters()].filter(([, p]) => !covered.has(p)).map(([path]) => path);
    if (loose.length > 0) {
      throw new PosttrainError(
        'NOT_SUPPORTED',
        `RewardModel: expected every backbone parameter to belong to a sub-module; ${loose.join(', ')} ${loose.length === 1 ? 'is' : 'are'} registered on the backbone itself`,
        {
          help: 'register them on a child module (as Hugging Face models do: model.embed_tokens, transformer.wte, …)',
        },
      );
    }
    this.score = this.registerModule(HEAD, new Linear(hidden, 1, { bias: o.bias, rng: new Rng(o.seed), std: 0.02 }));
  }

  /** The backbone's configuration. */
  get config(): ModelConfig {
    return this.backbone.config;
  }

  /** `[B, T]` ids (int32) → hidden `[B, T, H]`, after checking the mask's shape. */
  private hiddenStates(owner: string, inputIds: tf.Tensor, options: RewardForwardOptions): tf.Tensor3D {
    if (!(inputIds instanceof tf.Tensor) || inputIds.rank !== 2) {
      throw new PosttrainError('SHAPE_MISMATCH', `RewardModel.${owner}: expected inputIds [B, T]; got ${inputIds instanceof tf.Tensor ? formatShape(inputIds.shape) : typeof inputIds}`);
    }
    const mask = options.attentionMask;
    if (mask !== undefined && (!(mask instanceof tf.Tensor) || formatShape(mask.shape) !== formatShape(inputIds.shape))) {
      throw new PosttrainError(
        'SHAPE_MISMATCH',
        `RewardModel.${owner}: expected attentionMask of the shape of inputIds ${formatShape(inputIds.shape)}; got ${mask instanceof tf.Tensor ? formatShape(mask.shape) : typeof mask}`,
        {
          help: 'pass the [B, T] mask the collator made with the ids (1 real, 0 padding)',
        },
      );
    }
    return tf.tidy(() => {
      const { logits, hidden } = this.backbone.forward(inputIds, mask === undefined ? {} : { attentionMask: mask });
      logits.dispose();
      return hidden as tf.Tensor3D;
    });
  }

  /**
   * `inputIds [B, T]` (int32) → `rewards [B]`, the head at each row's last non-padding token (the
   * last position whose mask is 1), and the backbone's hidden states `[B, T, H]`.
   */
  forward(inputIds: tf.Tensor, options: RewardForwardOptions = {}): RewardOutput {
    const hidden = this.hiddenStates('forward', inputIds, options);
    const [b, t, h] = hidden.shape;
    const rewards = tf.tidy(() => {
      const last = options.attentionMask === undefined ? tf.fill([b], t - 1, 'int32') : lastTokenIndices(options.attentionMask, t);
      const rows = tf.add(tf.range(0, b * t, t, 'int32'), last); // [B] flat indices b·T + last
      const pooled = tf.gather(hidden.reshape([b * t, h]), rows); // [B, H]
      return this.score.forward(pooled).reshape([b]) as tf.Tensor1D;
    });
    return { rewards, hidden };
  }

  /**
   * `inputIds [B, T]` → `[B, T]`: the head at every position, padding included (mask it yourself).
   * This is the per-token value PPO's value head reads; `values[b, last(b)]` equals `forward`'s reward.
   */
  values(inputIds: tf.Tensor, options: RewardForwardOptions = {}): tf.Tensor2D {
    const hidden = this.hiddenStates('values', inputIds, options);
    const [b, t] = hidden.shape;
    try {
      return tf.tidy(() => this.score.forward(hidden).reshape([b, t]) as tf.Tensor2D);
    } finally {
      hidden.dispose();
    }
  }

  /** Sets training mode on the reward model and the whole backbone. */
  override train(on = true): this {
    super.train(on);
    this.backbone.train(on);
    return this;
  }

  /** Disposes the backbone (its LM head and buffers included) and the head. */
  override dispose(): void {
    this.backbone.dispose();
    super.dispose();
  }
}

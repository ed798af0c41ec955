// A minimal GPT-2-shaped model built from tensor-core's layers, for the backend-parity test and the
// training benchmark. It is not the models package's GPT-2 (that one loads Hugging Face
// checkpoints); it exists so tensor-core can prove its kernels train a transformer on every backend.
import { tf } from '../tf.js';
import { Module, ModuleList } from '../module.js';
import { Embedding, Linear } from '../layers.js';
import { LayerNorm } from '../norm.js';
import { Rng } from '../rng.js';
import { geluTanh } from '../activations.js';

export interface TinyGptConfig {
  vocabSize: number;
  hiddenSize: number;
  numHeads: number;
  numLayers: number;
  maxPositions: number;
}

class Attention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  constructor(
    private readonly hidden: number,
    private readonly heads: number,
    rng: Rng,
  ) {
    super();
    this.qkv = this.registerModule('c_attn', new Linear(hidden, 3 * hidden, { rng, std: 0.02 }));
    this.proj = this.registerModule('c_proj', new Linear(hidden, hidden, { rng, std: 0.02 }));
  }

  forward(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    const [b, t] = x.shape as number[];
    const hd = this.hidden / this.heads;
    const split = (m: tf.Tensor) => m.reshape([b, t, this.heads, hd]).transpose([0, 2, 1, 3]); // [B, H, T, hd]
    const [q, k, v] = tf.split(this.qkv.forward(x), 3, -1).map(split);
    const scores = tf
      .matMul(q, k, false, true)
      .mul(1 / Math.sqrt(hd))
      .add(mask); // [B, H, T, T]
    const out = tf.matMul(tf.softmax(scores), v); // [B, H, T, hd]
    return this.proj.forward(out.transpose([0, 2, 1, 3]).reshape([b, t, this.hidden]));
  }
}

class Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: Attention;
  readonly ln2: LayerNorm;
  readonly fc: Linear;
  readonly out: Linear;
  constructor(hidden: number, heads: number, rng: Rng) {
    super();
    this.ln1 = this.registerModule('ln_1', new LayerNorm(hidden));
    this.attn = this.registerModule('attn', new Attention(hidden, heads, rng));
    this.ln2 = this.registerModule('ln_2', new LayerNorm(hidden));
    const mlp = this.registerModule('mlp', new Module());
    this.fc = (mlp as unknown as { registerModule: Module['registerModule'] }).registerModule('c_fc', new Linear(hidden, 4 * hidden, { rng, std: 0.02 }));
    this.out = (mlp as unknown as { registerModule: Module['registerModule'] }).registerModule('c_proj', new Linear(4 * hidden, hidden, { rng, std: 0.02 }));
  }

  forward(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x), mask));
    return h.add(this.out.forward(geluTanh(this.fc.forward(this.ln2.forward(h)))));
  }
}

/** GPT-2 layout (`wte`, `wpe`, `h.N`, `ln_f`, tied output) in a few lines. */
export class TinyGpt extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly blocks: ModuleList<Block>;
  readonly lnF: LayerNorm;
  private readonly masks = new Map<number, tf.Tensor>();

  constructor(
    readonly config: TinyGptConfig,
    seed = 0,
  ) {
    super();
    const rng = new Rng(seed);
    const { vocabSize, hiddenSize, numHeads, numLayers, maxPositions } = config;
    this.wte = this.registerModule('wte', new Embedding(vocabSize, hiddenSize, { rng, std: 0.02 }));
    this.wpe = this.registerModule('wpe', new Embedding(maxPositions, hiddenSize, { rng, std: 0.01 }));
    this.blocks = this.registerModule('h', new ModuleList(Array.from({ length: numLayers }, () => new Block(hiddenSize, numHeads, rng))));
    this.lnF = this.registerModule('ln_f', new LayerNorm(hiddenSize));
  }

  private causalMask(t: number): tf.Tensor {
    let mask = this.masks.get(t);
    if (!mask) {
      const values = new Float32Array(t * t);
      for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) values[i * t + j] = -1e9;
      mask = tf.keep(tf.tensor(values, [t, t]));
      this.masks.set(t, mask);
    }
    return mask;
  }

  /** `ids [B, T]` → logits `[B, T, V]`. */
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const t = ids.shape[1] as number;
      const positions = tf.range(0, t, 1, 'int32');
      let h = this.wte.forward(ids).add(this.wpe.forward(positions));
      for (const block of this.blocks) h = block.forward(h, this.causalMask(t));
      h = this.lnF.forward(h);
      const [b] = ids.shape as number[];
      return tf.matMul(h.reshape([b * t, -1]), this.wte.weight, false, true).reshape([b, t, this.config.vocabSize]);
    });
  }

  /** Mean next-token cross-entropy of `ids [B, T]` (targets are ids shifted left by one). */
  loss(ids: tf.Tensor): tf.Scalar {
    return tf.tidy(() => {
      const [b, t] = ids.shape as number[];
      const v = this.config.vocabSize;
      const logits = this.forward(ids.slice([0, 0], [b, t - 1])).reshape([-1, v]);
      const targets = ids.slice([0, 1], [b, t - 1]).reshape([-1]);
      return softmaxCrossEntropy(logits, targets);
    });
  }

  override dispose(): void {
    for (const m of this.masks.values()) m.dispose();
    this.masks.clear();
    super.dispose();
  }
}

/**
 * Mean cross-entropy of `logits [N, V]` against int32 `targets [N]`, with the gradient written
 * out as (softmax − onehot) / N, which avoids tfjs's generic log-sum-exp and gather gradients.
 */
export function softmaxCrossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  const [n, v] = logits.shape as number[];
  const f = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const logProbs = tf.logSoftmax(x);
    const picked = tf.gather(logProbs.reshape([-1]), tf.range(0, n * v, v, 'int32').add(targets));
    save([logProbs, targets]);
    return {
      value: picked.mean().neg() as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const onehot = tf.oneHot(saved[1], v, 1, 0, 'float32');
        return saved[0].exp().sub(onehot).mul(dy.div(n));
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(logits) as tf.Scalar;
}

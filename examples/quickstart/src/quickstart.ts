// Train a two-layer MLP language model on a fixed repeating sequence with @posttrain/tensor-core:
// embeddings, Linear layers, AdamW, clipping and a cosine schedule, on whatever backend is fastest.
import { AdamW, Embedding, Linear, Module, clipGradNormAsync, cosineSchedule, geluTanh, initBackend, tf, valueAndGrads, type BackendName } from '@posttrain/tensor-core';

/** Predicts the next token from the current one: embedding → GELU MLP → vocabulary logits. */
class Bigram extends Module {
  readonly embed: Embedding;
  readonly hidden: Linear;
  readonly out: Linear;

  constructor(vocab: number, width: number) {
    super();
    this.embed = this.registerModule('embed', new Embedding(vocab, width, { std: 0.1 }));
    this.hidden = this.registerModule('hidden', new Linear(width, width));
    this.out = this.registerModule('out', new Linear(width, vocab));
  }

  /** ids [N] int32 → logits [N, vocab] */
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.out.forward(geluTanh(this.hidden.forward(this.embed.forward(ids)))));
  }
}

export interface QuickstartResult {
  backend: string;
  firstLoss: number;
  lastLoss: number;
  accuracy: number;
}

/** Trains for `steps` steps and returns the first and last loss and next-token accuracy. */
export async function quickstart(options: { steps?: number; backend?: BackendName; log?: (line: string) => void } = {}): Promise<QuickstartResult> {
  const { steps = 60, backend = 'auto', log = () => {} } = options;
  const info = await initBackend(backend);
  const vocab = 16;
  const sequence = Array.from({ length: 64 }, (_, i) => (i * 5) % vocab); // next token = current + 5 (mod 16)
  const inputs = tf.tensor(sequence.slice(0, -1), undefined, 'int32');
  const targets = tf.tensor(sequence.slice(1), undefined, 'int32');
  const model = new Bigram(vocab, 32);
  const optimizer = new AdamW(model.trainableParameters(), { lr: 3e-2 });
  const schedule = cosineSchedule({ lr: 3e-2, warmupSteps: 5, totalSteps: steps });
  const loss = () => tf.losses.softmaxCrossEntropy(tf.oneHot(targets, vocab), model.forward(inputs)) as tf.Scalar;
  let firstLoss = NaN;
  let lastLoss = NaN;
  for (let step = 0; step < steps; step++) {
    const { value, grads } = valueAndGrads(loss, optimizer.params);
    const gradNorm = await clipGradNormAsync(grads, 1.0); // async: works on WebGPU too
    optimizer.lr = schedule(step);
    optimizer.step(grads);
    lastLoss = (await value.data())[0];
    if (step === 0) firstLoss = lastLoss;
    if (step % 10 === 0 || step === steps - 1) log(`step ${step} loss ${lastLoss.toFixed(4)} grad-norm ${gradNorm.toFixed(3)} lr ${optimizer.lr.toExponential(2)}`);
    tf.dispose([value, ...grads.values()]);
  }
  const predicted = tf.tidy(() => model.forward(inputs).argMax(-1));
  const hits = tf.tidy(() => predicted.equal(targets).sum());
  const accuracy = (await hits.data())[0] / (sequence.length - 1);
  tf.dispose([predicted, hits, inputs, targets]);
  optimizer.dispose();
  model.dispose();
  return { backend: info.name, firstLoss, lastLoss, accuracy };
}

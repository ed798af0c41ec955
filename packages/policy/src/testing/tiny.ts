// A tiny random Llama for the byte tokenizer (test support, not exported).
import { ByteTokenizer } from '@posttrain/data';
import { createModel, type PretrainedModel } from '@posttrain/models';

export const tokenizer = new ByteTokenizer();

/** A 1-layer Llama of ~18k parameters; the same seed gives the same weights. */
export const tinyModel = (seed = 1, vocabSize = tokenizer.vocabSize): PretrainedModel =>
  createModel({ modelType: 'llama', vocabSize, hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1, maxPositions: 32, tieWordEmbeddings: true }, { seed });

import { describe, expect, it } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';
import { ByteTokenizer } from './byte-tokenizer.js';
import { modelLimits } from './tokenize-checks.js';
import { tokenizeLanguageModeling, tokenizePreference, tokenizePromptCompletion, type TokenizerLike } from './tokenize.js';

// The checks a trainer asks of its examples before any compute: ids within the model's
// vocabulary (naming both vocabulary sizes) and, with requireLabels, something to train on.

const tokenizer = new ByteTokenizer(); // 260 ids: bytes, then <|endoftext|>, <pad>, …

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    expect(isPosttrainError(e), String(e)).toBe(true);
    return e as Error & { code: string };
  }
  throw new Error('expected the call to throw');
}

describe('vocabSize', () => {
  it("an id at or above the model's vocabulary names the record, the id and both vocabulary sizes", () => {
    const small = 100; // a model smaller than the tokenizer: 'a' is byte 97, 'z' 122
    const error = thrown(() => tokenizeLanguageModeling(tokenizer, { text: 'abz' }, { vocabSize: small, name: 'record 7' }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(
      `tokenizeLanguageModeling: record 7: expected token ids below the model's vocabSize 100; got id 122 at token 2 (the tokenizer's vocabulary has ${tokenizer.vocabSize} ids, the model's 100)`,
    );
    expect(error.message).toMatch(/help: the tokenizer does not belong to the model/);
    const pair = thrown(() => tokenizePreference(tokenizer, { prompt: 'a', chosen: 'b', rejected: 'z' }, { vocabSize: 120, appendEos: false, name: 'record 2' }));
    expect(pair.message).toContain("record 2 (rejected): expected token ids below the model's vocabSize 120; got id 122 at token 1");
    const eos = thrown(() => tokenizePromptCompletion(tokenizer, { prompt: 'a', completion: 'b' }, { vocabSize: tokenizer.eosTokenId! }));
    expect(eos.message).toMatch(/got id \d+ at token 2 /);
  });

  it('names only the model when the tokenizer has no vocabSize; ids within range pass; the option is checked', () => {
    const bare: TokenizerLike = { encode: (text) => [...text].map((c) => c.charCodeAt(0)), decode: () => '', eosTokenId: 1 };
    expect(thrown(() => tokenizeLanguageModeling(bare, { text: 'z' }, { vocabSize: 50 })).message).toContain("(the model's vocabulary has 50 ids)");
    expect(tokenizeLanguageModeling(tokenizer, { text: 'abz' }, { vocabSize: tokenizer.vocabSize }).inputIds).toHaveLength(4);
    expect(thrown(() => tokenizeLanguageModeling(tokenizer, { text: 'a' }, { vocabSize: 2.5 })).message).toContain('expected vocabSize to be a positive integer or null; got 2.5');
  });
});

describe('maxPositions', () => {
  it("a sequence longer than the model's context names the record and both lengths; maxLength's cut comes first", () => {
    const error = thrown(() => tokenizeLanguageModeling(tokenizer, { text: 'abcdefgh' }, { maxPositions: 6, name: 'eval record 4' }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain("tokenizeLanguageModeling: eval record 4: expected at most the model's context of 6 tokens (maxPositions); got 9");
    expect(error.message).toMatch(/help: pass maxLength: 6/);
    expect(tokenizeLanguageModeling(tokenizer, { text: 'abcdefgh' }, { maxPositions: 6, maxLength: 6 }).inputIds).toHaveLength(6);
    expect(tokenizePromptCompletion(tokenizer, { prompt: 'ab', completion: 'c' }, { maxPositions: 4 }).inputIds).toHaveLength(4);
    expect(thrown(() => tokenizeLanguageModeling(tokenizer, { text: 'a' }, { maxPositions: 0 })).message).toContain('expected maxPositions to be a positive integer or null; got 0');
  });

  it('modelLimits takes both limits from a model config, null where it has none', () => {
    expect(modelLimits({ vocabSize: 260, maxPositions: 32 })).toEqual({ vocabSize: 260, maxPositions: 32 });
    expect(modelLimits({})).toEqual({ vocabSize: null, maxPositions: null });
    expect(thrown(() => tokenizeLanguageModeling(tokenizer, { text: 'abc' }, { ...modelLimits({ vocabSize: 98, maxPositions: 32 }) })).message).toContain('got id 98 at token 1');
  });
});

describe('requireLabels', () => {
  it('refuses { text: "" } (its EOS alone: no target) naming the record, before any training', () => {
    const error = thrown(() => tokenizeLanguageModeling(tokenizer, { text: '' }, { requireLabels: true, name: 'record 3' }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(
      `tokenizeLanguageModeling: record 3: expected a label to train on after the first token (token t is the target of position t − 1); got 1 token [${tokenizer.eosTokenId}] with none`,
    );
    expect(tokenizeLanguageModeling(tokenizer, { text: '' }).inputIds).toEqual([tokenizer.eosTokenId]); // off by default
  });

  it('refuses a prompt-completion whose completion labels are all masked, and keeps any example with a target', () => {
    const chat = () => ({ inputIds: [1, 2, 3], assistantMask: [1, 0, 0] }); // only the first token is the assistant's
    const masked = thrown(() => tokenizeLanguageModeling(tokenizer, { messages: [{ role: 'assistant', content: 'x' }] }, { chat, requireLabels: true, name: 'record 0' }));
    expect(masked.message).toContain('record 0: expected a label to train on after the first token');
    expect(
      tokenizePromptCompletion(tokenizer, { prompt: 'a', completion: 'b' }, { requireLabels: true })
        .labels.slice(1)
        .some((l) => l >= 0),
    ).toBe(true);
    expect(tokenizeLanguageModeling(tokenizer, { text: 'a' }, { requireLabels: true }).inputIds).toEqual([97, tokenizer.eosTokenId]);
    expect(thrown(() => tokenizeLanguageModeling(tokenizer, { text: 'a' }, { requireLabels: 'yes' as never })).message).toContain('requireLabels');
  });
});

// The shipped tiny base carries the files loadTokenizer reads, so a README snippet can load its
// tokenizer as it would a Hugging Face model's: they must be the byte tokenizer, id for id.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ByteTokenizer, loadTokenizer } from '@posttrain/data';
import { TINY_BASE_DIR } from './tiny-base.js';

const texts = ['dbca|abcd', 'abc>', '', ' leading and  double  spaces\n\ttab', 'héllo wörld 😀 ∑ 漢字', '<|im_start|>user\nhi<|im_end|>\n<pad><|endoftext|>', '<|im_end', 'ĠĊ'];

describe('examples/sft/tiny-base tokenizer files', () => {
  it('are what ByteTokenizer.toHuggingFaceFiles() writes', () => {
    const files = new ByteTokenizer().toHuggingFaceFiles();
    for (const name of ['tokenizer.json', 'tokenizer_config.json'] as const) {
      expect(JSON.parse(readFileSync(join(TINY_BASE_DIR, name), 'utf8'))).toEqual(JSON.parse(files[name]));
    }
  });

  it('load through loadTokenizer and encode and decode exactly like ByteTokenizer', async () => {
    const loaded = await loadTokenizer(TINY_BASE_DIR);
    const bytes = new ByteTokenizer();
    expect(loaded.vocabSize).toBe(260);
    expect([loaded.bosTokenId, loaded.eosTokenId, loaded.padTokenId, loaded.unkTokenId]).toEqual([bytes.bosTokenId, bytes.eosTokenId, bytes.padTokenId, null]);
    expect(loaded.specialTokens).toEqual(bytes.specialTokens);
    expect(loaded.chatTemplate).toBe(bytes.chatTemplate);
    const config = JSON.parse(readFileSync(join(TINY_BASE_DIR, 'config.json'), 'utf8'));
    expect([config.vocab_size, config.eos_token_id, config.pad_token_id]).toEqual([loaded.vocabSize, loaded.eosTokenId, loaded.padTokenId]);
    for (const text of texts) {
      const ids = bytes.encode(text);
      expect(loaded.encode(text)).toEqual(ids);
      expect(loaded.encodeWithOffsets!(text)).toEqual(bytes.encodeWithOffsets(text));
      expect(loaded.decode(ids)).toBe(bytes.decode(ids));
      expect(loaded.decode(ids, { skipSpecialTokens: true })).toBe(bytes.decode(ids, { skipSpecialTokens: true }));
    }
    for (let id = 0; id < 260; id++) expect(loaded.idToToken(id)).toBe(bytes.idToToken(id));
  });
});

import { describe, expect, it } from 'vitest';
import { ByteTokenizer, defaultByteTokenizerOptions } from './byte-tokenizer.js';
import { CHATML_TEMPLATE } from './chat-template.js';
import { expectThrow } from './testing/tokenizer-helpers.js';
import { loadTokenizer } from './tokenizer.js';

const utf8 = (text: string) => Array.from(new TextEncoder().encode(text));
const tricky = ['', 'plain ascii', '你好，世界！日本語', '😀👍🏽🇫🇷 family: 👨‍👩‍👧', 'e\u0301 vs é', 'nul\0 tab\t crlf\r\n', ' '.repeat(5)];

describe('ByteTokenizer', () => {
  it('has 256 byte tokens then the special tokens, in order', () => {
    const tokenizer = new ByteTokenizer();
    expect(tokenizer.vocabSize).toBe(260);
    expect(tokenizer.specialTokens).toEqual({ '<|endoftext|>': 256, '<|im_start|>': 257, '<|im_end|>': 258, '<pad>': 259 });
    expect([tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId, tokenizer.unkTokenId]).toEqual([null, 258, 259, null]);
    expect([tokenizer.bosToken, tokenizer.eosToken, tokenizer.padToken, tokenizer.unkToken]).toEqual([null, '<|im_end|>', '<pad>', null]);
    expect(tokenizer.chatTemplate).toBe(CHATML_TEMPLATE);
  });

  it('encodes the UTF-8 bytes of any text and decodes them back exactly (emoji, CJK, combining marks)', () => {
    const tokenizer = new ByteTokenizer();
    for (const text of tricky) {
      expect(tokenizer.encode(text), text).toEqual(utf8(text));
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    }
    expect(tokenizer.encode('😀')).toEqual([0xf0, 0x9f, 0x98, 0x80]);
    expect(tokenizer.encode('你')).toEqual([0xe4, 0xbd, 0xa0]);
  });

  it('matches special tokens as whole strings, longest first, and leaves partial ones as bytes', () => {
    const tokenizer = new ByteTokenizer();
    expect(tokenizer.encode('<|im_start|>hi<|im_end|><|im_end|>')).toEqual([257, 104, 105, 258, 258]);
    expect(tokenizer.encode('<|im_end')).toEqual(utf8('<|im_end'));
    expect(tokenizer.encode('x<|im_start|')).toEqual(utf8('x<|im_start|'));
    const nested = new ByteTokenizer({ specialTokens: ['<a>', '<a><b>'], eosToken: null, padToken: null });
    expect(nested.encode('<a><b><a>')).toEqual([257, 256]);
    const text = '<|im_start|>日本<|im_end|>😀<pad>';
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
  });

  it('encodes special tokens met in text as bytes with splitSpecialTokens', () => {
    const tokenizer = new ByteTokenizer({ splitSpecialTokens: true });
    expect(tokenizer.encode('<|im_end|>')).toEqual(utf8('<|im_end|>'));
    expect(tokenizer.decode([...tokenizer.encode('a'), 258])).toBe('a<|im_end|>'); // the id still decodes to its name
  });

  it('decodes special tokens by name or skips them, and bad bytes to U+FFFD', () => {
    const tokenizer = new ByteTokenizer();
    const ids = [257, ...utf8('assistant\n😀'), 258, 259, 259];
    expect(tokenizer.decode(ids)).toBe('<|im_start|>assistant\n😀<|im_end|><pad><pad>');
    expect(tokenizer.decode(ids, { skipSpecialTokens: true })).toBe('assistant\n😀');
    expect(tokenizer.decode([0xf0, 0x9f, 258, 0x41])).toBe('\uFFFD<|im_end|>A'); // half an emoji, cut by a special
    expect(tokenizer.decode(new Uint8Array([104, 105]))).toBe('hi');
  });

  it('prepends a BOS with addSpecialTokens only when it has one', () => {
    const withBos = new ByteTokenizer({ specialTokens: ['<s>', '</s>'], bosToken: '<s>', eosToken: '</s>', padToken: null });
    expect(withBos.encode('a')).toEqual([256, 97]);
    expect(withBos.encode('a', { addSpecialTokens: false })).toEqual([97]);
    expect(withBos.padTokenId).toBeNull();
    expect(new ByteTokenizer().encode('a')).toEqual([97]);
  });

  it('spells bytes as GPT-2 byte-level tokens and special tokens by name', () => {
    const tokenizer = new ByteTokenizer();
    expect([tokenizer.idToToken(97), tokenizer.idToToken(32), tokenizer.idToToken(10), tokenizer.idToToken(258)]).toEqual(['a', 'Ġ', 'Ċ', '<|im_end|>']);
    for (let id = 0; id < tokenizer.vocabSize; id++) expect(tokenizer.tokenToId(tokenizer.idToToken(id)!)).toBe(id);
    expect(new Set(Array.from({ length: 256 }, (_, b) => tokenizer.idToToken(b))).size).toBe(256);
    expect([tokenizer.idToToken(260), tokenizer.idToToken(-1), tokenizer.idToToken(1.5)]).toEqual([null, null, null]);
    expect([tokenizer.tokenToId('ab'), tokenizer.tokenToId('constructor'), tokenizer.tokenToId(' ')]).toEqual([null, null, null]);
  });

  it('gives each token the span of the character it belongs to', () => {
    const tokenizer = new ByteTokenizer();
    const text = 'é😀<|im_end|>!';
    expect(tokenizer.encodeWithOffsets(text)).toEqual({
      ids: [0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80, 258, 33],
      offsets: [
        [0, 1],
        [0, 1],
        [1, 3],
        [1, 3],
        [1, 3],
        [1, 3],
        [3, 13],
        [13, 14],
      ],
    });
    const withBos = new ByteTokenizer({ bosToken: '<|endoftext|>' });
    expect(withBos.encodeWithOffsets('a')).toEqual({
      ids: [256, 97],
      offsets: [
        [0, 0],
        [0, 1],
      ],
    });
  });

  it('rejects bad options and ids, naming them', () => {
    expectThrow(
      () => new ByteTokenizer({ eosToken: '</s>' }),
      'INVALID_OPTION',
      'expected eosToken to be null or one of specialTokens [<|endoftext|>, <|im_start|>, <|im_end|>, <pad>]; got "</s>"',
      'help: add it',
    );
    expectThrow(
      () => new ByteTokenizer({ specialTokens: ['<a>', '<a>'], eosToken: null, padToken: null }),
      'INVALID_OPTION',
      'expected specialTokens[1] to be a non-empty string not listed before; got "<a>"',
    );
    expectThrow(() => new ByteTokenizer({ specialTokens: [''] }), 'INVALID_OPTION', 'specialTokens[0]');
    expectThrow(() => new ByteTokenizer({ eosTokens: '<pad>' } as never), 'INVALID_OPTION', 'unknown option "eosTokens"');
    expectThrow(() => new ByteTokenizer({ chatTemplate: 3 } as never), 'INVALID_OPTION', 'expected chatTemplate to be a string or null; got 3');
    expectThrow(() => new ByteTokenizer().decode([104, 260]), 'INVALID_ARGUMENT', 'ByteTokenizer.decode: expected ids[1] to be an integer token id in [0, 260); got 260');
    expectThrow(() => new ByteTokenizer().encode(null as never), 'INVALID_ARGUMENT', 'ByteTokenizer.encode: expected text to be a string; got null');
    expect(new ByteTokenizer({ chatTemplate: null }).chatTemplate).toBeUndefined();
    expect(Object.isFrozen(defaultByteTokenizerOptions)).toBe(true);
  });
});

describe('ByteTokenizer.toHuggingFaceFiles', () => {
  it('writes files that loadTokenizer reads back to the same ids, text, offsets and special tokens', async () => {
    for (const tokenizer of [new ByteTokenizer(), new ByteTokenizer({ specialTokens: ['<s>', '</s>', '<|im_start|>', '<|im_end|>'], bosToken: '<s>', eosToken: '</s>', padToken: '</s>' })]) {
      const loaded = await loadTokenizer(tokenizer.toHuggingFaceFiles());
      for (const key of ['vocabSize', 'specialTokens', 'bosToken', 'bosTokenId', 'eosToken', 'eosTokenId', 'padToken', 'padTokenId', 'unkTokenId', 'chatTemplate'] as const) {
        expect(loaded[key], key).toEqual(tokenizer[key]);
      }
      for (const text of [...tricky, '<|im_start|>user\n日本 😀<|im_end|>\n<s></s>']) {
        for (const addSpecialTokens of [true, false]) {
          expect(loaded.encodeWithOffsets!(text, { addSpecialTokens }), text).toEqual(tokenizer.encodeWithOffsets(text, { addSpecialTokens }));
          expect(loaded.encode(text, { addSpecialTokens })).toEqual(tokenizer.encode(text, { addSpecialTokens }));
        }
        const ids = tokenizer.encode(text);
        expect(loaded.decode(ids)).toBe(tokenizer.decode(ids));
        expect(loaded.decode(ids, { skipSpecialTokens: true })).toBe(tokenizer.decode(ids, { skipSpecialTokens: true }));
      }
      for (let id = 0; id < tokenizer.vocabSize; id++) expect(loaded.idToToken(id)).toBe(tokenizer.idToToken(id));
    }
  });
});

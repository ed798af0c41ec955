import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fileSource } from '@posttrain/tensor-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteTokenizer } from './byte-tokenizer.js';
import { QWEN3_DIR, expectReject, expectThrow, qwen3Files } from './testing/tokenizer-helpers.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';

// Ids printed by scripts/reference/data_qwen3_ref.py: a plain byte-level BPE in Python reading only the
// vocab, merges, added tokens and pre-tokenizer pattern of the package's tokenizer.json.
const QWEN3_REFERENCE: Record<string, number[]> = {
  'Hello, world!': [9707, 11, 1879, 0],
  'The quick brown fox jumps over the lazy dog.': [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13],
  "It's 2024 and we're testing   tokenizers\n\n\nok": [2132, 594, 220, 17, 15, 17, 19, 323, 582, 2299, 7497, 256, 3950, 12230, 1406, 562],
  '你好，世界！': [108386, 3837, 99489, 6313],
  'emoji 😀👍🏽 ok': [37523, 90316, 144349, 145375, 5394],
  '<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n42<|im_end|>\n': [151644, 872, 198, 3838, 374, 220, 16, 17, 10, 18, 15, 30, 151645, 198, 151644, 77091, 198, 19, 17, 151645, 198],
};

let qwen: Tokenizer;
let vocab: Record<string, number>;
let config: { added_tokens_decoder: Record<string, { content: string; special: boolean }>; eos_token: string; pad_token: string; chat_template: string };
beforeAll(async () => {
  qwen = await loadTokenizer(QWEN3_DIR);
  vocab = JSON.parse(qwen3Files()['tokenizer.json']).model.vocab;
  config = JSON.parse(qwen3Files()['tokenizer_config.json']);
});

describe('loadTokenizer with the real Qwen3 vocabulary', () => {
  it('gives the ids of an independent BPE for known strings, and decodes them back', () => {
    for (const [text, ids] of Object.entries(QWEN3_REFERENCE)) {
      expect(qwen.encode(text), text).toEqual(ids);
      expect(qwen.decode(ids)).toBe(text);
    }
  });

  it('gives the vocabulary id of strings that are one token in tokenizer.json', () => {
    for (const [text, token] of [
      ['Hello', 'Hello'],
      [' world', 'Ġworld'],
      ['\n', 'Ċ'],
      ['  ', 'ĠĠ'],
      ['!', '!'],
      [' the', 'Ġthe'],
    ]) {
      expect(vocab[token], token).toBeTypeOf('number');
      expect(qwen.encode(text)).toEqual([vocab[token]]);
      expect(qwen.tokenToId(token)).toBe(vocab[token]);
      expect(qwen.idToToken(vocab[token])).toBe(token);
    }
    expect(qwen.tokenToId('no such token')).toBeNull();
    expect(qwen.idToToken(-1)).toBeNull();
    expect(qwen.idToToken(qwen.vocabSize)).toBeNull();
  });

  it('exposes the special tokens and ids of tokenizer_config.json', () => {
    const specials = Object.entries(config.added_tokens_decoder).filter(([, t]) => t.special);
    expect(specials.length).toBe(14);
    expect(qwen.specialTokens).toEqual(Object.fromEntries(specials.map(([id, t]) => [t.content, Number(id)])));
    expect(qwen.specialTokens['<|endoftext|>']).toBe(151643);
    expect(qwen.specialTokens['<|im_start|>']).toBe(151644);
    expect(qwen.specialTokens['<|im_end|>']).toBe(151645);
    expect([qwen.eosToken, qwen.eosTokenId]).toEqual([config.eos_token, 151645]);
    expect([qwen.padToken, qwen.padTokenId]).toEqual([config.pad_token, 151643]);
    expect([qwen.bosToken, qwen.bosTokenId, qwen.unkToken, qwen.unkTokenId]).toEqual([null, null, null, null]);
    expect(qwen.vocabSize).toBe(151669); // 151643 BPE tokens + 26 added, the last <\/think> = 151668
    expect('<think>' in qwen.specialTokens).toBe(false); // added but not special
    expect(qwen.encode('<think>')).toEqual([Number(Object.entries(config.added_tokens_decoder).find(([, t]) => t.content === '<think>')![0])]);
    expect(qwen.chatTemplate).toBe(config.chat_template);
  });

  it('round-trips text exactly and skips special tokens on request', () => {
    for (const text of ['', ' leading and trailing ', 'tabs\tand\r\nnewlines\n\n', 'café naïve 日本語 한국어 😀👍🏽🇫🇷', '<|im_start|>x<|im_end|><|endoftext|>']) {
      expect(qwen.decode(qwen.encode(text)), text).toBe(text);
    }
    const ids = qwen.encode('<|im_start|>user\nhi<|im_end|>');
    expect(qwen.decode(ids, { skipSpecialTokens: true })).toBe('user\nhi');
    expect(qwen.decode(new Int32Array(ids))).toBe('<|im_start|>user\nhi<|im_end|>');
    expect(qwen.decode([])).toBe('');
  });

  it('adds no tokens around a text with addSpecialTokens (Qwen has no BOS)', () => {
    expect(qwen.encode('Hello, world!', { addSpecialTokens: true })).toEqual(qwen.encode('Hello, world!', { addSpecialTokens: false }));
  });

  it('gives each token its span of the text', () => {
    expect(qwen.encodeWithOffsets!('Hello, world!')).toEqual({
      ids: [9707, 11, 1879, 0],
      offsets: [
        [0, 5],
        [5, 6],
        [6, 12],
        [12, 13],
      ],
    });
    const text = '<|im_start|>你好 😀\n\nok<|im_end|>';
    const { ids, offsets } = qwen.encodeWithOffsets!(text);
    expect(ids).toEqual(qwen.encode(text));
    expect(offsets[0]).toEqual([0, 12]);
    expect(offsets.at(-1)).toEqual([text.length - 10, text.length]);
    for (let k = 1; k < offsets.length; k++) expect(offsets[k][0]).toBeGreaterThanOrEqual(offsets[k - 1][0]);
    // Tokens holding whole characters decode to exactly their span.
    ids.forEach((id, k) => {
      const piece = qwen.decode([id]);
      if (!piece.includes('\uFFFD')) expect(text.slice(...offsets[k])).toBe(piece);
    });
  });

  it('rejects ids outside the vocabulary and unknown options, naming them', () => {
    expectThrow(() => qwen.decode([1, 151669]), 'INVALID_ARGUMENT', 'Tokenizer.decode: expected ids[1] to be an integer token id in [0, 151669); got 151669');
    expectThrow(() => qwen.decode([0.5]), 'INVALID_ARGUMENT', 'ids[0]', 'got 0.5');
    expectThrow(() => qwen.encode('x', { addSpecialToken: true } as never), 'INVALID_OPTION', 'unknown option "addSpecialToken"');
    expectThrow(() => qwen.encode(42 as never), 'INVALID_ARGUMENT', 'expected text to be a string; got 42');
  });
});

describe('loadTokenizer sources', () => {
  let path: string;
  const dir = () => path;
  let server: Server;
  let base: string;
  beforeAll(async () => {
    path = await mkdtemp(join(tmpdir(), 'posttrain-tokenizer-'));
    await writeFile(join(path, 'tokenizer.json'), qwen3Files()['tokenizer.json']);
    await writeFile(join(path, 'tokenizer_config.json'), qwen3Files()['tokenizer_config.json']);
    server = createServer((request, response) => {
      const name = request.url!.slice(1) as keyof ReturnType<typeof qwen3Files>;
      if (!(name in qwen3Files())) return void response.writeHead(404).end();
      response.writeHead(200).end(qwen3Files()[name]);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(path, { recursive: true, force: true });
  });

  it('reads a directory, a file: URL, an http URL, an in-memory record and a FileSource alike', async () => {
    const text = 'emoji 😀👍🏽 ok';
    for (const source of [dir(), pathToFileURL(dir()), new URL(base), qwen3Files(), fileSource(new Map(Object.entries(qwen3Files())))]) {
      const tokenizer = await loadTokenizer(source);
      expect(tokenizer.encode(text), String(source)).toEqual(QWEN3_REFERENCE[text]);
      expect(tokenizer.eosTokenId).toBe(151645);
    }
  });

  it('names the missing file and where it looked', async () => {
    await expectReject(loadTokenizer(join(dir(), 'nope')), 'FILE_NOT_FOUND', `loadTokenizer: expected a file "tokenizer.json" in directory ${join(dir(), 'nope')}`);
    await expectReject(loadTokenizer({ 'tokenizer.json': '{}' }), 'FILE_NOT_FOUND', 'expected a file "tokenizer_config.json" in in-memory files', 'help: a Hugging Face tokenizer is');
    await expectReject(loadTokenizer(`${base}missing/`), 'FILE_NOT_FOUND', `"tokenizer.json" in URL ${base}missing/`, 'HTTP 404');
  });

  it('says which file is not JSON', async () => {
    const files = new ByteTokenizer().toHuggingFaceFiles();
    await expectReject(
      loadTokenizer({ ...files, 'tokenizer_config.json': '{"eos_token": ' }),
      'INVALID_ARGUMENT',
      'loadTokenizer: expected tokenizer_config.json in in-memory files to be JSON; it does not parse',
    );
    await expectReject(loadTokenizer({ ...files, 'tokenizer.json': 'not json' }), 'INVALID_ARGUMENT', 'expected tokenizer.json in in-memory files to be JSON');
    await expectReject(loadTokenizer({ ...files, 'tokenizer.json': '[1, 2]' }), 'INVALID_ARGUMENT', 'expected tokenizer.json in in-memory files to hold a JSON object; got an array of length 2');
    await expectReject(loadTokenizer({ ...files, 'tokenizer.json': '{"model": {"type": "Nonsense"}}' }), 'NOT_SUPPORTED', 'expected tokenizer.json in in-memory files to describe a tokenizer');
  });

  it('refuses a model type @huggingface/tokenizers does not implement, naming it and the supported ones (not a silent fallback)', async () => {
    const files = new ByteTokenizer().toHuggingFaceFiles();
    const json = JSON.parse(files['tokenizer.json']);
    const wordLevel = { ...json, model: { type: 'WordLevel', vocab: { '[UNK]': 0, hello: 1 }, unk_token: '[UNK]' } };
    const error = await expectReject(
      loadTokenizer({ ...files, 'tokenizer.json': JSON.stringify(wordLevel) }),
      'NOT_SUPPORTED',
      'of a supported model type (BPE, WordPiece, Unigram); got model type "WordLevel"',
    );
    expect(error.message).toMatch(/help: /);
    const untyped = { ...json, model: Object.fromEntries(Object.entries(json.model).filter(([k]) => k !== 'type')) };
    expect((await loadTokenizer({ ...files, 'tokenizer.json': JSON.stringify(untyped) })).encode('hi')).toEqual((await loadTokenizer(files)).encode('hi')); // inferred, as before
  });
});

describe('loadTokenizer special tokens from the config', () => {
  const byteFiles = (edit: (config: Record<string, unknown>) => void = () => {}) => {
    const files = new ByteTokenizer().toHuggingFaceFiles();
    const config = JSON.parse(files['tokenizer_config.json']);
    edit(config);
    return { ...files, 'tokenizer_config.json': JSON.stringify(config) };
  };

  it('reads tokens written as strings or as {content: …}', async () => {
    const tokenizer = await loadTokenizer(
      byteFiles((c) => {
        c.bos_token = { content: '<|endoftext|>', lstrip: false, rstrip: false, normalized: false, special: true };
        c.unk_token = '<pad>';
      }),
    );
    expect([tokenizer.bosToken, tokenizer.bosTokenId, tokenizer.eosTokenId, tokenizer.padTokenId, tokenizer.unkTokenId]).toEqual(['<|endoftext|>', 256, 258, 259, 259]);
  });

  it('rejects a special token the vocabulary lacks, and ids the two files disagree on, naming the field', async () => {
    await expectReject(loadTokenizer(byteFiles((c) => (c.eos_token = '</s>'))), 'INVALID_ARGUMENT', 'expected eos_token "</s>" of tokenizer_config.json to be in the vocabulary of tokenizer.json');
    await expectReject(
      loadTokenizer(byteFiles((c) => (c.added_tokens_decoder = { '300': { content: '<pad>', special: true } }))),
      'INVALID_ARGUMENT',
      `expected "<pad>" to have id 300 in tokenizer.json as in tokenizer_config.json's added_tokens_decoder; it has id 259`,
    );
    await expectReject(loadTokenizer(byteFiles((c) => (c.additional_special_tokens = ['<tool>']))), 'INVALID_ARGUMENT', 'additional_special_tokens[0] "<tool>"');
  });

  it('takes the chat template from a named list or from chat_template.jinja', async () => {
    const listed = await loadTokenizer(
      byteFiles(
        (c) =>
          (c.chat_template = [
            { name: 'tool_use', template: 'T' },
            { name: 'default', template: 'D' },
          ]),
      ),
    );
    expect(listed.chatTemplate).toBe('D');
    const separate = await loadTokenizer({ ...byteFiles((c) => delete c.chat_template), 'chat_template.jinja': '{{ messages[0].content }}' });
    expect(separate.chatTemplate).toBe('{{ messages[0].content }}');
    const none = await loadTokenizer(byteFiles((c) => delete c.chat_template));
    expect(none.chatTemplate).toBeUndefined();
    await expectReject(loadTokenizer(byteFiles((c) => (c.chat_template = 7))), 'INVALID_ARGUMENT', 'expected chat_template in tokenizer_config.json to be a string');
  });
});

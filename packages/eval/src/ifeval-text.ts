// The text measures of IFEval's rules, restated from its instructions_util.py: Python's whitespace,
// word characters and word boundaries, `strip`, `isupper`/`islower`, and its word, sentence and
// capital-word counts.
/** Python's `str.isspace()` characters, which are also what Python's `re` means by `\s`. */
export const WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/** Python's `\w` on `str`: letters, numbers (`str.isalnum()`) and `_`. */
export const W = '[\\p{L}\\p{N}_]';
/** Python's `\b`: between a `\w` and a non-`\w` character (or the text's edge). */
export const B = `(?:(?<=${W})(?!${W})|(?<!${W})(?=${W}))`;

/** Python's `s.strip(chars)`; without `chars`, strips Python whitespace. */
export function strip(s: string, chars?: string): string {
  const set = chars === undefined ? `[${WS}]` : `[${chars.replace(/[\\\]^-]/g, '\\$&')}]`;
  return s.replace(new RegExp(`^${set}+|${set}+$`, 'gu'), '');
}

/** Python's `str.isupper()`: some character is uppercase and every cased character is. */
export const isUpper = (s: string): boolean => /\p{Uppercase}/u.test(s) && !/(?!\p{Uppercase})\p{Cased}/u.test(s);
/** Python's `str.islower()`: some character is lowercase and every cased character is. */
export const isLower = (s: string): boolean => /\p{Lowercase}/u.test(s) && !/(?!\p{Lowercase})\p{Cased}/u.test(s);

/**
 * Words as IFEval counts them: `nltk.tokenize.RegexpTokenizer(r"\w+")`, i.e. maximal runs of
 * letters, digits and `_` (Unicode). Exact, not an approximation: `hydro-thermal` is two words,
 * `don't` two, `3.5` two.
 *
 * @example
 * ```ts
 * countWords('word1, word2, word3, word4.'); // 4
 * ```
 */
export function countWords(text: string): number {
  return text.match(new RegExp(`${W}+`, 'gu'))?.length ?? 0;
}

/** Abbreviations after which a period does not end a sentence (a short stand-in for punkt's list). */
export const ABBREVIATIONS = new Set(['mr', 'mrs', 'ms', 'dr', 'prof', 'st', 'jr', 'sr', 'vs', 'e.g', 'i.e', 'inc', 'ltd', 'co', 'corp', 'u.s', 'u.k']);

/**
 * Sentences, approximating IFEval's `count_sentences` (NLTK's pre-trained English punkt model,
 * which we cannot ship). The text is cut into whitespace-separated tokens; a token ends a sentence
 * when, after dropping closing `"')]}*’”»`, it ends in `?` or `!`, or in a single `.` after a word
 * that is neither one letter (an initial) nor an abbreviation (Mr, Mrs, Ms, Dr, Prof, St, Jr, Sr,
 * vs, e.g, i.e, Inc, Ltd, Co, Corp, U.S, U.K), or in an ellipsis (`..`, `...`) followed by a word
 * starting with an uppercase letter. Non-blank text without such a token is one sentence; blank
 * text none. Like punkt, `3.14`, `x.y` and line breaks do not split, and `1.` in a numbered list
 * does. Punkt differs where its learned statistics decide: other abbreviations, and initials or
 * abbreviations followed by a capitalised word.
 *
 * @example
 * ```ts
 * countSentences('xx,x. xx,x! xx/x. x{x}x? x.'); // 5
 * countSentences('Dr. Smith met Mr. J. Doe at 3.30 yesterday. Then he left.'); // 2
 * ```
 */
export function countSentences(text: string): number {
  const tokens = text.split(new RegExp(`[${WS}]+`, 'u')).filter((t) => t !== '');
  let sentences = tokens.length > 0 ? 1 : 0;
  for (let i = 0; i < tokens.length - 1; i++) {
    const core = tokens[i].replace(/["')\]}*’”»]+$/u, '');
    const end = /[.?!]+$/.exec(core)?.[0];
    if (end === undefined) continue;
    const word = core
      .slice(0, -end.length)
      .replace(/^["'([{“‘«]+/u, '')
      .toLowerCase();
    if (/[?!]/.test(end)) sentences++;
    else if (end.length > 1) sentences += /^\p{Lu}/u.test(tokens[i + 1]) ? 1 : 0;
    else if (!/^\p{L}$/u.test(word) && !ABBREVIATIONS.has(word)) sentences++;
  }
  return sentences;
}

/**
 * Words in all capitals, approximating IFEval's count over `nltk.word_tokenize`: tokens are runs of
 * letters, digits and `_` joined by inner `-`, `.` or `'` (so `WELL-KNOWN` and `U.S.A` are one), with
 * the Treebank contractions `n't 's 'm 'd 'll 're 've` (ASCII apostrophe) split off (`DON'T` is `DO` +
 * `N'T`, two), and a token counts when Python's `isupper()` holds (so `I` and `A` count, `2024` does not).
 */
export function capitalWords(text: string): number {
  const tokens = text.match(new RegExp(`${W}+(?:['’.\\-]${W}+)*`, 'gu')) ?? [];
  return tokens.flatMap((t) => /^(.+?)(n't|'(?:s|m|d|ll|re|ve))$/iu.exec(t)?.slice(1) ?? [t]).filter(isUpper).length;
}

// IFEval's verifiable instruction checks (Zhou et al. 2023, "Instruction-Following Evaluation for
// Large Language Models", arXiv:2311.07911), strict and loose. Each rule restates, in our own code,
// the `check_following` of the class registered under the same id in google-research's
// instruction_following_eval/instructions_registry.py; the evaluation mirrors its evaluation_lib.py.
import { PosttrainError, describeValue, resolveOptions } from '@posttrain/tensor-core';
import { B, WS, capitalWords, countSentences, countWords, isLower, isUpper, strip } from './ifeval-text.js';

/**
 * The IFEval instruction ids {@link checkInstruction} supports: every id of IFEval's registry except
 * `language:response_language`, which needs the `langdetect` language identifier.
 *
 * @example
 * ```ts
 * const id: IfevalInstructionId = 'punctuation:no_comma';
 * ```
 */
export type IfevalInstructionId =
  | 'keywords:existence'
  | 'keywords:frequency'
  | 'keywords:forbidden_words'
  | 'keywords:letter_frequency'
  | 'length_constraints:number_sentences'
  | 'length_constraints:number_paragraphs'
  | 'length_constraints:number_words'
  | 'length_constraints:nth_paragraph_first_word'
  | 'detectable_content:number_placeholders'
  | 'detectable_content:postscript'
  | 'detectable_format:number_bullet_lists'
  | 'detectable_format:constrained_response'
  | 'detectable_format:number_highlighted_sections'
  | 'detectable_format:multiple_sections'
  | 'detectable_format:json_format'
  | 'detectable_format:title'
  | 'combination:two_responses'
  | 'combination:repeat_prompt'
  | 'startend:end_checker'
  | 'startend:quotation'
  | 'change_case:capital_word_frequency'
  | 'change_case:english_capital'
  | 'change_case:english_lowercase'
  | 'punctuation:no_comma';

/**
 * One line of IFEval's `input_data.jsonl`. `kwargs[i]` holds the arguments of
 * `instruction_id_list[i]`; a `null` value (as in the Hugging Face copy of the data) means unset.
 *
 * @example
 * ```ts
 * const record: IfevalRecord = { key: 1, prompt: 'Write a haiku. Do not use commas.', instruction_id_list: ['punctuation:no_comma'], kwargs: [{}] };
 * ```
 */
export interface IfevalRecord {
  key?: number | string;
  prompt: string;
  instruction_id_list: string[];
  kwargs: Record<string, unknown>[];
}

/** Reads and checks one instruction's kwargs; every failure names the kwarg, expected and received. */
function kwargReader(id: string, kwargs: Record<string, unknown>) {
  const get = <T>(name: string, expected: string, ok: (v: unknown) => boolean): T => {
    const value = kwargs[name];
    if (value === undefined || value === null || !ok(value)) {
      throw new PosttrainError('INVALID_ARGUMENT', `checkInstruction('${id}'): expected kwarg ${name} to be ${expected}; got ${describeValue(value)}`, {
        help: 'IFEval draws a random value for a missing kwarg; here every kwarg the check reads must be given, as in input_data.jsonl',
      });
    }
    return value as T;
  };
  return {
    int: (name: string) => get<number>(name, 'an integer ≥ 0', (v) => Number.isInteger(v) && (v as number) >= 0),
    str: (name: string) => strip(get<string>(name, 'a non-empty string', (v) => typeof v === 'string' && strip(v) !== '')),
    strings: (name: string) => get<string[]>(name, 'a non-empty array of strings', (v) => Array.isArray(v) && v.length > 0 && v.every((w) => typeof w === 'string')),
    /** One character, stripped and lowercased, as IFEval reads `letter`. */
    letter: (name: string) => strip(get<string>(name, 'one character', (v) => typeof v === 'string' && [...v].length === 1)).toLowerCase(),
    has: (name: string) => kwargs[name] !== undefined && kwargs[name] !== null,
    relation: (name: string) => get<string>(name, "'less than' or 'at least'", (v) => v === 'less than' || v === 'at least'),
    /** A regular expression from a kwarg's text, as IFEval passes keywords and markers to `re`. */
    regex: (name: string, source: string, flags: string) => {
      try {
        return new RegExp(source, flags);
      } catch (cause) {
        throw new PosttrainError('INVALID_ARGUMENT', `checkInstruction('${id}'): kwarg ${name} is used as a regular expression, as in IFEval; got ${describeValue(source)}`, { cause });
      }
    },
  };
}

type Kwargs = ReturnType<typeof kwargReader>;

/** IFEval's comparison: `'less than'` is `actual < threshold`, `'at least'` is `actual >= threshold`. */
const compare = (actual: number, relation: string, threshold: number): boolean => (relation === 'less than' ? actual < threshold : actual >= threshold);

const count = (text: string, pattern: RegExp): number => text.match(pattern)?.length ?? 0;

interface Rule {
  /** The kwarg names of IFEval's `build_description`. */
  kwargs: readonly string[];
  check(response: string, k: Kwargs, prompt: string | undefined): boolean;
}

/** Options of `detectable_format:constrained_response`. */
const CONSTRAINED_RESPONSES = ['My answer is yes.', 'My answer is no.', 'My answer is maybe.'];

const rules: Record<IfevalInstructionId, Rule> = {
  'keywords:existence': { kwargs: ['keywords'], check: (r, k) => k.strings('keywords').every((w) => k.regex('keywords', w, 'iu').test(r)) },
  'keywords:frequency': {
    kwargs: ['keyword', 'frequency', 'relation'],
    check: (r, k) => compare(count(r, k.regex('keyword', k.str('keyword'), 'giu')), k.relation('relation'), k.int('frequency')),
  },
  'keywords:forbidden_words': { kwargs: ['forbidden_words'], check: (r, k) => !k.strings('forbidden_words').some((w) => k.regex('forbidden_words', B + w + B, 'iu').test(r)) },
  'keywords:letter_frequency': {
    kwargs: ['letter', 'let_frequency', 'let_relation'],
    check: (r, k) => {
      const letter = k.letter('letter');
      return compare([...r.toLowerCase()].filter((c) => c === letter).length, k.relation('let_relation'), k.int('let_frequency'));
    },
  },
  'length_constraints:number_sentences': { kwargs: ['num_sentences', 'relation'], check: (r, k) => compare(countSentences(r), k.relation('relation'), k.int('num_sentences')) },
  'length_constraints:number_words': { kwargs: ['num_words', 'relation'], check: (r, k) => compare(countWords(r), k.relation('relation'), k.int('num_words')) },
  'length_constraints:number_paragraphs': {
    kwargs: ['num_paragraphs'],
    check: (r, k) => {
      // Paragraphs are separated by `***`; an empty one is allowed only first or last.
      const paragraphs = r.split(new RegExp(`[${WS}]?\\*\\*\\*[${WS}]?`, 'u'));
      const empty = paragraphs.map((p) => strip(p) === '');
      if (empty.some((e, i) => e && i > 0 && i < paragraphs.length - 1)) return false;
      return paragraphs.length - empty.filter(Boolean).length === k.int('num_paragraphs');
    },
  },
  'length_constraints:nth_paragraph_first_word': {
    kwargs: ['num_paragraphs', 'nth_paragraph', 'first_word'],
    check: (r, k) => {
      // Paragraphs are separated by "\n\n"; the nth (1-based, counting empty pieces) must start with first_word.
      const paragraphs = r.split('\n\n');
      const n = paragraphs.filter((p) => strip(p) !== '').length;
      const nth = k.int('nth_paragraph');
      const paragraph = nth >= 1 && nth <= n ? strip(paragraphs[nth - 1]) : '';
      if (paragraph === '') return false;
      // IFEval: the first whitespace-separated token, `'` then `"` stripped from its left, up to the first of . , ? ! ' "
      const word = paragraph
        .split(new RegExp(`[${WS}]+`, 'u'))[0]
        .replace(/^'+/, '')
        .replace(/^"+/, '');
      const first = /^[^.,?!'"]*/.exec(word)?.[0] ?? '';
      return n === k.int('num_paragraphs') && first.toLowerCase() === k.str('first_word').toLowerCase();
    },
  },
  'detectable_content:number_placeholders': { kwargs: ['num_placeholders'], check: (r, k) => count(r, /\[[^\n]*?\]/g) >= k.int('num_placeholders') },
  'detectable_content:postscript': {
    kwargs: ['postscript_marker'],
    check: (r, k) => {
      const marker = k.str('postscript_marker');
      const source = marker === 'P.P.S' ? `p\\.[${WS}]?p\\.[${WS}]?s` : marker === 'P.S.' ? `p\\.[${WS}]?s\\.` : marker.toLowerCase();
      return k.regex('postscript_marker', source, 'u').test(r.toLowerCase());
    },
  },
  'detectable_format:number_bullet_lists': {
    kwargs: ['num_bullets'],
    // Python's multiline `^\s*\*[^\*].*$` and `^\s*-.*$`: lines starting with `* ` or `-`.
    check: (r, k) => count(r, new RegExp(`(?<![^\\n])[${WS}]*\\*[^*][^\\n]*(?![^\\n])`, 'gu')) + count(r, new RegExp(`(?<![^\\n])[${WS}]*-[^\\n]*(?![^\\n])`, 'gu')) === k.int('num_bullets'),
  },
  'detectable_format:constrained_response': { kwargs: [], check: (r) => CONSTRAINED_RESPONSES.some((option) => strip(r).includes(option)) },
  'detectable_format:number_highlighted_sections': {
    kwargs: ['num_highlights'],
    check: (r, k) => {
      const single = (r.match(/\*[^\n*]*\*/g) ?? []).filter((h) => strip(strip(h, '*')) !== '').length;
      const double = (r.match(/\*\*[^\n*]*\*\*/g) ?? []).filter((h) => strip(h.slice(2, -2)) !== '').length;
      return single + double >= k.int('num_highlights');
    },
  },
  'detectable_format:multiple_sections': {
    kwargs: ['section_spliter', 'num_sections'],
    check: (r, k) => count(r, k.regex('section_spliter', `[${WS}]?${k.str('section_spliter')}[${WS}]?\\p{Nd}+[${WS}]?`, 'gu')) >= k.int('num_sections'),
  },
  'detectable_format:json_format': {
    kwargs: [],
    check: (r) => {
      let value = strip(r);
      for (const prefix of ['```json', '```Json', '```JSON', '```']) if (value.startsWith(prefix)) value = value.slice(prefix.length);
      if (value.endsWith('```')) value = value.slice(0, -3);
      try {
        JSON.parse(strip(value));
        return true;
      } catch {
        return false;
      }
    },
  },
  'detectable_format:title': { kwargs: [], check: (r) => (r.match(/<<[^\n]+>>/g) ?? []).some((t) => strip(t.replace(/^<+/, '').replace(/>+$/, '')) !== '') },
  'combination:two_responses': {
    kwargs: [],
    check: (r) => {
      const parts = r.split('******');
      if (parts.some((p, i) => strip(p) === '' && i > 0 && i < parts.length - 1)) return false;
      const valid = parts.filter((p) => strip(p) !== '');
      return valid.length === 2 && strip(valid[0]) !== strip(valid[1]);
    },
  },
  'combination:repeat_prompt': {
    kwargs: ['prompt_to_repeat'],
    check: (r, k, prompt) => {
      const repeat = k.has('prompt_to_repeat') || prompt === undefined ? k.str('prompt_to_repeat') : strip(prompt);
      return strip(r).toLowerCase().startsWith(repeat.toLowerCase());
    },
  },
  'startend:end_checker': { kwargs: ['end_phrase'], check: (r, k) => strip(strip(r), '"').toLowerCase().endsWith(k.str('end_phrase').toLowerCase()) },
  'startend:quotation': {
    kwargs: [],
    check: (r) => {
      const value = strip(r);
      return value.length > 1 && value.startsWith('"') && value.endsWith('"');
    },
  },
  'change_case:capital_word_frequency': {
    kwargs: ['capital_frequency', 'capital_relation'],
    check: (r, k) => compare(capitalWords(r), k.relation('capital_relation'), k.int('capital_frequency')),
  },
  'change_case:english_capital': { kwargs: [], check: (r) => isUpper(r) },
  'change_case:english_lowercase': { kwargs: [], check: (r) => isLower(r) },
  'punctuation:no_comma': { kwargs: [], check: (r) => !r.includes(',') },
};

/**
 * The supported ids, in IFEval's registry order.
 *
 * @example
 * ```ts
 * ifevalInstructionIds.includes('startend:quotation'); // true
 * ```
 */
export const ifevalInstructionIds: readonly IfevalInstructionId[] = Object.freeze(Object.keys(rules) as IfevalInstructionId[]);

/**
 * Whether `response` follows instruction `id` with IFEval's `kwargs`, as IFEval's strict evaluation
 * decides it: a blank response follows nothing, otherwise the instruction's `check_following`.
 * Keywords, forbidden words and custom postscript markers are regular expressions, as in IFEval.
 * Comparisons are IFEval's: `'less than'` N means fewer than N, `'at least'` N means N or more.
 *
 * Words are counted exactly as IFEval counts them ({@link countWords}); sentences approximate NLTK's
 * punkt ({@link countSentences}); capital words approximate `nltk.word_tokenize`. Other differences:
 * `change_case:english_capital`/`english_lowercase` check the case only (IFEval also asks
 * `langdetect` for English), `detectable_format:json_format` uses `JSON.parse` (Python also accepts
 * `NaN` and `Infinity`), `language:response_language` is not supported, and a missing kwarg throws
 * where IFEval would draw a random one. For `combination:repeat_prompt`, `prompt` stands in when
 * `prompt_to_repeat` is null or missing. `null` kwargs count as missing.
 *
 * @throws PosttrainError for an unknown id, an unknown kwarg, or a missing or wrong-typed kwarg.
 * @example
 * ```ts
 * checkInstruction('length_constraints:number_words', { num_words: 3, relation: 'less than' }, 'Two words'); // true
 * checkInstruction('punctuation:no_comma', {}, 'Yes, sir'); // false
 * ```
 */
export function checkInstruction(id: string, kwargs: Record<string, unknown>, response: string, prompt?: string): boolean {
  const rule = Object.hasOwn(rules, id) ? rules[id as IfevalInstructionId] : undefined;
  if (rule === undefined) {
    const why = id === 'language:response_language' ? ' (it needs the langdetect language identifier)' : '';
    throw new PosttrainError('NOT_SUPPORTED', `checkInstruction: unknown or unsupported instruction id '${id}'${why}; supported ids are ${ifevalInstructionIds.join(', ')}`);
  }
  for (const [name, value] of Object.entries(kwargs)) {
    if (value !== null && value !== undefined && !rule.kwargs.includes(name)) {
      throw new PosttrainError('INVALID_ARGUMENT', `checkInstruction('${id}'): unknown kwarg ${name}; known kwargs are [${rule.kwargs.join(', ')}]`);
    }
  }
  const followed = rule.check(response, kwargReader(id, kwargs), prompt);
  return strip(response) !== '' && followed;
}

/**
 * Options of {@link ifevalAccuracy}.
 *
 * @example
 * ```ts
 * const options: Partial<IfevalOptions> = { loose: true };
 * ```
 */
export interface IfevalOptions {
  /** IFEval's loose evaluation, an upper bound on following (default false: strict). */
  loose: boolean;
}

/**
 * The defaults of {@link ifevalAccuracy}.
 *
 * @example
 * ```ts
 * defaultIfevalOptions.loose; // false
 * ```
 */
export const defaultIfevalOptions: Readonly<IfevalOptions> = Object.freeze({ loose: false });

/**
 * What {@link ifevalAccuracy} returns: IFEval's prompt-level and instruction-level accuracy.
 *
 * @example
 * ```ts
 * const { promptLevelAccuracy, perInstruction } = ifevalAccuracy(records, responses);
 * perInstruction['punctuation:no_comma']; // { followed: 1, total: 2 }
 * ```
 */
export interface IfevalResult {
  /** Prompts whose every instruction was followed / prompts. */
  promptLevelAccuracy: number;
  /** Instructions followed / instructions, over all prompts. */
  instructionLevelAccuracy: number;
  prompts: number;
  instructions: number;
  /** Per full instruction id (IFEval's second-tier report). */
  perInstruction: Record<string, { followed: number; total: number }>;
  results: { key?: number | string; prompt: string; followed: boolean[]; followedAll: boolean }[];
}

/**
 * IFEval's loose response variants (evaluation_lib.py): the response, without its first line,
 * without its last, without both, and each of these four with every `*` removed.
 */
function looseVariants(response: string): string[] {
  const lines = response.split('\n');
  const trimmed = [response, strip(lines.slice(1).join('\n')), strip(lines.slice(0, -1).join('\n')), strip(lines.slice(1, -1).join('\n'))];
  return [...trimmed, ...trimmed.map((r) => r.replaceAll('*', ''))];
}

/**
 * Scores responses on IFEval records, as IFEval's evaluation_main does. `responses` are by record
 * index, or a map from prompt to response (IFEval's response file). With `loose`, an instruction is
 * followed when any of IFEval's eight loose variants of the response is non-blank and follows it.
 *
 * @throws PosttrainError when the counts of records and responses differ, a prompt has no response,
 * a record's kwargs do not match its instruction ids, or any {@link checkInstruction} error.
 * @example
 * ```ts
 * const records: IfevalRecord[] = [{ prompt: 'Say hi without commas.', instruction_id_list: ['punctuation:no_comma'], kwargs: [{}] }];
 * ifevalAccuracy(records, ['Hi there']).promptLevelAccuracy; // 1
 * ```
 */
export function ifevalAccuracy(records: readonly IfevalRecord[], responses: readonly string[] | ReadonlyMap<string, string>, options?: Partial<IfevalOptions>): IfevalResult {
  const { loose } = resolveOptions('ifevalAccuracy', options, defaultIfevalOptions);
  if (records.length === 0) throw new PosttrainError('INVALID_ARGUMENT', 'ifevalAccuracy: expected at least one record; got 0');
  if (Array.isArray(responses) && responses.length !== records.length) {
    throw new PosttrainError('INVALID_ARGUMENT', `ifevalAccuracy: expected responses to hold ${records.length} responses, one per record; got ${responses.length}`);
  }
  const perInstruction: IfevalResult['perInstruction'] = {};
  const results = records.map((record, i) => {
    const response = Array.isArray(responses) ? (responses as readonly string[])[i] : (responses as ReadonlyMap<string, string>).get(record.prompt);
    if (typeof response !== 'string') {
      throw new PosttrainError('INVALID_ARGUMENT', `ifevalAccuracy: expected responses to hold a response for prompt ${describeValue(record.prompt)}; got ${describeValue(response)}`);
    }
    if (record.kwargs.length !== record.instruction_id_list.length) {
      throw new PosttrainError(
        'INVALID_ARGUMENT',
        `ifevalAccuracy: expected record ${record.key ?? i} to have one kwargs object per instruction id (${record.instruction_id_list.length}); got ${record.kwargs.length}`,
      );
    }
    const variants = loose ? looseVariants(response) : [response];
    const followed = record.instruction_id_list.map((id, j) => {
      const ok = variants.some((r) => checkInstruction(id, record.kwargs[j], r, record.prompt));
      perInstruction[id] ??= { followed: 0, total: 0 };
      perInstruction[id].total++;
      if (ok) perInstruction[id].followed++;
      return ok;
    });
    return { key: record.key, prompt: record.prompt, followed, followedAll: followed.every(Boolean) };
  });
  const instructions = results.reduce((n, r) => n + r.followed.length, 0);
  return {
    promptLevelAccuracy: results.filter((r) => r.followedAll).length / results.length,
    instructionLevelAccuracy: results.reduce((n, r) => n + r.followed.filter(Boolean).length, 0) / instructions,
    prompts: results.length,
    instructions,
    perInstruction,
    results,
  };
}

import { describe, expect, it } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';
import { checkInstruction as check, type IfevalRecord, ifevalAccuracy, ifevalInstructionIds } from './ifeval.js';
import { countSentences, countWords } from './ifeval-text.js';

/** The error `fn` throws, asserted to be a PosttrainError. */
function thrown(fn: () => unknown): Error & { code: string } {
  try {
    fn();
  } catch (e) {
    expect(isPosttrainError(e)).toBe(true);
    return e as Error & { code: string };
  }
  throw new Error('expected a throw');
}

describe('countWords (IFEval count_words: runs of \\w)', () => {
  it('matches the counts of IFEval instructions_util_test.py', () => {
    expect(countWords('word1, word2, word3, word4.')).toBe(4);
    expect(countWords('Bard can you tell me which is the best optimization method for the\ntransition from an hydro-thermal system to an hydro-renewables system')).toBe(24);
    expect(countWords('\n Hyphenated-word has two word counts.\n')).toBe(6);
  });

  it('splits at apostrophes and dots and counts non-ASCII letters', () => {
    expect(countWords("don't stop 3.5")).toBe(5); // don, t, stop, 3, 5
    expect(countWords('naïve café 日本 snake_case')).toBe(4);
    expect(countWords(' ... ')).toBe(0);
  });
});

describe('countSentences (approximating punkt)', () => {
  it('matches the counts of IFEval instructions_util_test.py', () => {
    expect(countSentences('xx,x. xx,x! xx/x. x{x}x? x.')).toBe(5);
    expect(countSentences('xx,x! xxxx. x(x)x?')).toBe(3);
    expect(countSentences('xxxx. xx,x! xx|x. x&x x?')).toBe(4);
    expect(countSentences('xx-x]xx,x! x{x}xx,x.')).toBe(2);
  });

  it('keeps abbreviations, initials, decimals and lowercase after an ellipsis together', () => {
    expect(countSentences('Dr. Smith met Mr. J. Doe at 3.30 yesterday. Then he left.')).toBe(2);
    expect(countSentences('Wait... what? Yes... Fine.')).toBe(3); // "Wait... what?" | "Yes..." | "Fine."
    expect(countSentences('He said "Stop." Then he left.')).toBe(2);
    expect(countSentences('Steps:\n1. Mix.\n2. Bake.')).toBe(4); // punkt also cuts after "1." and "2."
    expect(countSentences('No final stop\n\nstill one')).toBe(1);
    expect(countSentences(' \n ')).toBe(0);
  });
});

describe('checkInstruction: keywords', () => {
  it('existence: every keyword, case-insensitively, as a regular expression', () => {
    const kwargs = { keywords: ['apple', 'Banana'] };
    expect(check('keywords:existence', kwargs, 'An APPLE and a banana.')).toBe(true);
    expect(check('keywords:existence', kwargs, 'An apple alone.')).toBe(false);
    expect(check('keywords:existence', { keywords: ['colou?r'] }, 'What color?')).toBe(true);
  });

  it('frequency: counts regex matches, substrings included, with both relations at the boundary', () => {
    const response = 'The other one'; // "The" and "the" inside "other": 2
    expect(check('keywords:frequency', { keyword: 'the', frequency: 2, relation: 'at least' }, response)).toBe(true);
    expect(check('keywords:frequency', { keyword: 'the', frequency: 2, relation: 'less than' }, response)).toBe(false);
    expect(check('keywords:frequency', { keyword: 'the', frequency: 3, relation: 'less than' }, response)).toBe(true);
    expect(check('keywords:frequency', { keyword: 'the', frequency: 3, relation: 'at least' }, response)).toBe(false);
    // IFEval's test: keyword "  keyword " (stripped) appears 3 times
    expect(check('keywords:frequency', { keyword: '  keyword ', frequency: 4, relation: 'less than' }, 'keyword, Keyword, KEYWORD')).toBe(true);
  });

  it('forbidden_words: whole words only, with Unicode word boundaries', () => {
    expect(check('keywords:forbidden_words', { forbidden_words: ['cat'] }, 'A catalog of dogs.')).toBe(true);
    expect(check('keywords:forbidden_words', { forbidden_words: ['cat'] }, 'The Cat sat.')).toBe(false);
    expect(check('keywords:forbidden_words', { forbidden_words: ['café'] }, 'Two cafés.')).toBe(true);
    expect(check('keywords:forbidden_words', { forbidden_words: ['café'] }, 'Un café.')).toBe(false);
  });

  it('letter_frequency: case-insensitive count of one character', () => {
    const kwargs = (let_frequency: number, let_relation: string) => ({ letter: 'A', let_frequency, let_relation });
    expect(check('keywords:letter_frequency', kwargs(3, 'at least'), 'Banana')).toBe(true); // 3 a's
    expect(check('keywords:letter_frequency', kwargs(3, 'less than'), 'Banana')).toBe(false);
    expect(check('keywords:letter_frequency', kwargs(4, 'less than'), 'Banana')).toBe(true);
    expect(check('keywords:letter_frequency', kwargs(4, 'at least'), 'Banana')).toBe(false);
  });
});

describe('checkInstruction: length_constraints', () => {
  it('number_words: exactly N words fails "less than" N and passes "at least" N', () => {
    const words = (num_words: number, relation: string) => check('length_constraints:number_words', { num_words, relation }, 'one two three');
    expect(words(3, 'less than')).toBe(false);
    expect(words(3, 'at least')).toBe(true);
    expect(words(4, 'less than')).toBe(true);
    expect(words(4, 'at least')).toBe(false);
    // IFEval's test message with 16 words
    const sixteen = 'L4RGE L4NGU4GE M0DEL: AI syst3m th4t und3rstands, g3n3r4tes, or tr4nsforms\nl4ngu4g3 b4s3d on pr3vious l3arning & d4t4.';
    expect(check('length_constraints:number_words', { num_words: 16, relation: 'less than' }, sixteen)).toBe(false);
    expect(check('length_constraints:number_words', { num_words: 16, relation: 'at least' }, sixteen)).toBe(true);
  });

  it('number_sentences: exactly N sentences fails "less than" N and passes "at least" N', () => {
    const sentences = (num_sentences: number, relation: string) => check('length_constraints:number_sentences', { num_sentences, relation }, 'One. Two! Three?');
    expect(sentences(3, 'less than')).toBe(false);
    expect(sentences(3, 'at least')).toBe(true);
    expect(sentences(4, 'less than')).toBe(true);
    expect(sentences(4, 'at least')).toBe(false);
  });

  it('number_paragraphs: *** separated, empty only at the ends', () => {
    expect(check('length_constraints:number_paragraphs', { num_paragraphs: 3 }, 'A\n***\nB\n***\nC')).toBe(true);
    expect(check('length_constraints:number_paragraphs', { num_paragraphs: 2 }, 'A\n***\nB\n***\nC')).toBe(false);
    expect(check('length_constraints:number_paragraphs', { num_paragraphs: 2 }, '***\nA\n***\nB\n***')).toBe(true);
    expect(check('length_constraints:number_paragraphs', { num_paragraphs: 2 }, 'A\n***\n***\nB')).toBe(false); // empty middle
  });

  it('nth_paragraph_first_word: count of \\n\\n paragraphs and the first word, quotes and punctuation dropped', () => {
    const response = 'Intro here.\n\n"Hello, world," she said.\n\nEnd.';
    expect(check('length_constraints:nth_paragraph_first_word', { num_paragraphs: 3, nth_paragraph: 2, first_word: 'Hello' }, response)).toBe(true);
    expect(check('length_constraints:nth_paragraph_first_word', { num_paragraphs: 3, nth_paragraph: 2, first_word: 'world' }, response)).toBe(false);
    expect(check('length_constraints:nth_paragraph_first_word', { num_paragraphs: 2, nth_paragraph: 2, first_word: 'hello' }, response)).toBe(false);
    expect(check('length_constraints:nth_paragraph_first_word', { num_paragraphs: 3, nth_paragraph: 4, first_word: 'end' }, response)).toBe(false);
  });
});

describe('checkInstruction: detectable_content and detectable_format', () => {
  it('number_placeholders: at least N [..] on one line', () => {
    expect(check('detectable_content:number_placeholders', { num_placeholders: 2 }, 'Dear [name], at [address].')).toBe(true);
    expect(check('detectable_content:number_placeholders', { num_placeholders: 3 }, 'Dear [name], at [address].')).toBe(false);
    expect(check('detectable_content:number_placeholders', { num_placeholders: 1 }, 'An [open\nclose] bracket.')).toBe(false);
  });

  it('postscript: P.S., P.P.S and custom markers, case-insensitively', () => {
    expect(check('detectable_content:postscript', { postscript_marker: 'P.S.' }, 'Hi.\np.s. see you')).toBe(true);
    expect(check('detectable_content:postscript', { postscript_marker: 'P.S.' }, 'Hi. PS see you')).toBe(false);
    expect(check('detectable_content:postscript', { postscript_marker: 'P.P.S' }, 'Hi.\nP. P. S. later')).toBe(true);
    expect(check('detectable_content:postscript', { postscript_marker: 'P.P.S' }, 'Hi.\nP.S. later')).toBe(false);
    expect(check('detectable_content:postscript', { postscript_marker: 'Note:' }, 'Hi.\nNOTE: later')).toBe(true);
  });

  it('number_bullet_lists: exactly N lines starting with "* " or "-"', () => {
    expect(check('detectable_format:number_bullet_lists', { num_bullets: 3 }, 'List:\n* one\n  * two\n- three')).toBe(true);
    expect(check('detectable_format:number_bullet_lists', { num_bullets: 2 }, 'List:\n* one\n  * two\n- three')).toBe(false);
    expect(check('detectable_format:number_bullet_lists', { num_bullets: 1 }, '**bold** line\n* one')).toBe(true); // "**" does not start a bullet
  });

  it('constrained_response: contains one of the three options', () => {
    expect(check('detectable_format:constrained_response', {}, '\n My answer is maybe. Because.')).toBe(true);
    expect(check('detectable_format:constrained_response', {}, 'My answer is: yes.')).toBe(false);
  });

  it('number_highlighted_sections: *single* and **double** highlights that are not blank', () => {
    // *one* counts; "**two**" gives blank single matches "**" but one double; "** **" is blank.
    const response = 'This *one* and **two** and ** ** end';
    expect(check('detectable_format:number_highlighted_sections', { num_highlights: 2 }, response)).toBe(true);
    expect(check('detectable_format:number_highlighted_sections', { num_highlights: 3 }, response)).toBe(false);
  });

  it('multiple_sections: at least N "<spliter> <digits>" markers, case-sensitively', () => {
    const response = 'Section 1\nIntro\nSection 2\nBody';
    expect(check('detectable_format:multiple_sections', { section_spliter: 'Section', num_sections: 2 }, response)).toBe(true);
    expect(check('detectable_format:multiple_sections', { section_spliter: 'Section', num_sections: 3 }, response)).toBe(false);
    expect(check('detectable_format:multiple_sections', { section_spliter: 'SECTION', num_sections: 1 }, response)).toBe(false);
  });

  it('json_format: parses after dropping ``` fences', () => {
    expect(check('detectable_format:json_format', {}, '```json\n{"a": [1, 2]}\n```')).toBe(true);
    expect(check('detectable_format:json_format', {}, ' [1, 2] ')).toBe(true);
    expect(check('detectable_format:json_format', {}, '{"a": 1,}')).toBe(false);
    expect(check('detectable_format:json_format', {}, 'Here: {"a": 1}')).toBe(false);
  });

  it('title: a non-blank <<title>> on one line', () => {
    expect(check('detectable_format:title', {}, '<<Song of Joy>>\nLa la la.')).toBe(true);
    expect(check('detectable_format:title', {}, '<< >>\nNo title.')).toBe(false);
    expect(check('detectable_format:title', {}, '<<Not a\ntitle>>')).toBe(false);
  });
});

describe('checkInstruction: combination, startend, change_case, punctuation', () => {
  it('two_responses: two different non-blank parts around ******', () => {
    expect(check('combination:two_responses', {}, 'Answer A\n******\nAnswer B')).toBe(true);
    expect(check('combination:two_responses', {}, '******\nAnswer A\n******\nAnswer B\n******')).toBe(true);
    expect(check('combination:two_responses', {}, 'Same\n******\n Same ')).toBe(false);
    expect(check('combination:two_responses', {}, 'A\n******\n\n******\nB')).toBe(false); // blank middle part
    expect(check('combination:two_responses', {}, 'A\n******\nB\n******\nC')).toBe(false);
  });

  it('repeat_prompt: starts with the prompt, case-insensitively; the prompt argument stands in for a null prompt_to_repeat', () => {
    const kwargs = { prompt_to_repeat: 'Write a CL description.' };
    expect(check('combination:repeat_prompt', kwargs, 'write a CL description. Hi, Le and TJ.')).toBe(true);
    expect(check('combination:repeat_prompt', kwargs, 'Hi. Write a CL description.')).toBe(false);
    expect(check('combination:repeat_prompt', { prompt_to_repeat: null }, 'Say hi. Hi!', 'Say hi.')).toBe(true);
    expect(check('combination:repeat_prompt', { prompt_to_repeat: null }, 'Hi!', 'Say hi.')).toBe(false);
  });

  it('end_checker: ends with the phrase, case-insensitively, outer quotes ignored', () => {
    const kwargs = { end_phrase: ' Any other questions? ' };
    expect(check('startend:end_checker', kwargs, 'The answer is 7. any other questions?"\n')).toBe(true);
    expect(check('startend:end_checker', kwargs, 'Any other questions? Bye.')).toBe(false);
  });

  it('quotation: wrapped in double quotes, at least two characters', () => {
    expect(check('startend:quotation', {}, '  "Hello there"  ')).toBe(true);
    expect(check('startend:quotation', {}, '"Hello" there')).toBe(false);
    expect(check('startend:quotation', {}, '"')).toBe(false);
  });

  it('capital_word_frequency: Treebank-like tokens in all capitals', () => {
    // WELL-KNOWN (1), U.S.A (1); DON'T is DO + N'T (2); "I" (1); 2024 and "data" are not: 5 in all.
    const response = "WELL-KNOWN U.S.A data: I DON'T know 2024";
    const kwargs = (capital_frequency: number, capital_relation: string) => ({ capital_frequency, capital_relation });
    expect(check('change_case:capital_word_frequency', kwargs(5, 'at least'), response)).toBe(true);
    expect(check('change_case:capital_word_frequency', kwargs(5, 'less than'), response)).toBe(false);
    expect(check('change_case:capital_word_frequency', kwargs(6, 'less than'), response)).toBe(true);
    expect(check('change_case:capital_word_frequency', kwargs(6, 'at least'), response)).toBe(false);
  });

  it('english_capital and english_lowercase: Python isupper/islower', () => {
    expect(check('change_case:english_capital', {}, 'HELLO WORLD 123!')).toBe(true);
    expect(check('change_case:english_capital', {}, 'HELLO World')).toBe(false);
    expect(check('change_case:english_capital', {}, '123')).toBe(false); // no cased character
    expect(check('change_case:english_lowercase', {}, 'hello world 123')).toBe(true);
    expect(check('change_case:english_lowercase', {}, 'Hello world')).toBe(false);
  });

  it('no_comma: no ASCII comma', () => {
    expect(check('punctuation:no_comma', {}, 'No commas here. Only stops.')).toBe(true);
    expect(check('punctuation:no_comma', {}, 'One, two')).toBe(false);
    expect(check('punctuation:no_comma', {}, '一，二')).toBe(true); // a full-width comma is not ","
  });

  it('a blank response follows nothing, as in IFEval evaluation_lib', () => {
    expect(check('punctuation:no_comma', {}, ' \n ')).toBe(false);
    expect(check('length_constraints:number_words', { num_words: 5, relation: 'less than' }, '')).toBe(false);
  });

  it('ignores null kwargs, as in the Hugging Face copy of input_data.jsonl', () => {
    expect(check('length_constraints:number_words', { num_words: 3, relation: 'less than', keywords: null, letter: null }, 'two words')).toBe(true);
  });
});

describe("checkInstruction on IFEval's own messages (instructions_test.py)", () => {
  it('bullets, highlights and paragraphs', () => {
    const bullets = (text: string, num_bullets: number) => check('detectable_format:number_bullet_lists', { num_bullets }, text);
    expect(
      bullets(
        '\n  Start each line with an asterisk (*). For example:\n  * This is a bullet point.\n  *(no space required)Another bullet point.\n  * (no newline ending required)Another bullet point.\n  markdown bullet points.',
        3,
      ),
    ).toBe(true);
    expect(
      bullets(
        '\n  Check that inline asterisk (*), *, will not be counted. Only * that starts a\n  bullet list will be counted:\n    * This is a bullet point.\n    * Another bullet point.\n    . dot is not counted',
        2,
      ),
    ).toBe(true);
    expect(bullets('\n  Three markdown bullets:\n  - I am one.\n  - I am two.\n  -I am three.', 3)).toBe(true);
    expect(bullets('\n  Paragraph 1\n  ***\n  Paragraph 2\n  ***\n  Paragraph 3\n  * only one bullet point\n  ', 1)).toBe(true);
    const highlights = (text: string, num_highlights: number) => check('detectable_format:number_highlighted_sections', { num_highlights }, text);
    expect(
      highlights('\n  equations highlighted with Markdown:\n  *Finite difference methods\n  *Finite element methods*\n  *Boundary element methods\n  *Monte Carlo methods\n  I hope this helps!', 2),
    ).toBe(false);
    expect(highlights('\n  There is allowed to be *two different* highlighted *sections in the same*\n  line. **This is also true** for **double markdown highlights.**\n  ', 4)).toBe(true);
    const paragraphs = (text: string, num_paragraphs: number) => check('length_constraints:number_paragraphs', { num_paragraphs }, text);
    expect(paragraphs('\n          ***\n  paragraph 1\n          ***\n      paragraph 2\n          ***\n      paragraph 3', 3)).toBe(true);
    expect(paragraphs('\n  paragraph 1\n          ***\n      paragraph 2\n          ***\n          ***', 2)).toBe(false);
  });

  it('first words, two responses, capital words, postscripts, forbidden words and endings', () => {
    const five = (third: string) => `\n  Wow this is long.\n\n  I can't believe it.\n\n  ${third}\n\n  I guess I am proof.\n\n  Haha, you go that right.`;
    const firstWord = { num_paragraphs: 5, nth_paragraph: 3, first_word: 'Really' };
    expect(check('length_constraints:nth_paragraph_first_word', firstWord, five('"Really?! more than three? No way!"'))).toBe(true);
    expect(check('length_constraints:nth_paragraph_first_word', firstWord, five('Rea!lly more than three? No way!'))).toBe(false);
    expect(check('combination:two_responses', {}, '\n  ******\n  Response 1.\n  ******\n  ******\n  Response 2.\n  ******\n  ')).toBe(false);
    expect(check('combination:two_responses', {}, '\n  ******\n  Response 1\n  ******\n  Response 2\n  ******\n  ')).toBe(true);
    const capitals = (capital_frequency: number, capital_relation: string, text: string) => check('change_case:capital_word_frequency', { capital_frequency, capital_relation }, text);
    expect(capitals(3, 'at least', '\n  HERE there are THREE FUlly CAPITAL words.\n  ')).toBe(true);
    expect(capitals(5, 'less than', '\n  THERE are Four FULLY CAPITAL WORDS. Many Others Are Only Partially So.\n  ')).toBe(true);
    expect(capitals(4, 'less than', '\n  THERE are Four FULLY CAPITAL WORDS. Many Others Are Only Partially So.\n  ')).toBe(false);
    expect(check('detectable_content:postscript', { postscript_marker: 'P.S.' }, 'size and is just a point. (not starting a new line) P.S. I hope you enjoyed')).toBe(true);
    expect(check('detectable_content:postscript', { postscript_marker: 'P.S.' }, '\n  The mysteries.\n  P. S. Sometimes there are even spaces between P. and S..\n  ')).toBe(true);
    expect(check('detectable_content:postscript', { postscript_marker: 'PS:' }, '\n  I am still learning.\n\n  P.S. I hope this is what you were looking for.')).toBe(false);
    const forbidden = ['GENE', 'TRANSFORM'];
    expect(check('keywords:forbidden_words', { forbidden_words: forbidden }, 'GPT, or Generative Pre-trained Transformer, is a family of neural network models.')).toBe(true);
    expect(check('keywords:forbidden_words', { forbidden_words: ['HOUSE', 'POWER'] }, 'The Nazis quickly consolidated their power.')).toBe(false);
    expect(check('startend:end_checker', { end_phrase: '\n  This is the end.\n  ' }, '\n  I am required to say that this is the end.\n  ')).toBe(true);
    expect(check('startend:end_checker', { end_phrase: '\n  This will fail.\n  ' }, '\n  This will fail. Paris is cool.\n  ')).toBe(false);
  });
});

describe('checkInstruction errors', () => {
  it('names an unknown id and lists the supported ones', () => {
    const e = thrown(() => check('keywords:nope', {}, 'x'));
    expect(e.code).toBe('NOT_SUPPORTED');
    expect(e.message).toContain("unknown or unsupported instruction id 'keywords:nope'");
    expect(e.message).toContain('; supported ids are keywords:existence, keywords:frequency, ');
    expect(e.message).toContain('punctuation:no_comma');
    expect(thrown(() => check('language:response_language', { language: 'en' }, 'Hi')).message).toContain('needs the langdetect');
  });

  it('names a missing or wrong-typed kwarg with expected and received values', () => {
    expect(thrown(() => check('length_constraints:number_words', { relation: 'at least' }, 'x')).message).toContain(
      "checkInstruction('length_constraints:number_words'): expected kwarg num_words to be an integer ≥ 0; got undefined",
    );
    expect(thrown(() => check('length_constraints:number_words', { num_words: '5', relation: 'at least' }, 'x')).message).toContain('expected kwarg num_words to be an integer ≥ 0; got "5"');
    expect(thrown(() => check('keywords:frequency', { keyword: 'x', frequency: 1, relation: 'at most' }, 'x')).message).toContain(
      "expected kwarg relation to be 'less than' or 'at least'; got \"at most\"",
    );
    expect(thrown(() => check('keywords:letter_frequency', { letter: 'ab', let_frequency: 1, let_relation: 'at least' }, 'x')).message).toContain(
      'expected kwarg letter to be one character; got "ab"',
    );
  });

  it('names an unknown kwarg and lists the known ones', () => {
    expect(thrown(() => check('keywords:letter_frequency', { letter: 'a', frequency: 3, let_relation: 'at least' }, 'x')).message).toContain(
      'unknown kwarg frequency; known kwargs are [letter, let_frequency, let_relation]',
    );
  });
});

describe('ifevalInstructionIds', () => {
  it('lists the 24 supported ids of the IFEval registry, without language:response_language', () => {
    expect(ifevalInstructionIds).toHaveLength(24);
    expect(new Set(ifevalInstructionIds).size).toBe(24);
    expect(ifevalInstructionIds).toContain('detectable_format:number_highlighted_sections');
    expect(ifevalInstructionIds).not.toContain('language:response_language');
  });
});

describe('ifevalAccuracy', () => {
  const records: IfevalRecord[] = [
    { key: 1, prompt: 'p1', instruction_id_list: ['punctuation:no_comma', 'length_constraints:number_words'], kwargs: [{}, { num_words: 3, relation: 'less than' }] },
    { key: 2, prompt: 'p2', instruction_id_list: ['punctuation:no_comma', 'change_case:english_lowercase', 'startend:quotation'], kwargs: [{}, {}, {}] },
    { key: 3, prompt: 'p3', instruction_id_list: ['keywords:existence'], kwargs: [{ keywords: ['tea'] }] },
  ];
  const responses = ['Hi there', 'yes, sir', 'I like coffee'];

  it('computes prompt-level and instruction-level accuracy as IFEval does', () => {
    // p1 "Hi there": no comma ✓, 2 words < 3 ✓ → all followed.
    // p2 "yes, sir": comma ✗, lowercase ✓, not quoted ✗ → 1 of 3.
    // p3 "I like coffee": no "tea" ✗ → 0 of 1.
    // prompt level: 1 of 3 prompts = 1/3; instruction level: (2 + 1 + 0) / (2 + 3 + 1) = 3/6 = 0.5.
    const result = ifevalAccuracy(records, responses);
    expect(result.promptLevelAccuracy).toBeCloseTo(1 / 3, 12);
    expect(result.instructionLevelAccuracy).toBe(0.5);
    expect(result.prompts).toBe(3);
    expect(result.instructions).toBe(6);
    expect(result.results.map((r) => r.followed)).toEqual([[true, true], [false, true, false], [false]]);
    expect(result.results.map((r) => r.followedAll)).toEqual([true, false, false]);
    expect(result.results[1]).toMatchObject({ key: 2, prompt: 'p2' });
    expect(result.perInstruction).toEqual({
      'punctuation:no_comma': { followed: 1, total: 2 },
      'length_constraints:number_words': { followed: 1, total: 1 },
      'change_case:english_lowercase': { followed: 1, total: 1 },
      'startend:quotation': { followed: 0, total: 1 },
      'keywords:existence': { followed: 0, total: 1 },
    });
  });

  it('takes responses by prompt, as IFEval response files map them', () => {
    const byPrompt = new Map(records.map((r, i) => [r.prompt, responses[i]]));
    expect(ifevalAccuracy(records, byPrompt)).toEqual(ifevalAccuracy(records, responses));
  });

  it('loose: a preamble first line or markdown stars fail strict but pass loose', () => {
    const loose: IfevalRecord[] = [
      { prompt: 'Answer in lowercase.', instruction_id_list: ['change_case:english_lowercase'], kwargs: [{}] },
      { prompt: 'End with the phrase.', instruction_id_list: ['startend:end_checker'], kwargs: [{ end_phrase: 'Is there anything else I can help with?' }] },
      { prompt: 'No commas.', instruction_id_list: ['punctuation:no_comma'], kwargs: [{}] },
    ];
    // The third fails both ways: dropping its only line leaves "", and a blank variant never counts.
    const answers = ['Sure! Here it is:\nhello there', 'Done. **Is there anything else I can help with?**', 'Hello, world'];
    expect(ifevalAccuracy(loose, answers).results.map((r) => r.followedAll)).toEqual([false, false, false]);
    expect(ifevalAccuracy(loose, answers, { loose: true }).results.map((r) => r.followedAll)).toEqual([true, true, false]);
    expect(ifevalAccuracy(loose, answers, { loose: true }).promptLevelAccuracy).toBeCloseTo(2 / 3, 12);
  });

  it('rejects mismatched responses, a missing prompt and unknown options', () => {
    expect(thrown(() => ifevalAccuracy(records, ['a'])).message).toContain('expected responses to hold 3 responses, one per record; got 1');
    expect(thrown(() => ifevalAccuracy(records, new Map([['p1', 'a']]))).message).toContain('expected responses to hold a response for prompt "p2"; got undefined');
    expect(thrown(() => ifevalAccuracy(records, responses, { strict: true } as never)).message).toContain('unknown option "strict"');
    expect(thrown(() => ifevalAccuracy([], [])).message).toContain('expected at least one record; got 0');
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import { ByteTokenizer } from './byte-tokenizer.js';
import { CHATML_TEMPLATE, applyChatTemplate, defaultApplyChatTemplateOptions, type ChatMessage } from './chat-template.js';
import { QWEN3_DIR, expectThrow } from './testing/tokenizer-helpers.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';

let qwen: Tokenizer;
beforeAll(async () => {
  qwen = await loadTokenizer(QWEN3_DIR);
});

const system: ChatMessage = { role: 'system', content: 'You are a helpful assistant.' };
const twoTurns: ChatMessage[] = [
  { role: 'user', content: 'What is 2+2?' },
  { role: 'assistant', content: '2+2 = 4.' },
];

/** The ids where the mask is `keep` (1: the assistant's tokens), decoded. */
const decodeWhere = (tokenizer: Tokenizer, ids: number[], mask: number[], keep: number) => tokenizer.decode(ids.filter((_, k) => mask[k] === keep));

/** The runs of consecutive 1s in a mask, as the decoded text of each run. */
function maskedRuns(tokenizer: Tokenizer, ids: number[], mask: number[]): string[] {
  const runs: string[] = [];
  let run: number[] = [];
  mask.forEach((m, k) => {
    if (m === 1) run.push(ids[k]);
    if ((m === 0 || k === mask.length - 1) && run.length > 0) {
      runs.push(tokenizer.decode(run));
      run = [];
    }
  });
  return runs;
}

/** A Tokenizer from elsewhere, without encodeWithOffsets: masks then come from encoding piece by piece. */
function withoutOffsets(tokenizer: Tokenizer): Tokenizer {
  const { vocabSize, specialTokens, bosToken, eosToken, padToken, unkToken, bosTokenId, eosTokenId, padTokenId, unkTokenId, chatTemplate } = tokenizer;
  return {
    ...{ vocabSize, specialTokens, bosToken, eosToken, padToken, unkToken, bosTokenId, eosTokenId, padTokenId, unkTokenId, chatTemplate },
    encode: (text, options) => tokenizer.encode(text, options),
    decode: (ids, options) => tokenizer.decode(ids, options),
    tokenToId: (token) => tokenizer.tokenToId(token),
    idToToken: (id) => tokenizer.idToToken(id),
  };
}

describe('applyChatTemplate with the Qwen3 template', () => {
  // Expected strings written by reading tokenizer_config.json's chat_template: a system message
  // first, then <|im_start|>role\ncontent<|im_end|>\n per turn; the assistant turn after the last
  // user message gets an empty <think> block; add_generation_prompt opens an assistant turn.
  const conversation = [system, ...twoTurns, { role: 'user', content: 'And 3+3?' }];
  const rendered =
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
    '<|im_start|>user\nWhat is 2+2?<|im_end|>\n' +
    '<|im_start|>assistant\n2+2 = 4.<|im_end|>\n' +
    '<|im_start|>user\nAnd 3+3?<|im_end|>\n';

  it('renders a conversation exactly, with and without the generation prompt', () => {
    expect(applyChatTemplate(qwen, conversation)).toBe(rendered);
    expect(applyChatTemplate(qwen, conversation, { addGenerationPrompt: true })).toBe(`${rendered}<|im_start|>assistant\n`);
    expect(applyChatTemplate(qwen, conversation, { addGenerationPrompt: true, templateVariables: { enable_thinking: false } })).toBe(`${rendered}<|im_start|>assistant\n<think>\n\n</think>\n\n`);
  });

  it('writes the think block of the final assistant turn, empty or with reasoning_content', () => {
    expect(applyChatTemplate(qwen, twoTurns)).toBe('<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n2+2 = 4.<|im_end|>\n');
    const reasoned = [twoTurns[0], { ...twoTurns[1], reasoning_content: 'Add them.' }];
    expect(applyChatTemplate(qwen, reasoned)).toBe('<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nAdd them.\n</think>\n\n2+2 = 4.<|im_end|>\n');
  });

  it('tokenizes the text without adding special tokens', () => {
    const ids = applyChatTemplate(qwen, conversation, { addGenerationPrompt: true, tokenize: true });
    expect(ids).toEqual(qwen.encode(`${rendered}<|im_start|>assistant\n`, { addSpecialTokens: false }));
    expect(ids.slice(0, 3)).toEqual([151644, 8948, 198]); // <|im_start|> system \n
    expect(ids.slice(-3)).toEqual([151644, 77091, 198]); // <|im_start|> assistant \n
  });

  it('renders tools, and continues a final assistant message', () => {
    const tools = [{ type: 'function', function: { name: 'add', description: 'Adds', parameters: { type: 'object' } } }];
    const text = applyChatTemplate(qwen, twoTurns.slice(0, 1), { tools, addGenerationPrompt: true });
    expect(text.startsWith('<|im_start|>system\n# Tools\n')).toBe(true);
    expect(text).toContain('"name": "add"');
    const partial = [twoTurns[0], { role: 'assistant', content: 'The answer is' }];
    expect(applyChatTemplate(qwen, partial, { continueFinalMessage: true })).toBe('<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nThe answer is');
  });

  it('refuses an assistant mask from a template without generation tags, and gives one with CHATML_TEMPLATE', () => {
    expectThrow(() => applyChatTemplate(qwen, twoTurns, { returnAssistantMask: true }), 'NOT_SUPPORTED', 'this template has no generation tags', 'CHATML_TEMPLATE');
    const conversationWithTwoAnswers = [...conversation, { role: 'assistant', content: '6, 日本 😀' }];
    const { text, inputIds, assistantMask } = applyChatTemplate(qwen, conversationWithTwoAnswers, { chatTemplate: CHATML_TEMPLATE, returnAssistantMask: true });
    expect(text).toBe(`${rendered}<|im_start|>assistant\n6, 日本 😀<|im_end|>\n`);
    expect(inputIds).toEqual(qwen.encode(text, { addSpecialTokens: false }));
    expect(maskedRuns(qwen, inputIds, assistantMask)).toEqual(['2+2 = 4.<|im_end|>', '6, 日本 😀<|im_end|>']);
  });

  it('masks a token that crosses into the assistant text, as transformers does, and encodes piece by piece without offsets', () => {
    // "assistant\n" + "\n\nhi": the three newlines are one token, starting before the assistant's text.
    const messages = [twoTurns[0], { role: 'assistant', content: '\n\nhi' }];
    const { inputIds, assistantMask } = applyChatTemplate(qwen, messages, { chatTemplate: CHATML_TEMPLATE, returnAssistantMask: true });
    expect(inputIds).toContain(qwen.tokenToId('ĊĊĊ'));
    expect(maskedRuns(qwen, inputIds, assistantMask)).toEqual(['\n\n\nhi<|im_end|>']);
    expectThrow(() => applyChatTemplate(withoutOffsets(qwen), messages, { chatTemplate: CHATML_TEMPLATE, returnAssistantMask: true }), 'NOT_SUPPORTED', 'a token crosses a turn boundary');
    // Qwen's NFC normalizer rewrites a decomposed é, so offsets cannot be exact: the pieces are encoded instead.
    const decomposed = [twoTurns[0], { role: 'assistant', content: 'cafe\u0301!' }];
    const nfd = applyChatTemplate(qwen, decomposed, { chatTemplate: CHATML_TEMPLATE, returnAssistantMask: true });
    expectThrow(() => qwen.encodeWithOffsets!(nfd.text), 'NOT_SUPPORTED', 'to spell the text byte for byte');
    expect(nfd.inputIds).toEqual(qwen.encode(nfd.text, { addSpecialTokens: false }));
    expect(maskedRuns(qwen, nfd.inputIds, nfd.assistantMask)).toEqual(['café!<|im_end|>']);
    const plain = applyChatTemplate(withoutOffsets(qwen), twoTurns, { chatTemplate: CHATML_TEMPLATE, returnAssistantMask: true });
    expect(plain).toEqual(applyChatTemplate(qwen, twoTurns, { chatTemplate: CHATML_TEMPLATE, returnAssistantMask: true }));
  });
});

describe('applyChatTemplate with ChatML and the ByteTokenizer', () => {
  const tokenizer = new ByteTokenizer();
  const answers = ['4 😀', '  two\n\nlines, 日本語  '];
  const messages: ChatMessage[] = [
    system,
    { role: 'user', content: 'What is 2+2?' },
    { role: 'assistant', content: answers[0] },
    { role: 'user', content: 'Again' },
    { role: 'assistant', content: answers[1] },
  ];
  const expected =
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
    '<|im_start|>user\nWhat is 2+2?<|im_end|>\n' +
    `<|im_start|>assistant\n${answers[0]}<|im_end|>\n` +
    '<|im_start|>user\nAgain<|im_end|>\n' +
    `<|im_start|>assistant\n${answers[1]}<|im_end|>\n`;

  it('renders ChatML by default', () => {
    expect(applyChatTemplate(tokenizer, messages)).toBe(expected);
    expect(applyChatTemplate(tokenizer, messages.slice(0, 2), { addGenerationPrompt: true })).toBe(`${expected.split('<|im_start|>assistant')[0]}<|im_start|>assistant\n`);
  });

  it('masks exactly the assistant text and its <|im_end|>: every masked token decodes to assistant content, nothing else', () => {
    const { text, inputIds, assistantMask } = applyChatTemplate(tokenizer, messages, { returnAssistantMask: true });
    expect(text).toBe(expected);
    expect(inputIds).toEqual(tokenizer.encode(expected, { addSpecialTokens: false }));
    expect(assistantMask.length).toBe(inputIds.length);
    expect(maskedRuns(tokenizer, inputIds, assistantMask)).toEqual(answers.map((a) => `${a}<|im_end|>`));
    expect(decodeWhere(tokenizer, inputIds, assistantMask, 0)).toBe(expected.replace(`${answers[0]}<|im_end|>`, '').replace(`${answers[1]}<|im_end|>`, ''));
    // The same mask, counted: one per byte of each answer plus one <|im_end|>.
    const bytes = (s: string) => new TextEncoder().encode(s).length;
    expect(assistantMask.reduce((a, b) => a + b, 0)).toBe(bytes(answers[0]) + bytes(answers[1]) + 2);
  });

  it('leaves the generation prompt out of the mask and cuts a continued final message', () => {
    const prompt = applyChatTemplate(tokenizer, messages.slice(0, 4), { addGenerationPrompt: true, returnAssistantMask: true });
    expect(maskedRuns(tokenizer, prompt.inputIds, prompt.assistantMask)).toEqual([`${answers[0]}<|im_end|>`]);
    expect(prompt.text.endsWith('<|im_start|>assistant\n')).toBe(true);
    const continued = applyChatTemplate(tokenizer, [...messages.slice(0, 4), { role: 'assistant', content: 'The answer' }], { continueFinalMessage: true, returnAssistantMask: true });
    expect(continued.text).toBe(`${expected.split('<|im_start|>assistant\n  two')[0]}<|im_start|>assistant\nThe answer`);
    expect(maskedRuns(tokenizer, continued.inputIds, continued.assistantMask)).toEqual([`${answers[0]}<|im_end|>`, 'The answer']);
  });

  it('gives the same ids and mask through Hugging Face files and without offsets', async () => {
    const reference = applyChatTemplate(tokenizer, messages, { returnAssistantMask: true });
    expect(applyChatTemplate(await loadTokenizer(tokenizer.toHuggingFaceFiles()), messages, { returnAssistantMask: true })).toEqual(reference);
    expect(applyChatTemplate(withoutOffsets(tokenizer), messages, { returnAssistantMask: true })).toEqual(reference);
  });

  it('passes the special tokens and templateVariables to the template', () => {
    const withBos = new ByteTokenizer({ bosToken: '<|endoftext|>', chatTemplate: '{{ bos_token }}{{ eos_token }}{{ pad_token }}[{{ unk_token }}]{{ greeting }}' });
    expect(applyChatTemplate(withBos, twoTurns, { templateVariables: { greeting: 'hi' } })).toBe('<|endoftext|><|im_end|><pad>[]hi');
  });
});

describe('applyChatTemplate generation tags under whitespace control', () => {
  const tokenizer = new ByteTokenizer();
  const messages: ChatMessage[] = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: ' hello ' },
  ];

  it('keeps the text a template renders without tags when {{- or -}} strips through a tag', () => {
    const strippedAfter =
      "{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}   {% generation %}  {{- m.content }}{% endgeneration %}  {{- '|' }}{% else %}{{ m.content }}|{% endif %}{% endfor %}";
    const strippedBefore = '{% for m in messages %}<{{ m.role -}}   {% generation %}   {{ m.content -}}   {% endgeneration %}   >{% endfor %}';
    const indented = '{%- for m in messages %}\n    {%- generation -%}\n        [{{ m.content }}]\n    {%- endgeneration %}\n|{% endfor %}';
    for (const [chatTemplate, text, runs] of [
      [strippedAfter, 'user: hi|assistant:  hello |', [' hello ']],
      [strippedBefore, '<userhi><assistant hello >', ['hi', ' hello ']],
      [indented, '[hi]|[ hello ]|', ['[hi]', '[ hello ]']],
    ] as const) {
      const result = applyChatTemplate(tokenizer, messages, { chatTemplate, returnAssistantMask: true });
      expect(result.text, chatTemplate).toBe(text);
      expect(applyChatTemplate(tokenizer, messages, { chatTemplate })).toBe(text);
      expect(maskedRuns(tokenizer, result.inputIds, result.assistantMask), chatTemplate).toEqual(runs);
    }
  });

  it('refuses a mask when tags it cannot place would change the text, and unbalanced tags', () => {
    const chained = "{% for m in messages %}{{ '' -}}{% generation %}{% endgeneration %}  {{ m.content }}{% endfor %}";
    expect(applyChatTemplate(tokenizer, messages, { chatTemplate: chained })).toBe('hi hello ');
    expectThrow(() => applyChatTemplate(tokenizer, messages, { chatTemplate: chained, returnAssistantMask: true }), 'NOT_SUPPORTED', 'whitespace control around them changes it');
    const unclosed = '{% for m in messages %}{% generation %}{{ m.content }}{% endfor %}';
    expectThrow(() => applyChatTemplate(tokenizer, messages, { chatTemplate: unclosed, returnAssistantMask: true }), 'NOT_SUPPORTED', 'expected {% generation %} and {% endgeneration %} to alternate');
  });
});

describe('applyChatTemplate input checks', () => {
  const tokenizer = new ByteTokenizer();

  it('names the message index and field of a bad message', () => {
    expectThrow(
      () => applyChatTemplate(tokenizer, [twoTurns[0], { content: 'no role' } as never]),
      'INVALID_ARGUMENT',
      'applyChatTemplate: expected messages[1].role to be a non-empty string such as "user" or "assistant"; got undefined',
    );
    expectThrow(() => applyChatTemplate(tokenizer, [{ role: 'user', content: 42 } as never]), 'INVALID_ARGUMENT', 'expected messages[0].content to be a string; got 42', 'help:');
    expectThrow(
      () => applyChatTemplate(tokenizer, [twoTurns[0], { role: 'assistant', content: [{ type: 'text', text: 'x' }] } as never]),
      'INVALID_ARGUMENT',
      'expected messages[1].content to be a string; got an array of length 1',
    );
    expectThrow(() => applyChatTemplate(tokenizer, [twoTurns[0], null as never]), 'INVALID_ARGUMENT', 'expected messages[1] to be an object with role and content; got null');
    expectThrow(() => applyChatTemplate(tokenizer, []), 'INVALID_ARGUMENT', 'expected messages to be a non-empty array');
    expectThrow(() => applyChatTemplate(tokenizer, 'hi' as never), 'INVALID_ARGUMENT', 'got "hi"');
  });

  it('rejects a missing or broken template, conflicting and unknown options, and reports template errors', () => {
    expectThrow(
      () => applyChatTemplate(new ByteTokenizer({ chatTemplate: null }), twoTurns),
      'INVALID_ARGUMENT',
      'expected a chat template in options.chatTemplate or tokenizer.chatTemplate; got undefined',
    );
    expectThrow(
      () => applyChatTemplate(tokenizer, twoTurns, { addGenerationPrompt: true, continueFinalMessage: true }),
      'INVALID_ARGUMENT',
      'expected at most one of addGenerationPrompt and continueFinalMessage',
    );
    expectThrow(() => applyChatTemplate(tokenizer, twoTurns, { addGenerationPromt: true } as never), 'INVALID_OPTION', 'unknown option "addGenerationPromt"');
    expectThrow(() => applyChatTemplate(tokenizer, twoTurns, { chatTemplate: "{{ raise_exception('Roles must alternate') }}" }), 'INVALID_ARGUMENT', 'it failed: Roles must alternate');
    expectThrow(() => applyChatTemplate(tokenizer, twoTurns, { chatTemplate: '{% if %}' }), 'INVALID_ARGUMENT', 'expected a chat template that @huggingface/jinja can parse');
    expectThrow(
      () => applyChatTemplate(tokenizer, [{ role: 'user', content: 'x' }], { continueFinalMessage: true, chatTemplate: '{{ "nothing" }}' }),
      'INVALID_ARGUMENT',
      'to contain the final message',
    );
    expect(Object.isFrozen(defaultApplyChatTemplateOptions)).toBe(true);
  });
});

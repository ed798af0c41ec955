import { describe, expect, it } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';
import { ByteTokenizer } from './byte-tokenizer.js';
import { CHATML_TEMPLATE, applyChatTemplate } from './chat-template.js';
import type { Tokenizer } from './tokenizer.js';
import { IGNORE_INDEX, tokenizeLanguageModeling, tokenizePreference, tokenizePromptCompletion, type ChatEncoder, type TokenizedExample, type TokenizerLike } from './tokenize.js';
import { pieceChat } from './testing/piece-chat.js';
import { PieceTokenizer } from './testing/piece-tokenizer.js';

const tokenizer = new PieceTokenizer();
const { bosTokenId: BOS, eosTokenId: EOS } = tokenizer;
const id = (piece: string) => tokenizer.encode(piece, { addSpecialTokens: false })[0];
const [THE, SKY, IS, BLUE, GREEN, DOT] = ['The', ' sky', ' is', ' blue', ' green', '.'].map(id);
const X = IGNORE_INDEX;

function thrown(fn: () => unknown): Error & { code?: string; help?: string } {
  try {
    fn();
  } catch (e) {
    expect(isPosttrainError(e), String(e)).toBe(true);
    return e as Error & { code: string };
  }
  throw new Error('expected the call to throw');
}

/** The labels the loss counts. */
const counted = (example: TokenizedExample) => example.labels.filter((label) => label !== X);

describe('tokenizePromptCompletion', () => {
  const record = { prompt: 'The sky is', completion: ' blue.' };

  it('completion-only loss (default): labels −100 on every prompt token, the completion and EOS labelled', () => {
    const example = tokenizePromptCompletion(tokenizer, record);
    expect(example).toEqual({
      inputIds: [BOS, THE, SKY, IS, BLUE, DOT, EOS],
      labels: [X, X, X, X, BLUE, DOT, EOS],
      attentionMask: [1, 1, 1, 1, 1, 1, 1],
      promptLength: 4,
    });
  });

  it('trap: no prompt token carries a label (wrong masks)', () => {
    const example = tokenizePromptCompletion(tokenizer, record);
    const prompt = tokenizer.encode(record.prompt, { addSpecialTokens: true });
    expect(example.labels.slice(0, prompt.length).every((label) => label === X)).toBe(true);
    expect(counted(example)).toEqual([BLUE, DOT, EOS]);
  });

  it('completionOnly: false labels every token', () => {
    expect(tokenizePromptCompletion(tokenizer, record, { completionOnly: false }).labels).toEqual([BOS, THE, SKY, IS, BLUE, DOT, EOS]);
  });

  it('trap: the completion ends with EOS, labelled, even when pad = EOS; and only once', () => {
    const padIsEos = new PieceTokenizer({ padIsEos: true });
    expect(padIsEos.padTokenId).toBe(EOS);
    const example = tokenizePromptCompletion(padIsEos, record);
    expect(example.inputIds.at(-1)).toBe(EOS);
    expect(example.labels.at(-1)).toBe(EOS);
    // A completion whose text already ends with EOS keeps a single one.
    const already = tokenizePromptCompletion(tokenizer, { prompt: 'The sky is', completion: ' blue.<eos>' });
    expect(already.inputIds).toEqual([BOS, THE, SKY, IS, BLUE, DOT, EOS]);
    expect(tokenizePromptCompletion(tokenizer, record, { appendEos: false }).inputIds.at(-1)).toBe(DOT);
  });

  it('the joint sequence is the prompt exactly as tokenized for inference, then the completion', () => {
    const example = tokenizePromptCompletion(tokenizer, record);
    expect(example.inputIds.slice(0, example.promptLength)).toEqual(tokenizer.encode(record.prompt, { addSpecialTokens: true }));
    expect(example.inputIds).toEqual([...tokenizer.encode(record.prompt + record.completion, { addSpecialTokens: true }), EOS]);
  });

  it('trap: a prompt tokenized differently from the start of prompt + completion fails, naming the record and the tokens', () => {
    // "The sky is b" + "lue." : alone the prompt ends " ", "b"; joined, " blue" is one token.
    const e = thrown(() => tokenizePromptCompletion(tokenizer, { prompt: 'The sky is b', completion: 'lue.' }, { name: 'line 7' }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain("tokenizePromptCompletion: line 7: expected the prompt's 6 tokens to be the first tokens of prompt + completion");
    expect(e.message).toContain(`they differ from token 4: the prompt alone ends [${id(' ')}, ${id('b')}] (" b")`);
    expect(e.message).toContain(`prompt + completion continues [${BLUE}, ${DOT}, ${EOS}] (" blue.<eos>")`);
    expect(e.help).toContain('token boundary');
    // Without a name, the prompt's start names the record.
    expect(thrown(() => tokenizePromptCompletion(tokenizer, { prompt: 'The sky is b', completion: 'lue.' })).message).toContain('the record with prompt "The sky is b"');
  });

  it('conversational: the prompt rendered with the generation prompt must start the rendered conversation', () => {
    const chat = pieceChat(tokenizer);
    const prompt = [{ role: 'user', content: 'The sky is' }];
    const completion = [{ role: 'assistant', content: ' blue.' }];
    const example = tokenizePromptCompletion(tokenizer, { prompt, completion }, { chat });
    const promptIds = chat(prompt, { addGenerationPrompt: true }).inputIds;
    expect(example.inputIds.slice(0, promptIds.length)).toEqual(promptIds);
    expect(counted(example)).toEqual([BLUE, DOT, EOS]);
    // A template whose generation prompt differs from how it renders the assistant turn is caught.
    const mismatched = (messages: typeof prompt, o: { addGenerationPrompt: boolean }) => {
      const ids = chat(messages, o).inputIds;
      return { inputIds: o.addGenerationPrompt ? [...ids, id('\n')] : ids };
    };
    expect(thrown(() => tokenizePromptCompletion(tokenizer, { prompt, completion }, { chat: mismatched })).message).toContain('expected the prompt');
    expect(thrown(() => tokenizePromptCompletion(tokenizer, { prompt, completion })).message).toContain('expected the chat option');
    expect(thrown(() => tokenizePromptCompletion(tokenizer, { prompt: 'The sky is', completion }, { chat })).message).toContain('both strings or both message lists; got a string and a message list');
  });

  describe('truncation with a stated side', () => {
    const long = { prompt: 'The sky is', completion: ' blue. The sky is green.' }; // 4 prompt + 9 completion tokens (EOS included)

    it("'right' cuts the completion's end and keeps the prompt whole", () => {
      const example = tokenizePromptCompletion(tokenizer, long, { maxLength: 7 });
      expect(example.inputIds).toEqual([BOS, THE, SKY, IS, BLUE, DOT, id(' ')]);
      expect(example.labels).toEqual([X, X, X, X, BLUE, DOT, id(' ')]);
      expect(example.promptLength).toBe(4);
    });

    it("'right' refuses to cut into the prompt", () => {
      const e = thrown(() => tokenizePromptCompletion(tokenizer, long, { maxLength: 4 }));
      expect(e.message).toContain('13 tokens exceed maxLength 4, and the prompt alone has 4: right truncation cuts only the completion, and would leave none');
      expect(e.help).toContain("truncation: 'left'");
    });

    it("'left' cuts the prompt's start, BOS included, and keeps the completion whole", () => {
      const example = tokenizePromptCompletion(tokenizer, long, { maxLength: 11, truncation: 'left' });
      expect(example.inputIds).toEqual([SKY, IS, ...tokenizer.encode(long.completion, { addSpecialTokens: false }), EOS]);
      expect(example.promptLength).toBe(2);
      expect(example.labels.slice(0, 2)).toEqual([X, X]);
      expect(example.labels.at(-1)).toBe(EOS);
      expect(thrown(() => tokenizePromptCompletion(tokenizer, long, { maxLength: 9, truncation: 'left' })).message).toContain('left truncation cuts only the prompt, and would leave none');
    });

    it("maxPromptLength keeps the prompt's last tokens (cut on the left) and maxCompletionLength the completion's first (cut on the right), before maxLength", () => {
      const completion = tokenizer.encode(long.completion, { addSpecialTokens: false });
      const prompt = tokenizePromptCompletion(tokenizer, long, { maxPromptLength: 2 });
      expect(prompt.inputIds).toEqual([SKY, IS, ...completion, EOS]);
      expect(prompt.labels).toEqual([X, X, ...completion, EOS]);
      expect(prompt.promptLength).toBe(2);
      const both = tokenizePromptCompletion(tokenizer, long, { maxPromptLength: 3, maxCompletionLength: 2 });
      expect(both.inputIds).toEqual([THE, SKY, IS, BLUE, DOT]); // EOS cut with the completion's end, as TRL
      expect(both.labels).toEqual([X, X, X, BLUE, DOT]);
      expect(both.promptLength).toBe(3);
      expect(tokenizePromptCompletion(tokenizer, long, { maxPromptLength: 3, maxCompletionLength: 4, maxLength: 5 }).inputIds).toEqual([THE, SKY, IS, BLUE, DOT]);
      expect(tokenizePromptCompletion(tokenizer, long, { maxPromptLength: 4, maxCompletionLength: 9 }).inputIds).toHaveLength(13); // at the limits: untouched
      const pair = tokenizePreference(tokenizer, { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' }, { maxPromptLength: 1, maxCompletionLength: 1 });
      expect(pair.chosen.inputIds).toEqual([IS, BLUE]);
      expect(thrown(() => tokenizePromptCompletion(tokenizer, long, { maxPromptLength: 0 })).message).toContain('expected maxPromptLength to be a positive integer or null; got 0');
      expect(thrown(() => tokenizePromptCompletion(tokenizer, long, { maxCompletionLength: 1.5 })).message).toContain('expected maxCompletionLength to be a positive integer or null; got 1.5');
    });

    it("'error' throws instead of cutting; a short example is never touched", () => {
      expect(thrown(() => tokenizePromptCompletion(tokenizer, long, { maxLength: 12, truncation: 'error' })).message).toContain("13 tokens exceed maxLength 12; truncation is 'error'");
      expect(tokenizePromptCompletion(tokenizer, long, { maxLength: 13, truncation: 'error' }).inputIds).toHaveLength(13);
    });
  });

  it('rejects an unknown option by name', () => {
    const e = thrown(() => tokenizePromptCompletion(tokenizer, { prompt: 'a', completion: 'b' }, { completion_only_loss: true } as never));
    expect(e.code).toBe('INVALID_OPTION');
    expect(e.message).toContain('unknown option "completion_only_loss"');
  });
});

describe('tokenizeLanguageModeling', () => {
  it('text: every token labelled, EOS appended', () => {
    expect(tokenizeLanguageModeling(tokenizer, { text: 'The sky is blue.' })).toEqual({
      inputIds: [BOS, THE, SKY, IS, BLUE, DOT, EOS],
      labels: [BOS, THE, SKY, IS, BLUE, DOT, EOS],
      attentionMask: [1, 1, 1, 1, 1, 1, 1],
      promptLength: 0,
    });
    expect(tokenizeLanguageModeling(tokenizer, { text: 'The sky is blue.' }, { maxLength: 3, truncation: 'left' }).inputIds).toEqual([BLUE, DOT, EOS]);
  });

  const messages = [
    { role: 'system', content: 'The sky' },
    { role: 'user', content: 'The color of the sky' },
    { role: 'assistant', content: ' blue.' },
    { role: 'user', content: 'The grass' },
    { role: 'assistant', content: ' green.' },
  ];

  it('trap: messages with assistant-only loss label exactly the assistant turns (and their end token)', () => {
    const example = tokenizeLanguageModeling(tokenizer, { messages }, { chat: pieceChat(tokenizer) });
    expect(counted(example)).toEqual([BLUE, DOT, EOS, GREEN, DOT, EOS]);
    expect(tokenizer.decode(example.inputIds.filter((_, i) => example.labels[i] !== X))).toBe(' blue.<eos> green.<eos>');
    expect(tokenizeLanguageModeling(tokenizer, { messages }, { chat: pieceChat(tokenizer), assistantOnly: false }).labels).toEqual(example.inputIds);
  });

  it('assistant-only loss without an assistant mask, or with none marked, fails instead of training on nothing or everything', () => {
    const unmarked = thrown(() => tokenizeLanguageModeling(tokenizer, { messages }, { chat: pieceChat(tokenizer, { markAssistant: false }) }));
    expect(unmarked.message).toContain("expected an assistantMask marking the assistant's tokens (assistantOnly); got no assistantMask");
    expect(unmarked.help).toContain('{% generation %}');
    const userOnly = thrown(() => tokenizeLanguageModeling(tokenizer, { messages: messages.slice(0, 2) }, { chat: pieceChat(tokenizer) }));
    expect(userOnly.message).toContain('got an assistantMask of all 0');
  });
});

describe('tokenizePreference', () => {
  it('chosen and rejected share the prompt tokens; an implicit prompt is extracted first', () => {
    const explicit = tokenizePreference(tokenizer, { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' });
    expect(explicit.chosen.inputIds).toEqual([BOS, THE, SKY, IS, BLUE, DOT, EOS]);
    expect(explicit.rejected.inputIds).toEqual([BOS, THE, SKY, IS, GREEN, DOT, EOS]);
    expect(counted(explicit.rejected)).toEqual([GREEN, DOT, EOS]);
    expect(tokenizePreference(tokenizer, { chosen: 'The sky is blue.', rejected: 'The sky is green.' })).toEqual(explicit);
  });

  it('names which answer broke the prefix check', () => {
    expect(thrown(() => tokenizePreference(tokenizer, { prompt: 'The sky is b', chosen: 'lue.', rejected: 'ad.' }, { name: 'line 2' })).message).toContain('line 2 (chosen)');
  });
});

// With this package's ByteTokenizer and ChatML template (applyChatTemplate wrapped as the chat encoder).
describe('with ByteTokenizer and applyChatTemplate', () => {
  const bytes = new ByteTokenizer();
  const chat: ChatEncoder = (messages, o) => applyChatTemplate(bytes, messages, { ...o, returnAssistantMask: true });
  const labelled = (example: TokenizedExample) => bytes.decode(example.inputIds.filter((_, i) => example.labels[i] !== X));

  it('a Tokenizer is what tokenizing needs', () => {
    const needs: TokenizerLike = bytes satisfies Tokenizer;
    expect(needs.eosTokenId).toBe(bytes.eosTokenId);
  });

  it('standard prompt-completion: completion and EOS labelled', () => {
    const example = tokenizePromptCompletion(bytes, { prompt: '2+2=', completion: '4' });
    expect(example.inputIds).toEqual([...bytes.encode('2+2=4'), bytes.eosTokenId]);
    expect(labelled(example)).toBe('4<|im_end|>');
  });

  it('conversational prompt-completion: the prompt with the generation prompt starts the joint rendering', () => {
    const prompt = [{ role: 'user', content: 'What is 2+2?' }];
    const example = tokenizePromptCompletion(bytes, { prompt, completion: [{ role: 'assistant', content: '4' }] }, { chat });
    expect(bytes.decode(example.inputIds.slice(0, example.promptLength))).toBe(applyChatTemplate(bytes, prompt, { addGenerationPrompt: true }));
    expect(labelled(example)).toMatch(/^4<\|im_end\|>/);
  });

  it('messages with assistant-only loss: only the assistant turns are labelled', () => {
    const messages = [
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: 'It is 4.' },
      { role: 'user', content: 'And 3+3?' },
      { role: 'assistant', content: 'It is 6.' },
    ];
    const text = labelled(tokenizeLanguageModeling(bytes, { messages }, { chat }));
    expect(text).toContain('It is 4.<|im_end|>');
    expect(text).toContain('It is 6.<|im_end|>');
    expect(text).not.toContain('2+2');
    expect(text).not.toContain('user');
  });

  it('a template without {% generation %} serves prompt-completion: the mask is asked for only by assistant-only messages', () => {
    const plain = CHATML_TEMPLATE.replace(/\{%-? (end)?generation -?%\}/g, '');
    expect(plain).not.toContain('generation %}');
    const asked: boolean[] = [];
    const plainChat: ChatEncoder = (messages, o) => {
      asked.push(o.returnAssistantMask);
      return applyChatTemplate(bytes, messages, { ...o, chatTemplate: plain });
    };
    const prompt = [{ role: 'user', content: 'What is 2+2?' }];
    const example = tokenizePromptCompletion(bytes, { prompt, completion: [{ role: 'assistant', content: '4' }] }, { chat: plainChat });
    expect(labelled(example)).toMatch(/^4<\|im_end\|>/);
    expect(asked).toEqual([false, false]);
    const messages = [...prompt, { role: 'assistant', content: '4' }];
    expect(tokenizeLanguageModeling(bytes, { messages }, { chat: plainChat, assistantOnly: false }).labels).toHaveLength(bytes.encode(applyChatTemplate(bytes, messages)).length);
    const e = thrown(() => tokenizeLanguageModeling(bytes, { messages }, { chat: plainChat }));
    expect(e.code).toBe('NOT_SUPPORTED');
    expect(asked).toEqual([false, false, false, true]);
    // The recipe of the docs, unwrapped.
    const recipe: ChatEncoder = (m, o) => applyChatTemplate(bytes, m, o);
    expect(labelled(tokenizeLanguageModeling(bytes, { messages }, { chat: recipe }))).toBe('4<|im_end|>');
  });

  it('right truncation that would cut every labelled token throws, naming the record', () => {
    const messages = [
      { role: 'user', content: 'What is 2+2? '.repeat(5) },
      { role: 'assistant', content: 'It is 4.' },
    ];
    const e = thrown(() => tokenizeLanguageModeling(bytes, { messages }, { chat, maxLength: 30, name: 'line 7' }));
    expect(e.message).toContain('tokenizeLanguageModeling: line 7:');
    expect(e.message).toContain('would cut every labelled token');
    expect(tokenizeLanguageModeling(bytes, { messages }, { chat, maxLength: 30, assistantOnly: false }).inputIds).toHaveLength(30);
  });

  it('checks option values: booleans, maxLength a positive integer or null, truncation one of its values', () => {
    const record = { prompt: '2+2=', completion: '4' };
    expect(thrown(() => tokenizePromptCompletion(bytes, record, { truncation: 'rigth' as never })).message).toContain("expected truncation to be one of 'right', 'left', 'error'; got \"rigth\"");
    for (const maxLength of [0, 2.5, -3, '8'])
      expect(thrown(() => tokenizePromptCompletion(bytes, record, { maxLength: maxLength as never })).message).toContain('expected maxLength to be a positive integer or null');
    expect(thrown(() => tokenizeLanguageModeling(bytes, { text: 'a' }, { appendEos: 'no' as never })).message).toContain('expected appendEos to be true or false; got "no"');
    expect(thrown(() => tokenizePromptCompletion(bytes, record, { completionOnly: 0 as never })).code).toBe('INVALID_OPTION');
  });
});

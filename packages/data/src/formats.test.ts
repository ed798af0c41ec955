import { describe, expect, it } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';
import { RecordError, detectFormat, extractPrompt, isConversational, validateRecord, type DatasetFormat } from './formats.js';

const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });

// TRL's dataset_formats table: every type in its standard and conversational form.
const examples: [DatasetFormat, string, Record<string, unknown>][] = [
  ['language-modeling', 'standard', { text: 'The sky is blue.' }],
  ['language-modeling', 'conversational', { messages: [user('What color is the sky?'), assistant('It is blue.')] }],
  ['prompt-only', 'standard', { prompt: 'The sky is' }],
  ['prompt-only', 'conversational', { prompt: [user('What color is the sky?')] }],
  ['prompt-completion', 'standard', { prompt: 'The sky is', completion: ' blue.' }],
  ['prompt-completion', 'conversational', { prompt: [user('What color is the sky?')], completion: [assistant('It is blue.')] }],
  ['preference', 'standard', { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' }],
  ['preference', 'standard, implicit prompt', { chosen: 'The sky is blue.', rejected: 'The sky is green.' }],
  ['preference', 'conversational', { prompt: [user('What color is the sky?')], chosen: [assistant('It is blue.')], rejected: [assistant('It is green.')] }],
  ['preference', 'conversational, implicit prompt', { chosen: [user('What color is the sky?'), assistant('It is blue.')], rejected: [user('What color is the sky?'), assistant('It is green.')] }],
  ['unpaired-preference', 'standard', { prompt: 'The sky is', completion: ' blue.', label: true }],
  ['unpaired-preference', 'conversational', { prompt: [user('What color is the sky?')], completion: [assistant('It is green.')], label: false }],
];

function recordError(fn: () => unknown): RecordError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(RecordError);
    expect(isPosttrainError(e)).toBe(true);
    expect((e as RecordError).code).toBe('INVALID_ARGUMENT');
    return e as RecordError;
  }
  throw new Error('expected a RecordError');
}

describe('detectFormat and validateRecord: TRL formats', () => {
  it.each(examples)('%s (%s) is detected, validated and conversational only when it holds messages', (format, form, record) => {
    expect(detectFormat(record)).toBe(format);
    expect(validateRecord(record, format)).toBe(record);
    expect(isConversational(record)).toBe(form.startsWith('conversational'));
  });

  it('keeps extra fields', () => {
    const record = { prompt: 'The sky is', completion: ' blue.', id: 17, source: 'zen' };
    expect(validateRecord(record, 'prompt-completion')).toEqual({ prompt: 'The sky is', completion: ' blue.', id: 17, source: 'zen' });
    const message = { role: 'assistant', content: 'Hi', name: 'bot' };
    expect(validateRecord({ messages: [message] }, 'language-modeling').messages?.[0]).toEqual(message);
  });

  it('a record of no format names the known forms and the keys found', () => {
    const e = recordError(() => detectFormat({ question: 'Why?', answer: 'Because.' }, { line: 3 }));
    expect(e.message).toContain('line 3: expected the fields of one of TRL\'s formats: "text" or "messages"');
    expect(e.received).toBe('an object with keys [question, answer]');
    expect(e.line).toBe(3);
    expect(recordError(() => detectFormat([1, 2], { index: 4 })).message).toBe('record at index 4: expected a JSON object (one record); got a list of 2 items');
  });
});

describe('validateRecord errors name the field, what was expected and what was found', () => {
  const cases: [string, unknown, DatasetFormat, string, string, string][] = [
    ['a number completion', { prompt: 'a', completion: 42 }, 'prompt-completion', 'completion', 'a string (the standard format, like "prompt")', 'number 42'],
    ['a missing rejected', { chosen: 'a' }, 'preference', 'rejected', 'a preference record to have "rejected"', 'a record with keys [chosen]'],
    ['a string label', { prompt: 'a', completion: 'b', label: 'yes' }, 'unpaired-preference', 'label', 'a boolean (true for a good completion, false for a bad one)', '"yes"'],
    ['a 0/1 label', { prompt: 'a', completion: 'b', label: 1 }, 'unpaired-preference', 'label', 'a boolean (true for a good completion, false for a bad one)', 'number 1'],
    ['a null prompt', { prompt: null }, 'prompt-only', 'prompt', 'a string or a list of messages', 'null'],
    ['text and messages', { text: 'a', messages: [] }, 'language-modeling', 'messages', 'exactly one of "text" (a string) and "messages" (a list of messages)', 'both'],
    ['a message without content', { messages: [user('a'), { role: 'assistant' }] }, 'language-modeling', 'messages[1].content', 'a string', 'nothing (the field is missing)'],
    ['a message with an empty role', { prompt: [{ role: '', content: 'a' }] }, 'prompt-only', 'prompt[0].role', 'a non-empty string ("system", "user", "assistant", …)', '""'],
    ['an empty message list', { messages: [] }, 'language-modeling', 'messages', 'a non-empty list of messages', 'an empty list'],
    ['a text that is a list', { text: ['a'] }, 'language-modeling', 'text', 'a string', 'a list of 1 item'],
    [
      'a string prompt with a message completion',
      { prompt: 'a', completion: [assistant('b')] },
      'prompt-completion',
      'completion',
      'a string (the standard format, like "prompt")',
      'a list of 1 item',
    ],
    [
      'message chosen with a string rejected',
      { prompt: [user('a')], chosen: [assistant('b')], rejected: 'c' },
      'preference',
      'rejected',
      'a list of messages (the conversational format, like "prompt")',
      '"c"',
    ],
  ];
  it.each(cases)('%s', (_, record, format, field, expected, received) => {
    const e = recordError(() => validateRecord(record, format, { line: 12 }));
    expect({ field: e.field, expected: e.expected, received: e.received, line: e.line }).toEqual({ field, expected, received, line: 12 });
    expect(e.message.split('\n')[0]).toBe(`line 12: field "${field}": expected ${expected}; got ${received}`);
  });

  it('holds a record to the conversational form the dataset started with', () => {
    const e = recordError(() => validateRecord({ text: 'a' }, 'language-modeling', { index: 5, conversational: true, conversationalFrom: 'record at index 0' }));
    expect(e.message).toContain('record at index 5: field "text": expected a list of messages (the conversational format, like record at index 0); got "a"');
    expect(e.help).toContain('not a mix');
  });

  it('says "an unpaired-preference", and rejects an unknown format naming the known ones', () => {
    expect(recordError(() => validateRecord({ prompt: 'a' }, 'unpaired-preference')).message).toContain('expected an unpaired-preference record to have "completion"');
    expect(recordError(() => validateRecord(3, 'unpaired-preference')).message).toContain('expected a JSON object (an unpaired-preference record)');
    expect(() => validateRecord({ prompt: 'a' }, 'prompt-onyl' as never)).toThrow(
      "validateRecord: expected format to be one of 'language-modeling', 'prompt-only', 'prompt-completion', 'preference', 'unpaired-preference'; got \"prompt-onyl\"",
    );
  });

  it('cuts long found strings in messages', () => {
    const e = recordError(() => validateRecord({ prompt: 'a', completion: 'b', label: 'x'.repeat(1000) }, 'unpaired-preference'));
    expect(e.received).toBe(`"${'x'.repeat(57)}"… (1000 characters)`);
  });
});

describe('extractPrompt', () => {
  it('splits standard strings at the common start, the space going with the answers (as TRL)', () => {
    expect(extractPrompt({ chosen: 'The sky is blue.', rejected: 'The sky is green.', id: 1 })).toEqual({ prompt: 'The sky is', chosen: ' blue.', rejected: ' green.', id: 1 });
  });

  it('splits conversations at the first differing message', () => {
    const q = user('What color is the sky?');
    expect(extractPrompt({ chosen: [q, assistant('It is blue.')], rejected: [q, assistant('It is green.')] })).toEqual({
      prompt: [q],
      chosen: [assistant('It is blue.')],
      rejected: [assistant('It is green.')],
    });
  });

  it('leaves an explicit prompt alone', () => {
    const record = { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' };
    expect(extractPrompt(record)).toBe(record);
  });
});

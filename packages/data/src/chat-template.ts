// Chat templates: a conversation rendered to text (and ids) by the tokenizer's Jinja template
// through @huggingface/jinja, with the assistant-token mask of templates that mark
// {% generation %} … {% endgeneration %}, as transformers' apply_chat_template does.
import { Template, parse, tokenize as lexJinja } from '@huggingface/jinja';
import { PosttrainError, describeValue, isPosttrainError, resolveOptions } from '@posttrain/tensor-core';
import type { Tokenizer } from './tokenizer.js';

/**
 * ChatML (`<|im_start|>role\ncontent<|im_end|>\n`), the default template of {@link ByteTokenizer},
 * with each assistant turn's content and closing `<|im_end|>` inside `{% generation %}` so
 * {@link applyChatTemplate} can return assistant masks. Works for any tokenizer whose vocabulary
 * has `<|im_start|>` and `<|im_end|>`.
 *
 * @example
 * ```ts
 * applyChatTemplate(new ByteTokenizer(), [{ role: 'user', content: 'hi' }], { chatTemplate: CHATML_TEMPLATE });
 * // '<|im_start|>user\nhi<|im_end|>\n'
 * ```
 */
export const CHATML_TEMPLATE = `{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
            {{- message.content + '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
`;

/**
 * One turn of a conversation. Extra fields (`reasoning_content`, `tool_calls`, `name`) reach the
 * template as they are.
 *
 * @example
 * ```ts
 * const messages: ChatMessage[] = [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4' }];
 * ```
 */
export interface ChatMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

/**
 * Options of {@link applyChatTemplate}.
 *
 * @example
 * ```ts
 * const options: ApplyChatTemplateOptions = { addGenerationPrompt: true, templateVariables: { enable_thinking: false } };
 * ```
 */
export interface ApplyChatTemplateOptions {
  /** End with the header of an assistant turn (`<|im_start|>assistant\n`), for generation. */
  addGenerationPrompt?: boolean;
  /** Cut the text right after the last message's content, so a model continues it (TRL does this for prompts ending in an assistant turn). */
  continueFinalMessage?: boolean;
  /** Return token ids instead of text (encoded without added special tokens: the template writes its own). */
  tokenize?: boolean;
  /** Return `{ text, inputIds, assistantMask }`; needs a template with `{% generation %}` markers. */
  returnAssistantMask?: boolean;
  /** A template to use instead of `tokenizer.chatTemplate`. */
  chatTemplate?: string;
  /** Tool definitions (JSON schemas) for templates that render them. */
  tools?: unknown[];
  /** More variables for the template, e.g. `{ enable_thinking: false }` for Qwen3. */
  templateVariables?: Record<string, unknown>;
}

/**
 * Defaults of {@link applyChatTemplate}: text, no generation prompt, the tokenizer's template.
 *
 * @example
 * ```ts
 * applyChatTemplate(tokenizer, messages, { ...defaultApplyChatTemplateOptions, addGenerationPrompt: true });
 * ```
 */
export const defaultApplyChatTemplateOptions: Readonly<Required<Omit<ApplyChatTemplateOptions, 'chatTemplate' | 'tools'>> & Pick<ApplyChatTemplateOptions, 'chatTemplate' | 'tools'>> = Object.freeze({
  addGenerationPrompt: false,
  continueFinalMessage: false,
  tokenize: false,
  returnAssistantMask: false,
  chatTemplate: undefined,
  tools: undefined,
  templateVariables: Object.freeze({}),
});

/**
 * A rendered conversation with its ids and the assistant mask: `assistantMask[k]` is 1 where token
 * `k` overlaps text inside `{% generation %}` (what the assistant says, the tokens to train on), 0
 * elsewhere.
 *
 * @example
 * ```ts
 * const { inputIds, assistantMask } = applyChatTemplate(tokenizer, messages, { returnAssistantMask: true });
 * ```
 */
export interface ChatTemplateEncoding {
  text: string;
  inputIds: number[];
  assistantMask: number[];
}

const GENERATION_TAG = /{%-?\s*(?:end)?generation\s*-?%}/;

/** A template compiled twice: as @huggingface/jinja renders it, and with marks where generation tags are. */
interface Compiled {
  plain: Template;
  marked: Template | null;
  start: string;
  end: string;
}

const cache = new Map<string, Compiled>();

/**
 * Compiles `source`, and, when it has generation tags, a copy in which each tag becomes a mark in
 * the output. The copy is preprocessed exactly as @huggingface/jinja's lexer does (lstrip_blocks,
 * trim_blocks, then the tag and the whitespace its `-` removes), except that the tag leaves its
 * mark; whitespace a neighbouring `{{-`/`-}}` would strip through the removed tag is dropped too.
 */
function compile(source: string): Compiled {
  let compiled = cache.get(source);
  if (compiled) return compiled;
  const nonce = Math.random().toString(36).slice(2, 10);
  const start = `\uE000${nonce}\uE001`;
  const end = `\uE002${nonce}\uE003`;
  const plain = new Template(source);
  let marked: Template | null = null;
  if (GENERATION_TAG.test(source)) {
    const text = source
      .replace(/^[ \t]*({[#%-])/gm, '$1')
      .replace(/([#%-]})\n/g, '$1')
      .replace(/(\s*){%(-?)\s*(end)?generation\s*(-?)%}(\s*)/gs, (tag: string, before: string, lstrip: string, close: string, rstrip: string, after: string, at: number, all: string) => {
        // A `{{-` after the tag, or a `-}}` before it, strips all this whitespace once the tag is gone.
        const stripped = /^{[{%#]-/.test(all.slice(at + tag.length)) || /-[}%#]}$/.test(all.slice(0, at));
        return (stripped || lstrip ? '' : before) + (close ? end : start) + (stripped || rstrip ? '' : after);
      });
    marked = new Template('');
    marked.parsed = parse(lexJinja(text));
  }
  compiled = { plain, marked, start, end };
  if (cache.size >= 32) cache.delete(cache.keys().next().value!);
  cache.set(source, compiled);
  return compiled;
}

function fail(message: string, help?: string): PosttrainError {
  return new PosttrainError('INVALID_ARGUMENT', `applyChatTemplate: ${message}`, help ? { help } : {});
}

function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw fail(`expected messages to be a non-empty array of { role, content }; got ${describeValue(messages)}`);
  }
  messages.forEach((message: unknown, i) => {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      throw fail(`expected messages[${i}] to be an object with role and content; got ${describeValue(message)}`);
    }
    const { role, content } = message as Record<string, unknown>;
    if (typeof role !== 'string' || role === '') {
      throw fail(`expected messages[${i}].role to be a non-empty string such as "user" or "assistant"; got ${describeValue(role)}`);
    }
    if (typeof content !== 'string') {
      throw fail(`expected messages[${i}].content to be a string; got ${describeValue(content)}`, 'write the text of the turn as a string; use "" for a turn with only tool calls');
    }
  });
}

function render(template: Template, variables: Record<string, unknown>): string {
  try {
    return template.render(variables);
  } catch (error) {
    throw new PosttrainError('INVALID_ARGUMENT', `applyChatTemplate: expected the chat template to render these messages; it failed: ${(error as Error).message}`, { cause: error });
  }
}

/** Removes the marks from `marked`, returning the text and the [start, end) spans they enclosed. */
function generationSpans(marked: string, start: string, end: string): { text: string; spans: Array<[number, number]> } {
  const spans: Array<[number, number]> = [];
  let text = '';
  let open: number | null = null;
  let at = 0;
  for (;;) {
    const s = marked.indexOf(start, at);
    const e = marked.indexOf(end, at);
    const next = s >= 0 && (e < 0 || s < e) ? s : e;
    if (next < 0) break;
    text += marked.slice(at, next);
    const opening = next === s;
    if (opening === (open !== null)) {
      throw new PosttrainError(
        'NOT_SUPPORTED',
        `applyChatTemplate: expected {% generation %} and {% endgeneration %} to alternate; found ${opening ? 'a generation inside another' : 'an endgeneration without a generation'}`,
      );
    }
    if (opening) open = text.length;
    else if (open !== null) {
      if (text.length > open) spans.push([open, text.length]);
      open = null;
    }
    at = next + (opening ? start : end).length;
  }
  if (open !== null) throw new PosttrainError('NOT_SUPPORTED', 'applyChatTemplate: expected every {% generation %} to be closed by {% endgeneration %}; one is not');
  return { text: text + marked.slice(at), spans };
}

/** The text cut right after the final message's content (transformers' continue_final_message). */
function cutAfterFinal(text: string, final: string): number {
  const at = text.lastIndexOf(final.trim());
  if (final.trim() === '' || at < 0) {
    throw fail(
      'expected the rendered conversation to contain the final message with continueFinalMessage; the template changed or dropped it',
      'turn continueFinalMessage off, or end the conversation with a non-empty message the template writes as it is',
    );
  }
  return text.slice(at, at + final.trimStart().length) === final.trimStart() ? at + final.trimStart().length : at + final.trim().length;
}

/**
 * Ids and assistant mask of `text`: from token offsets, or, where the tokenizer has none (or a
 * normalizer rewrites the text), from encoding the pieces between span edges, which must give the
 * ids of the whole text.
 */
function maskTokens(tokenizer: Tokenizer, text: string, spans: Array<[number, number]>): { inputIds: number[]; assistantMask: number[] } {
  if (typeof tokenizer.encodeWithOffsets === 'function') {
    try {
      const { ids, offsets } = tokenizer.encodeWithOffsets(text, { addSpecialTokens: false });
      const assistantMask = offsets.map(([s, e]) => (spans.some(([a, b]) => s < b && e > a) ? 1 : 0));
      return { inputIds: ids, assistantMask };
    } catch (error) {
      if (!isPosttrainError(error) || error.code !== 'NOT_SUPPORTED') throw error; // no offsets (a normalizer rewrote the text): split instead
    }
  }
  const edges = [0, ...spans.flat(), text.length];
  const inputIds: number[] = [];
  const assistantMask: number[] = [];
  for (let k = 0; k + 1 < edges.length; k++) {
    const ids = tokenizer.encode(text.slice(edges[k], edges[k + 1]), { addSpecialTokens: false });
    inputIds.push(...ids);
    for (const _ of ids) assistantMask.push(k % 2);
  }
  const whole = tokenizer.encode(text, { addSpecialTokens: false });
  if (whole.length !== inputIds.length || whole.some((id, k) => id !== inputIds[k])) {
    throw new PosttrainError(
      'NOT_SUPPORTED',
      'applyChatTemplate: expected the conversation to tokenize the same whole and split at assistant turns; a token crosses a turn boundary, and the tokenizer gives no offsets to say where',
      {
        help: 'implement encodeWithOffsets on the tokenizer, or use a template whose assistant text starts and ends at special tokens',
      },
    );
  }
  return { inputIds, assistantMask };
}

/**
 * Renders a conversation with a chat template (the tokenizer's, or `chatTemplate`) through
 * @huggingface/jinja, with the variables transformers passes: `messages`,
 * `add_generation_prompt`, `tools`, `bos_token`, `eos_token`, `pad_token`, `unk_token`, plus
 * `templateVariables`. Returns the text; the ids with `tokenize`; or, with `returnAssistantMask`,
 * `{ text, inputIds, assistantMask }`, where the mask marks every token overlapping text the
 * template put inside `{% generation %}` … `{% endgeneration %}` (computed from token offsets, so
 * it matches the ids of the whole text exactly). A message without a string `role` or `content`
 * fails naming its index and field.
 *
 * @example
 * ```ts
 * const tokenizer = new ByteTokenizer();
 * const messages = [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }];
 * applyChatTemplate(tokenizer, messages); // '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n'
 * applyChatTemplate(tokenizer, messages.slice(0, 1), { addGenerationPrompt: true, tokenize: true }); // ids
 * const { inputIds, assistantMask } = applyChatTemplate(tokenizer, messages, { returnAssistantMask: true });
 * ```
 */
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: ApplyChatTemplateOptions & { returnAssistantMask: true }): ChatTemplateEncoding;
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: ApplyChatTemplateOptions & { tokenize: true; returnAssistantMask?: false }): number[];
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], options: ApplyChatTemplateOptions & { tokenize: true }): number[] | ChatTemplateEncoding;
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], options?: ApplyChatTemplateOptions & { tokenize?: false; returnAssistantMask?: false }): string;
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], options?: ApplyChatTemplateOptions): string | number[] | ChatTemplateEncoding;
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], options?: ApplyChatTemplateOptions): string | number[] | ChatTemplateEncoding {
  const o = resolveOptions('applyChatTemplate', options, defaultApplyChatTemplateOptions);
  checkMessages(messages);
  const source = o.chatTemplate ?? tokenizer.chatTemplate;
  if (typeof source !== 'string' || source === '') {
    throw fail(
      `expected a chat template in options.chatTemplate or tokenizer.chatTemplate; got ${describeValue(source)}`,
      'pass chatTemplate (CHATML_TEMPLATE for a ChatML vocabulary), or load a tokenizer whose tokenizer_config.json has chat_template',
    );
  }
  if (o.addGenerationPrompt && o.continueFinalMessage) {
    throw fail('expected at most one of addGenerationPrompt and continueFinalMessage; got both', 'a generation prompt opens a new assistant turn; continueFinalMessage continues the last one');
  }
  if (typeof o.templateVariables !== 'object' || o.templateVariables === null) throw fail(`expected templateVariables to be an object; got ${describeValue(o.templateVariables)}`);
  const variables: Record<string, unknown> = { ...o.templateVariables, messages, add_generation_prompt: o.addGenerationPrompt };
  if (o.tools !== undefined) variables.tools = o.tools;
  for (const name of ['bos', 'eos', 'pad', 'unk'] as const) {
    const token = tokenizer[`${name}Token`];
    if (typeof token === 'string') variables[`${name}_token`] = token;
  }
  let compiled: Compiled;
  try {
    compiled = compile(source);
  } catch (error) {
    throw new PosttrainError('INVALID_ARGUMENT', `applyChatTemplate: expected a chat template that @huggingface/jinja can parse; it failed: ${(error as Error).message}`, { cause: error });
  }
  let text = render(compiled.plain, variables);
  let spans: Array<[number, number]> = [];
  if (o.returnAssistantMask) {
    if (compiled.marked === null) {
      throw new PosttrainError(
        'NOT_SUPPORTED',
        'applyChatTemplate: expected a chat template that marks assistant text with {% generation %} … {% endgeneration %} to return an assistant mask; this template has no generation tags',
        {
          help: 'pass a chatTemplate with generation tags (CHATML_TEMPLATE has them), or mask by prompt and completion instead',
        },
      );
    }
    const found = generationSpans(render(compiled.marked, variables), compiled.start, compiled.end);
    if (found.text !== text) {
      throw new PosttrainError('NOT_SUPPORTED', 'applyChatTemplate: expected the generation tags to leave the text as the template renders it; whitespace control around them changes it', {
        help: 'move {%- / -%} whitespace control off the tags next to {% generation %} and {% endgeneration %}',
      });
    }
    spans = found.spans;
  }
  if (o.continueFinalMessage) {
    const cut = cutAfterFinal(text, messages[messages.length - 1].content);
    text = text.slice(0, cut);
    spans = spans.filter(([a]) => a < cut).map(([a, b]) => [a, Math.min(b, cut)]);
  }
  if (o.returnAssistantMask) return { text, ...maskTokens(tokenizer, text, spans) };
  return o.tokenize ? tokenizer.encode(text, { addSpecialTokens: false }) : text;
}

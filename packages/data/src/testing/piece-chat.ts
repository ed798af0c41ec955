// A chat encoder for tests over the PieceTokenizer: each message is "role: content<eos>", the
// pieces tokenized separately so the assistant mask is exact. Test support only.
import type { Message } from '../formats.js';
import type { ChatEncoder, ChatTokens } from '../tokenize.js';
import type { PieceTokenizer } from './piece-tokenizer.js';

/**
 * `<bos>` then, per message, `role: ` and `content<eos>`; `assistantMask` is 1 on an assistant's
 * content and its `<eos>`. `addGenerationPrompt` appends `assistant: `. With `markAssistant:
 * false` it returns no mask, like a template without `{% generation %}`. A {@link ChatEncoder}.
 */
export function pieceChat(tokenizer: PieceTokenizer, options: { markAssistant?: boolean } = {}): (messages: Message[], options: { addGenerationPrompt: boolean }) => ChatTokens {
  return (messages: Message[], { addGenerationPrompt }) => {
    const inputIds = [tokenizer.bosTokenId];
    const assistantMask = [0];
    const add = (ids: number[], mask: number) => {
      inputIds.push(...ids);
      assistantMask.push(...ids.map(() => mask));
    };
    for (const message of messages) {
      add(tokenizer.encode(`${message.role}: `, { addSpecialTokens: false }), 0);
      add([...tokenizer.encode(message.content, { addSpecialTokens: false }), tokenizer.eosTokenId], message.role === 'assistant' ? 1 : 0);
    }
    if (addGenerationPrompt) add(tokenizer.encode('assistant: ', { addSpecialTokens: false }), 0);
    return options.markAssistant === false ? { inputIds } : { inputIds, assistantMask };
  };
}

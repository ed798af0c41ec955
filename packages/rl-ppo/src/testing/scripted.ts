// Test helpers of the online trainers: a generator that returns fixed texts. Not exported.
import type { Generator } from '@posttrain/policy';

/** The byte ids of `text` (the ByteTokenizer's ids of ASCII text). */
export const bytes = (text: string): number[] => [...text].map((c) => c.charCodeAt(0));

/** A generator that returns the given texts for every prompt, in turn, each followed by `eos`, with log-probs 0. */
export function scripted(texts: readonly string[], eos: number): Generator {
  return {
    name: 'scripted',
    generate: async ({ promptIds, n }) =>
      promptIds.map(() =>
        Array.from({ length: n }, (_, j) => {
          const ids = [...bytes(texts[j % texts.length]), eos];
          return { ids, logprobs: ids.map(() => 0), finishReason: 'stop' as const };
        }),
      ),
  };
}

import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tf } from '@posttrain/tensor-core';
import { generateFromDirectory } from './generate-from-directory.js';

const tinyBase = fileURLToPath(new URL('../../sft/tiny-base/', import.meta.url));

describe('generate example', () => {
  it('continues text prompts of several lengths from a Hugging Face directory and decodes the answers', async () => {
    const before = tf.memory().numTensors;
    const prompts = ['dbca|', 'hgf|', 'eacgd|'];
    const greedy = await generateFromDirectory(tinyBase, prompts, { backend: 'wasm', maxNewTokens: 8 });
    // The tiny base was pretrained to sort 3–4 letters and stop: left padding must not change that.
    expect(greedy.map((c) => c.text)).toEqual(['abcd\n', 'fgh\n', greedy[2].text]);
    expect(greedy.slice(0, 2).map((c) => c.finishReason)).toEqual(['stop', 'stop']);
    expect(greedy[0].tokens.at(-1)).toBe(258); // <|im_end|>, left out of the text
    expect(tf.memory().numTensors).toBe(before);
  });

  it('samples reproducibly with a seed', async () => {
    const options = { backend: 'wasm' as const, maxNewTokens: 6, temperature: 1.5, seed: 7 };
    const first = await generateFromDirectory(tinyBase, ['dbca|', 'hgfe|'], options);
    expect(await generateFromDirectory(tinyBase, ['dbca|', 'hgfe|'], options)).toEqual(first);
    for (const c of first) expect(c.tokens.length).toBeLessThanOrEqual(6);
  });
});

import { describe, expect, it } from 'vitest';
import { Rng } from '@posttrain/tensor-core';
import { samplingDistribution } from './index.js';
import { sampleToken } from './sampling.js';
import { policyReference } from './testing/fixture.js';
import { expectClose } from './testing/helpers.js';

// The sampling distribution after temperature, top-k, top-p and min-p, against transformers'
// warpers written in PyTorch (scripts/reference/policy_ref.py), float64 on both sides.
describe('samplingDistribution against the PyTorch warpers', () => {
  it.each(policyReference.sampling.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const probs = samplingDistribution(new Float32Array(c.logits.data), c.filters);
    expectClose(probs, c.probs.data, 1e-12, c.name);
    // The same support, not just close values.
    expect(Array.from(probs, (p) => p > 0)).toEqual(c.probs.data.map((p) => p > 0));
  });

  it('covers cases where each filter removes tokens', () => {
    const kept = (c: (typeof policyReference.sampling)[number]) => c.probs.data.filter((p) => p > 0).length;
    const all = policyReference.sampling;
    for (const filter of ['topK', 'topP', 'minP'] as const) {
      const active = all.filter((c) => (filter === 'topK' ? c.filters.topK > 0 : filter === 'topP' ? c.filters.topP < 1 : c.filters.minP > 0));
      expect(
        active.some((c) => kept(c) < c.logits.data.length),
        `${filter} removes tokens somewhere`,
      ).toBe(true);
    }
  });
});

describe('sampleToken', () => {
  it('draws with the frequencies of the sampling distribution (20,000 draws, within 0.015)', () => {
    const logits = new Float32Array([2, 1.5, 1, 0, -1, -3]);
    const filters = { temperature: 0.9, topK: 5, topP: 0.9, minP: 0.1 };
    const probs = samplingDistribution(logits, filters);
    const rng = new Rng(3);
    const counts = new Array<number>(logits.length).fill(0);
    const n = 20_000;
    for (let i = 0; i < n; i++) counts[sampleToken(logits, filters, rng)]++;
    counts.forEach((c, i) => expect(Math.abs(c / n - probs[i]), `token ${i}`).toBeLessThan(0.015));
    expect(counts[5], 'filtered tokens are never drawn').toBe(0);
  });
});

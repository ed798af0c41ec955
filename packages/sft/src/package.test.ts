import { describe, expect, it } from 'vitest';
import * as sft from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(sft).sort()).toEqual(['defaultSftOptions', 'estimateFisher', 'resolveSftOptions', 'sftTrain']);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(sft)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});

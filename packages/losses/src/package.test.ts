import { describe, expect, it } from 'vitest';
import * as losses from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(losses).sort()).toMatchSnapshot();
  });

  it('freezes every default options object', () => {
    for (const [name, value] of Object.entries(losses)) {
      if (name.startsWith('default')) expect(Object.isFrozen(value), name).toBe(true);
    }
  });
});

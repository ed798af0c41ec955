import { describe, expect, it } from 'vitest';
import * as dpo from './index.js';

describe('public surface', () => {
  it('exports exactly these names (changing the list is a visible decision)', () => {
    expect(Object.keys(dpo).sort()).toEqual([
      'defaultDpoOptions',
      'defaultKtoOptions',
      'defaultOnlineDpoOptions',
      'defaultPreferenceLogpsOptions',
      'dpoObjective',
      'dpoTrain',
      'ktoTrain',
      'onlineDpoTrain',
      'orpoObjective',
      'preferenceLogps',
      'resolveDpoOptions',
      'resolveKtoOptions',
      'resolveOnlineDpoOptions',
      'simpoObjective',
    ]);
  });

  it('freezes every default*Options object', () => {
    for (const [name, value] of Object.entries(dpo)) if (/^default\w*Options$/.test(name)) expect(Object.isFrozen(value), name).toBe(true);
  });
});

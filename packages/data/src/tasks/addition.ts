import { PosttrainError, checkNumber, type Rng } from '@posttrain/tensor-core';
import { defineVerifiableTask, intBetween, type VerifiableTask } from './task.js';

/**
 * Options of {@link additionTask}. Each operand's digit count is drawn uniformly from
 * `minDigits..maxDigits`, then its digits, so short and long operands are equally common.
 *
 * @example
 * ```ts
 * const options: AdditionOptions = { minDigits: 2, maxDigits: 3 };
 * additionTask.generate(0, 4, options);
 * ```
 */
export interface AdditionOptions {
  /** Fewest digits of an operand, an integer from 1 to 15 (default 1; one digit includes 0). */
  minDigits: number;
  /** Most digits of an operand, an integer from minDigits to 15 (default 2). */
  maxDigits: number;
}

/**
 * The metadata of an addition example: the operands and how many column additions carried.
 *
 * @example
 * ```ts
 * const [{ metadata }] = additionTask.generate(0, 1); // { task: 'addition', a: 30, b: 15, carries: 0 }
 * ```
 */
export type AdditionMetadata = { a: number; b: number; carries: number };

/**
 * The defaults of {@link additionTask}: operands of 1 or 2 digits.
 *
 * @example
 * ```ts
 * additionTask.generate(0, 8, { ...defaultAdditionOptions, maxDigits: 3 });
 * ```
 */
export const defaultAdditionOptions: Readonly<AdditionOptions> = Object.freeze({ minDigits: 1, maxDigits: 2 });

const maxDigitsLimit = 15; // a + b stays an exact double in the metadata

/**
 * Integer addition: `'12+7='` → `'19'`, in decimal without leading zeros. Partial credit is the
 * fraction of digits right with answer and completion aligned at the units digit, over the longer of
 * the two. Rejected answers of preference pairs drop one carry (`'58+67='` → `'115'`) when that
 * keeps the length, or move one digit by one (`'19'` → `'18'`, `'29'`).
 *
 * @example
 * ```ts
 * additionTask.solve('12+7=');                             // '19'
 * additionTask.verify('12+7=', '18');                      // { correct: false, score: 0.5 }
 * additionTask.preferencePair({ prompt: '58+67=', answer: '125', metadata: {} }, 2); // { …, rejected: '115' } (carry dropped)
 * ```
 */
export const additionTask: VerifiableTask<AdditionOptions, AdditionMetadata & { task: string }> = defineVerifiableTask({
  name: 'addition',
  defaults: defaultAdditionOptions,
  validate(o) {
    checkNumber('addition', 'minDigits', o.minDigits, `an integer from 1 to ${maxDigitsLimit}`, (v) => Number.isInteger(v) && v >= 1 && v <= maxDigitsLimit);
    checkNumber('addition', 'maxDigits', o.maxDigits, `an integer from minDigits (${o.minDigits}) to ${maxDigitsLimit}`, (v) => Number.isInteger(v) && v >= o.minDigits && v <= maxDigitsLimit);
  },
  sample(rng, o) {
    const [a, b] = [operand(rng, o), operand(rng, o)];
    return { prompt: `${a}+${b}=`, metadata: { a: Number(a), b: Number(b), carries: addDecimal(a, b).carries.length } };
  },
  solve: (prompt) => addDecimal(...parse(prompt)).sum,
  align: 'right',
  reject({ prompt, answer }, rng) {
    // Forgetting the carry out of column k lowers the sum by 10^(k+1); keep those that keep the length.
    const dropped = addDecimal(...parse(prompt))
      .carries.map((k) => subtractPowerOfTen(answer, k + 1))
      .filter((s): s is string => s !== undefined);
    if (dropped.length > 0 && rng.int(2) === 0) return dropped[rng.int(dropped.length)];
    const i = rng.int(answer.length);
    const digit = Number(answer[i]);
    const lowest = i === 0 && answer.length > 1 ? 1 : 0;
    const options = [digit - 1, digit + 1].filter((d) => d >= lowest && d <= 9);
    return answer.slice(0, i) + String(options[rng.int(options.length)]) + answer.slice(i + 1);
  },
  promptSpaceSize(o) {
    let operands = 0;
    for (let d = o.minDigits; d <= o.maxDigits; d++) operands += d === 1 ? 10 : 9 * 10 ** (d - 1);
    return operands * operands;
  },
});

function operand(rng: Rng, o: AdditionOptions): string {
  const digits = intBetween(rng, o.minDigits, o.maxDigits);
  let text = digits === 1 ? String(rng.int(10)) : String(1 + rng.int(9));
  for (let i = 1; i < digits; i++) text += String(rng.int(10));
  return text;
}

function parse(prompt: string): [string, string] {
  const match = /^(\d+)\+(\d+)=$/.exec(prompt);
  if (!match) throw new PosttrainError('INVALID_ARGUMENT', `addition: expected a prompt like "12+7="; got ${JSON.stringify(prompt)}`);
  return [match[1], match[2]];
}

/** Schoolbook addition of decimal strings: the sum without leading zeros, and the columns (0 = units) that carried. */
export function addDecimal(a: string, b: string): { sum: string; carries: number[] } {
  const carries: number[] = [];
  let sum = '';
  let carry = 0;
  for (let k = 0; k < Math.max(a.length, b.length); k++) {
    const total = Number(a[a.length - 1 - k] ?? 0) + Number(b[b.length - 1 - k] ?? 0) + carry;
    carry = total >= 10 ? 1 : 0;
    if (carry) carries.push(k);
    sum = String(total % 10) + sum;
  }
  if (carry) sum = '1' + sum;
  return { sum: sum.replace(/^0+(?=\d)/, ''), carries };
}

/** `value − 10^power` as decimal, or undefined when it would be shorter (or negative). */
function subtractPowerOfTen(value: string, power: number): string | undefined {
  const result = String(BigInt(value) - 10n ** BigInt(power));
  return result.length === value.length ? result : undefined;
}

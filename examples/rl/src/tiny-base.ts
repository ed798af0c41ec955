// The base model and task options this example shares with examples/sft and examples/dpo (read from there, not copied).
import { fileURLToPath } from 'node:url';
import type { StringTaskOptions } from '@posttrain/data';

/** The tiny Llama that examples/sft ships (it sorts strings and has never seen reversal). */
export const TINY_BASE_DIR = fileURLToPath(new URL('../../sft/tiny-base/', import.meta.url));

/** The strings of examples/sft's demo (its `STRING_OPTIONS`): 3 or 4 of the letters a–h. */
export const STRING_OPTIONS: StringTaskOptions = { alphabet: 'abcdefgh', minLength: 3, maxLength: 4 };

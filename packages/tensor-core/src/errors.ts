/**
 * Stable error codes. A code names the kind of failure and never changes meaning; messages may
 * be reworded.
 */
export type PosttrainErrorCode =
  | 'INVALID_ARGUMENT'
  | 'INVALID_OPTION'
  | 'SHAPE_MISMATCH'
  | 'DTYPE_MISMATCH'
  | 'STATE_DICT_MISMATCH'
  | 'SAFETENSORS_FORMAT'
  | 'FILE_NOT_FOUND'
  | 'BACKEND_UNAVAILABLE'
  | 'NOT_SUPPORTED'
  | 'NON_FINITE'
  /** A function the user passed in (a reward function, a judge) threw; the original error is the `cause`. */
  | 'CALLBACK_FAILED';

const marker = Symbol.for('posttrain.error');

export interface PosttrainErrorOptions {
  /** The underlying error, if this one wraps another. */
  cause?: unknown;
  /** A line telling the user how to fix the problem. Printed after the message as `help: …`. */
  help?: string;
}

/**
 * The one error class of posttrain. Every message says what was expected, what was received and,
 * where it can, how to fix it. Test for it with {@link isPosttrainError}, not `instanceof`: npm may
 * install two copies of this package, and `instanceof` then answers false.
 *
 * @example
 * ```ts
 * throw new PosttrainError('SHAPE_MISMATCH', 'expected logits [B, T, V]; got [4, 7]');
 * ```
 */
export class PosttrainError extends Error {
  readonly code: PosttrainErrorCode;
  readonly help?: string;

  constructor(code: PosttrainErrorCode, message: string, options: PosttrainErrorOptions = {}) {
    // Pass `cause` only when given: `{ cause: undefined }` would still create an own `cause`
    // property, which Node prints as `[cause]: undefined` under every error.
    super(options.help ? `${message}\nhelp: ${options.help}` : message, 'cause' in options ? { cause: options.cause } : undefined);
    this.name = 'PosttrainError';
    this.code = code;
    this.help = options.help;
    Object.defineProperty(this, marker, { value: true });
  }
}

/**
 * True for any {@link PosttrainError}, from this copy of the package or another.
 *
 * @example
 * ```ts
 * try { readSafetensors(new Uint8Array(3)); } catch (e) { if (isPosttrainError(e)) console.log(e.code); }
 * ```
 */
export function isPosttrainError(value: unknown): value is PosttrainError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[marker] === true;
}

/** Formats a shape for messages: `[4, 7]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

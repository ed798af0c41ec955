import { describe, expect, it } from 'vitest';
import { PosttrainError, formatShape, isPosttrainError } from './errors.js';

describe('PosttrainError', () => {
  it('carries a stable code, a name and the message', () => {
    const error = new PosttrainError('SHAPE_MISMATCH', 'expected logits [B, T, V]; got [4, 7]');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('PosttrainError');
    expect(error.code).toBe('SHAPE_MISMATCH');
    expect(error.message).toBe('expected logits [B, T, V]; got [4, 7]');
    expect(error.help).toBeUndefined();
    expect(error.stack).toContain('PosttrainError');
  });

  it('appends the help line after the message', () => {
    const error = new PosttrainError('INVALID_OPTION', 'expected lr > 0; got -1', { help: 'pass a positive learning rate' });
    expect(error.message).toBe('expected lr > 0; got -1\nhelp: pass a positive learning rate');
    expect(error.help).toBe('pass a positive learning rate');
  });

  it('keeps the cause when given, and has no cause property when not', () => {
    const inner = new RangeError('boom');
    expect(new PosttrainError('FILE_NOT_FOUND', 'no file', { cause: inner }).cause).toBe(inner);
    // `{ cause: undefined }` passed to Error would create an own `cause` that Node prints.
    expect('cause' in new PosttrainError('FILE_NOT_FOUND', 'no file')).toBe(false);
    expect('cause' in new PosttrainError('FILE_NOT_FOUND', 'no file', { help: 'h' })).toBe(false);
  });
});

describe('isPosttrainError', () => {
  it('is true for a PosttrainError of this copy', () => {
    expect(isPosttrainError(new PosttrainError('NOT_SUPPORTED', 'no'))).toBe(true);
  });

  it('is true for an error of another copy of the package (Symbol.for marker, not instanceof)', () => {
    // What a second installed copy of tensor-core would throw: its own class, same global symbol.
    class OtherCopyError extends Error {
      readonly code = 'SHAPE_MISMATCH';
      constructor(message: string) {
        super(message);
        Object.defineProperty(this, Symbol.for('posttrain.error'), { value: true });
      }
    }
    const foreign = new OtherCopyError('from the other copy');
    expect(foreign instanceof PosttrainError).toBe(false);
    expect(isPosttrainError(foreign)).toBe(true);
    expect(isPosttrainError({ [Symbol.for('posttrain.error')]: true, code: 'X', message: 'plain object' })).toBe(true);
  });

  it('is false for a plain Error, a look-alike without the marker, and non-objects', () => {
    expect(isPosttrainError(new Error('plain'))).toBe(false);
    const lookAlike = Object.assign(new Error('x'), { name: 'PosttrainError', code: 'SHAPE_MISMATCH' });
    expect(isPosttrainError(lookAlike)).toBe(false);
    expect(isPosttrainError({ [Symbol('posttrain.error')]: true })).toBe(false); // a local symbol is not the marker
    expect(isPosttrainError({ [Symbol.for('posttrain.error')]: 'yes' })).toBe(false);
    for (const value of [undefined, null, 0, 'PosttrainError', true]) expect(isPosttrainError(value)).toBe(false);
  });
});

describe('formatShape', () => {
  it('writes shapes as in messages', () => {
    expect(formatShape([4, 7])).toBe('[4, 7]');
    expect(formatShape([])).toBe('[]');
    expect(formatShape([1])).toBe('[1]');
  });
});

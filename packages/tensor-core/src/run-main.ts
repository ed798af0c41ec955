// The entry point of a script: run it, and if it fails print what went wrong and how to fix it,
// not a wall of stack frames, and exit 1.
import { isPosttrainError } from './errors.js';

/**
 * Options of {@link runMain}.
 *
 * @example
 * ```ts
 * const options: RunMainOptions = { stack: true };
 * ```
 */
export interface RunMainOptions {
  /**
   * Print the stack of the error and of each cause. Default: true when the command line holds
   * `--stack` (which {@link runMain} then takes out of `process.argv`, so `parseArgs` in `main`
   * never sees it) or the environment sets `POSTTRAIN_STACK=1`.
   */
  stack?: boolean;
  /** Where the report goes. Default: standard error. */
  write?: (text: string) => void;
  /** Ends the program with a code. Default: `process.exit` (in a browser: nothing). */
  exit?: (code: number) => void;
}

const stackFlag = '--stack';

const env = (): Record<string, string | undefined> => (typeof process === 'undefined' ? {} : (process.env ?? {}));

/** Whether the user asked for stacks; takes `--stack` out of `process.argv`. */
function stackRequested(): boolean {
  let asked = false;
  if (typeof process !== 'undefined' && Array.isArray(process.argv)) {
    const at = process.argv.indexOf(stackFlag, 2);
    if (at >= 0) {
      process.argv.splice(at, 1);
      asked = true;
    }
  }
  const value = env().POSTTRAIN_STACK;
  return asked || (value !== undefined && value !== '' && value !== '0' && value !== 'false');
}

// A message can quote a tensor or a file; a line past this many characters is cut.
const MAX_LINE = 2000;
const clip = (line: string) => (line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}… (${line.length - MAX_LINE} more characters)` : line);

function describe(error: unknown, stack: boolean): string[] {
  if (!(error instanceof Error)) return [clip(`error: ${typeof error === 'string' ? error : String(error)}`)];
  const head = isPosttrainError(error) ? `error [${error.code}]` : `error (${error.name})`;
  const lines = error.message.split('\n').map(clip);
  const out = [`${head}: ${lines[0]}`, ...lines.slice(1)];
  if (stack && error.stack) {
    // V8's stack starts with "Name: message"; the frames are the lines starting with "at".
    out.push(...error.stack.split('\n').filter((line) => /^\s+at /.test(line)));
  }
  return out;
}

/**
 * Formats an error for a terminal: `error [CODE]: message`, the `help:` line of a
 * {@link PosttrainError}, then each `cause` as `caused by …`, with stack frames only when `stack`
 * is true. No source lines: Node's own report of an uncaught error prints the throwing line, which
 * in minified dependencies is tens of kilobytes.
 *
 * @example
 * ```ts
 * formatError(new PosttrainError('INVALID_OPTION', 'expected lr > 0; got -1', { help: 'pass lr: 1e-3' }));
 * // 'error [INVALID_OPTION]: expected lr > 0; got -1\nhelp: pass lr: 1e-3'
 * ```
 */
export function formatError(error: unknown, options: { stack?: boolean } = {}): string {
  const stack = options.stack ?? false;
  const out = describe(error, stack);
  const seen = new Set<unknown>([error]);
  let cause = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause !== undefined && !seen.has(cause) && depth < 8; depth++) {
    seen.add(cause);
    const [first, ...rest] = describe(cause, stack);
    out.push(`caused by ${first.replace(/^error /, '')}`, ...rest.map((line) => `  ${line}`));
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return out.join('\n');
}

/**
 * Runs a script's `main` and turns a failure into a short report on standard error and exit code
 * 1: the error's message and help line (see {@link formatError}), the stack only on request
 * (`--stack` on the command line or `POSTTRAIN_STACK=1`), and a line saying how to ask for it.
 * The examples, the demo and the benchmark start this way. Resolves with `main`'s result; on
 * failure it exits (or, with an `exit` that returns, resolves undefined).
 *
 * @example
 * ```ts
 * await runMain(async () => {
 *   await initBackend();
 *   // … the script …
 * });
 * ```
 */
export async function runMain<T>(main: () => T | Promise<T>, options: RunMainOptions = {}): Promise<T | undefined> {
  const stack = options.stack ?? stackRequested();
  try {
    return await main();
  } catch (error) {
    const write = options.write ?? ((text: string) => console.error(text));
    const hint = stack ? '' : `\n(for the stack trace, run again with ${stackFlag} or POSTTRAIN_STACK=1)`;
    write(`${formatError(error, { stack })}${hint}`);
    const exit = options.exit ?? ((code: number) => (typeof process !== 'undefined' && typeof process.exit === 'function' ? process.exit(code) : undefined));
    exit(1);
    return undefined;
  }
}

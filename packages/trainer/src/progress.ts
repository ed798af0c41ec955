import type { TrainRecord } from './options.js';

/** A stream progress is written to. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

const fixed = (v: number | undefined, digits: number) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits));
const lr = (v: number | undefined) => (v === undefined ? '-' : v.toExponential(2));

function clock(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** A train record's throughput and its label: `tok/s`, `seq/s` or `pairs/s`, by the step's unit. */
function throughput(record: TrainRecord): { label: string; perSecond: number | undefined } {
  if (record.pairs_per_second !== undefined) return { label: 'pairs/s', perSecond: record.pairs_per_second };
  if (record.sequences_per_second !== undefined) return { label: 'seq/s', perSecond: record.sequences_per_second };
  return { label: 'tok/s', perSecond: record.tokens_per_second };
}

/**
 * One plain progress line for a train record, as written where the output is not a terminal:
 * `step 3/10 loss 1.2345 lr 1.00e-3 grad_norm 0.512 tok/s 812 elapsed 1.2s` (`pairs/s` or `seq/s`
 * when the step counts pairs or sequences).
 *
 * @example
 * ```ts
 * formatProgressLine({ kind: 'train', step: 3, loss: 1.2345, learning_rate: 1e-3, grad_norm: 0.512, tokens: 96, tokens_per_second: 812, elapsed: 1.2 }, 10);
 * ```
 */
export function formatProgressLine(record: TrainRecord, total?: number): string {
  const head = `step ${record.step}${total ? `/${total}` : ''}`;
  if (record.kind === 'eval') {
    const metrics = Object.entries(record)
      .filter(([k, v]) => !['kind', 'step', 'epoch', 'elapsed'].includes(k) && typeof v === 'number')
      .map(([k, v]) => `${k} ${(v as number).toFixed(4)}`);
    return `eval ${head} ${metrics.join(' ')}`.trimEnd();
  }
  const { label, perSecond } = throughput(record);
  return `${head} loss ${fixed(record.loss, 4)} lr ${lr(record.learning_rate)} grad_norm ${fixed(record.grad_norm, 3)} ${label} ${fixed(perSecond, 0)} elapsed ${fixed(record.elapsed, 1)}s`;
}

/**
 * A progress bar redrawn in place on a terminal: `[#######.............] 7/20 loss 1.2345 lr 1.00e-3 812 tok/s 00:05<00:09`.
 *
 * @example
 * ```ts
 * process.stderr.write(`\r${formatProgressBar(record, 20)}`);
 * ```
 */
export function formatProgressBar(record: TrainRecord, total?: number, width = 20): string {
  const fraction = total ? Math.min(1, record.step / total) : 0;
  const filled = Math.round(fraction * width);
  const bar = total ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '';
  const eta = total && record.step > 0 ? `<${clock((record.elapsed / record.step) * (total - record.step))}` : '';
  const { label, perSecond } = throughput(record);
  return `${bar}${record.step}${total ? `/${total}` : ''} loss ${fixed(record.loss, 4)} lr ${lr(record.learning_rate)} ${fixed(perSecond, 0)} ${label} ${clock(record.elapsed)}${eta}`;
}

/**
 * Writes progress for records as a bar (terminal) or lines; `end()` finishes a bar's line. Lines
 * are written for the first step, every `every` steps, the last step and every evaluation.
 */
export function createProgress(mode: 'auto' | 'bar' | 'lines' | 'none', stream: ProgressStream | undefined, total: number | undefined, every = 1) {
  const out = stream ?? (typeof process !== 'undefined' ? process.stderr : undefined);
  const kind = !out || mode === 'none' ? 'none' : mode === 'auto' ? (out.isTTY ? 'bar' : 'lines') : mode;
  let open = false;
  return {
    update(record: TrainRecord): void {
      if (kind === 'none' || !out || (record.kind !== 'train' && record.kind !== 'eval')) return;
      if (kind === 'lines' && record.kind === 'train' && record.step !== 1 && record.step % every !== 0 && record.step !== total) return;
      if (kind === 'lines' || record.kind === 'eval') {
        if (open) out.write('\n');
        open = false;
        out.write(`${formatProgressLine(record, total)}\n`);
      } else {
        out.write(`\r${formatProgressBar(record, total)}\x1b[K`);
        open = true;
      }
    },
    end(): void {
      if (open && out) out.write('\n');
      open = false;
    },
  };
}

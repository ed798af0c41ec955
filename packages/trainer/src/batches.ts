import type { BatchSource, SeekableBatchSource } from './options.js';

type AnyIterator<B> = Iterator<B> | AsyncIterator<B>;

/**
 * Pulls micro-batches one at a time over `epochs` passes, remembering where it is
 * (`epoch`, `batchInEpoch`) so a resumed run can skip exactly the batches already consumed.
 * A function source is called once per epoch; an iterable is iterated again each epoch; a seekable
 * source is opened at the epoch's first unconsumed batch.
 */
export class BatchReader<B> {
  epoch: number;
  batchInEpoch: number;
  private iterator: AnyIterator<B> | undefined;
  private skip: number;

  constructor(
    private readonly source: BatchSource<B>,
    private readonly epochs: number,
    start: { epoch: number; batchInEpoch: number } = { epoch: 0, batchInEpoch: 0 },
  ) {
    this.epoch = start.epoch;
    this.batchInEpoch = start.batchInEpoch;
    this.skip = start.batchInEpoch;
  }

  /** The next batch, or undefined when every epoch is consumed. */
  async next(): Promise<{ value: B } | undefined> {
    while (this.epoch < this.epochs) {
      if (!this.iterator) {
        if (isSeekable(this.source)) {
          this.iterator = iterate(this.source.open(this.epoch, this.skip));
        } else {
          this.iterator = iterate(typeof this.source === 'function' ? this.source(this.epoch) : this.source);
          for (; this.skip > 0; this.skip--) {
            if ((await this.iterator.next()).done) break;
          }
        }
        this.skip = 0;
      }
      const r = await this.iterator.next();
      if (!r.done) {
        this.batchInEpoch += 1;
        return { value: r.value };
      }
      this.iterator = undefined;
      this.epoch += 1;
      this.batchInEpoch = 0;
    }
    return undefined;
  }

  /** Ends the current iterator (runs a generator's `finally`). */
  async close(): Promise<void> {
    const it = this.iterator;
    this.iterator = undefined;
    await it?.return?.();
  }
}

function isSeekable<B>(source: BatchSource<B>): source is SeekableBatchSource<B> {
  return typeof source === 'object' && source !== null && typeof (source as SeekableBatchSource<B>).open === 'function';
}

function iterate<B>(source: Iterable<B> | AsyncIterable<B>): AnyIterator<B> {
  const asyncIt = (source as AsyncIterable<B>)[Symbol.asyncIterator];
  return typeof asyncIt === 'function' ? asyncIt.call(source) : (source as Iterable<B>)[Symbol.iterator]();
}

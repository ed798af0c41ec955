import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPosttrainError } from '@posttrain/tensor-core';
import { RecordError } from './formats.js';
import { readJsonl, readRecords, type JsonlSource, type NumberedRecord } from './jsonl.js';

const encoder = new TextEncoder();
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'posttrain-jsonl-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function* chunks(parts: (string | Uint8Array)[]): AsyncGenerator<string | Uint8Array> {
  for (const part of parts) yield part;
}

/** Every record `source` yields; and the error it stops with, if any, with the records before it. */
async function readAll(source: JsonlSource, options: Parameters<typeof readJsonl>[1] = {}): Promise<{ records: NumberedRecord[]; error?: RecordError }> {
  const records: NumberedRecord[] = [];
  try {
    for await (const record of readJsonl(source, options)) records.push(record);
  } catch (error) {
    expect(isPosttrainError(error), String(error)).toBe(true);
    return { records, error: error as RecordError };
  }
  return { records };
}

const unicode = [
  { prompt: 'Café au lait, ', completion: 'naïve façade' },
  { prompt: 'Emoji 😀 and CJK 日本語', completion: ' ✓ done' },
  { prompt: 'plain', completion: ' ascii' },
];
const unicodeText = unicode.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('readJsonl: lines over chunks', () => {
  it('joins UTF-8 characters split between chunks, at every byte position', async () => {
    const bytes = encoder.encode(unicodeText);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { records, error } = await readAll(chunks([bytes.slice(0, cut), bytes.slice(cut)]));
      expect(error, `cut at byte ${cut}`).toBeUndefined();
      expect(
        records.map((r) => r.record),
        `cut at byte ${cut}`,
      ).toEqual(unicode);
    }
    const oneByteChunks = Array.from(bytes, (b) => new Uint8Array([b]));
    expect((await readAll(chunks(oneByteChunks))).records.map((r) => r.record)).toEqual(unicode);
  });

  it('handles CRLF, blank lines, a byte-order mark, and a last line without newline; line numbers count every line', async () => {
    const text = '\uFEFF{"text":"a"}\r\n\r\n   \n{"text":"b"}\r\n\n{"text":"c\\r\\n"}';
    const { records } = await readAll(chunks([encoder.encode(text)]));
    expect(records).toEqual([
      { line: 1, record: { text: 'a' } },
      { line: 4, record: { text: 'b' } },
      { line: 6, record: { text: 'c\r\n' } },
    ]);
    // The same split into string chunks, with the CR and LF of one line break in different chunks.
    const split = await readAll(chunks(['{"text":"a"}\r', '\n', '{"te', 'xt":"b"}']));
    expect(split.records).toEqual([
      { line: 1, record: { text: 'a' } },
      { line: 2, record: { text: 'b' } },
    ]);
  });

  it('reads a web ReadableStream and a file path', async () => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        const bytes = encoder.encode(unicodeText);
        controller.enqueue(bytes.slice(0, 20));
        controller.enqueue(bytes.slice(20));
        controller.close();
      },
    });
    expect((await readAll(stream)).records.map((r) => r.record)).toEqual(unicode);
    const file = join(dir, 'small.jsonl');
    writeFileSync(file, unicodeText);
    expect((await readAll(file)).records.map((r) => r.line)).toEqual([1, 2, 3]);
    // Stopping early closes the file: the loop ends without reading the rest.
    for await (const { line } of readJsonl(file)) {
      expect(line).toBe(1);
      break;
    }
  });

  it('a missing file is FILE_NOT_FOUND, naming the path', async () => {
    const { error } = await readAll(join(dir, 'nope.jsonl'));
    expect(error?.code).toBe('FILE_NOT_FOUND');
    expect(error?.message).toContain('nope.jsonl');
  });
});

describe('readJsonl: a bad line fails with its line number, after every record before it', () => {
  const good = (i: number) => JSON.stringify({ prompt: `p${i}`, completion: ` c${i}` });

  it('a record with a wrong field: line, field, expected and found', async () => {
    const text = [good(1), good(2), '', good(3), JSON.stringify({ prompt: 'p4', completion: 4 }), good(5)].join('\n');
    const { records, error } = await readAll(chunks([text]));
    expect(records.map((r) => r.line)).toEqual([1, 2, 4]); // nothing before the bad line is lost
    expect(error).toBeInstanceOf(RecordError);
    expect({ line: error?.line, field: error?.field, expected: error?.expected, received: error?.received }).toEqual({
      line: 5,
      field: 'completion',
      expected: 'a string (the standard format, like line 1)',
      received: 'number 4',
    });
    expect(error?.message.split('\n')[0]).toBe('line 5: field "completion": expected a string (the standard format, like line 1); got number 4');
  });

  it('invalid JSON names the line and shows its start', async () => {
    const { records, error } = await readAll(chunks([`${good(1)}\n{"prompt": "p2", "completion": \n${good(3)}\n`]));
    expect(records).toHaveLength(1);
    expect(error?.line).toBe(2);
    expect(error?.message).toContain('line 2: expected one JSON object per line; got invalid JSON "{\\"prompt\\": \\"p2\\", \\"completion\\": "');
  });

  it('a record of another format than the first one says which', async () => {
    const text = `${good(1)}\n${JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b' })}\n`;
    const { records, error } = await readAll(chunks([text]));
    expect(records).toHaveLength(1);
    expect(error?.message).toContain('line 2: field "completion": expected a prompt-completion record, like line 1; got a preference record with keys [prompt, chosen, rejected]');
  });

  it('a stated format is checked from the first line', async () => {
    const { error } = await readAll(chunks([good(1)]), { format: 'preference' });
    expect(error?.message).toContain('line 1: field "chosen": expected a preference record to have "chosen"');
  });

  it("format 'any' accepts any object, and still rejects a non-object line", async () => {
    const { records, error } = await readAll(chunks(['{"a":1}\n{"b":[2]}\n[3]\n']), { format: 'any' });
    expect(records.map((r) => r.record)).toEqual([{ a: 1 }, { b: [2] }]);
    expect(error?.message).toContain('line 3: expected a JSON object (one record); got a list of 1 item');
  });

  it('bytes that are not UTF-8 and over-long lines fail with their line number', async () => {
    const bad = await readAll(chunks([encoder.encode(`${good(1)}\n{"text": "`), new Uint8Array([0xff, 0xfe]), encoder.encode('"}\n')]));
    expect(bad.records).toHaveLength(1);
    expect(bad.error?.message).toContain('line 2: expected UTF-8 text; got bytes that are not valid UTF-8');
    const long = await readAll(chunks([`${good(1)}\n{"text": "${'x'.repeat(60)}`, `${'x'.repeat(60)}"}\n`]), { maxLineLength: 100 });
    expect(long.records).toHaveLength(1);
    expect(long.error?.message).toContain('line 2: expected a line of at most 100 characters (maxLineLength)');
  });

  it('invalid UTF-8 on line 3 of a file (one chunk) yields lines 1 and 2, then fails on line 3', async () => {
    const path = join(dir, 'bad-utf8.jsonl');
    writeFileSync(path, Buffer.concat([Buffer.from('{"text":"a"}\n{"text":"b"}\n{"text":"'), Buffer.from([0xff]), Buffer.from('"}\n')]));
    const { records, error } = await readAll(path);
    expect(records).toEqual([
      { line: 1, record: { text: 'a' } },
      { line: 2, record: { text: 'b' } },
    ]);
    expect(error?.message).toContain('line 3: expected UTF-8 text; got bytes that are not valid UTF-8');
  });

  it('checks option values, naming the allowed ones', async () => {
    const format = await readAll(chunks([good(1)]), { format: 'prompt-complete' } as never);
    expect(format.error?.code).toBe('INVALID_OPTION');
    expect(format.error?.message).toContain(
      "expected format to be one of 'auto', 'any', 'language-modeling', 'prompt-only', 'prompt-completion', 'preference', 'unpaired-preference'; got \"prompt-complete\"",
    );
    for (const maxLineLength of [0, 1.5, -1, '100']) {
      const { error } = await readAll(chunks([good(1)]), { maxLineLength } as never);
      expect(error?.message, String(maxLineLength)).toContain('expected maxLineLength to be a positive integer');
    }
    expect(() => readRecords([], { format: 'pref' } as never)).toThrow("readRecords: expected format to be one of 'auto', 'any'");
  });

  it('an extra array field does not make a standard dataset conversational', async () => {
    const text = `${JSON.stringify({ prompt: 'p', completion: 'c', tags: ['x'] })}\n${JSON.stringify({ prompt: 'q', completion: 'd' })}\n`;
    const { records, error } = await readAll(chunks([text]));
    expect(error).toBeUndefined();
    expect(records).toHaveLength(2);
    const lm = readRecords([{ text: 'a', prompt: [{ role: 'user', content: 'x' }] }, { text: 'b' }]);
    expect(lm.records).toHaveLength(2);
  });

  it('strips a byte-order mark from string chunks too, and names an unpaired-preference with "an"', async () => {
    const { records } = await readAll(chunks(['\uFEFF{"text":"a"}\n']));
    expect(records).toEqual([{ line: 1, record: { text: 'a' } }]);
    const mixed = await readAll(chunks([`${JSON.stringify({ prompt: 'p', completion: 'c', label: true })}\n${good(2)}\n`]));
    expect(mixed.error?.message).toContain('expected an unpaired-preference record, like line 1; got a prompt-completion record');
  });

  it('rejects an unknown option by name', async () => {
    const { error } = await readAll(chunks([good(1)]), { formatt: 'auto' } as never);
    expect(error?.code).toBe('INVALID_OPTION');
    expect(error?.message).toContain('unknown option "formatt"');
  });
});

describe('readRecords: arrays', () => {
  it('detects the format from the first record and validates every one', () => {
    const { format, records } = readRecords([{ text: 'a' }, { text: 'b', id: 2 }]);
    expect(format).toBe('language-modeling');
    expect(records).toEqual([{ text: 'a' }, { text: 'b', id: 2 }]);
  });

  it('names the index of a bad record', () => {
    expect(() =>
      readRecords([
        { prompt: 'a', completion: 'b', label: true },
        { prompt: 'a', completion: 'b', label: 'no' },
      ]),
    ).toThrow('record at index 1: field "label": expected a boolean (true for a good completion, false for a bad one); got "no"');
  });
});

// 100 MB of JSONL streams in constant memory. The file is generated in a temp dir (~1 s). While
// streaming, the growth over the baseline of the process's RSS and of the JS heap is sampled every
// 2,048 records; every 32,768 records a full GC shows what is retained (live), as opposed to
// garbage the collector has not reached yet. Measured here (2 cores, Node 20): ~5 s; RSS growth
// 0.5–12 MB, heap peak ~24 MB, retained 0.2 MB. Without the periodic GC (a standalone run), the
// peaks are RSS +35 MB and heap +65 MB for 100 MB, and RSS +21 MB, heap +68 MB for 300 MB: flat.
describe('readJsonl: a 100 MB file in constant memory', () => {
  const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

  it('streams 100 MB with RSS growth under 64 MB and nothing retained', async () => {
    const file = join(dir, 'big.jsonl');
    const line = (i: number) => `${JSON.stringify({ prompt: `Question ${i}: what is ${i} + ${i % 97}? Café ☕ `, completion: ` ${i + (i % 97)}. ${'Some padding text. '.repeat(8)}`, id: i })}\n`;
    const fd = openSync(file, 'w');
    let written = 0;
    let count = 0;
    while (written < 100 * 1024 * 1024) {
      let block = '';
      while (block.length < 1 << 20) block += line(count++);
      written += writeSync(fd, block);
    }
    closeSync(fd);
    const size = statSync(file).size;
    expect(size).toBeGreaterThanOrEqual(100 * 1024 * 1024);

    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const base = process.memoryUsage();
    let peakHeap = 0;
    let peakRss = 0;
    let retained = 0;
    let seen = 0;
    let lastId = -1;
    const started = performance.now();
    for await (const { record } of readJsonl(file, { format: 'prompt-completion' })) {
      expect(record.id).toBe(lastId + 1); // every record, in order
      lastId = record.id as number;
      if (++seen % 2048 === 0) {
        const now = process.memoryUsage();
        peakHeap = Math.max(peakHeap, now.heapUsed - base.heapUsed);
        peakRss = Math.max(peakRss, now.rss - base.rss);
      }
      if (seen % 32768 === 0) {
        gc();
        retained = Math.max(retained, process.memoryUsage().heapUsed - base.heapUsed);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    expect(seen).toBe(count);
    console.log(`readJsonl: ${mb(size)} MB, ${seen} records in ${seconds.toFixed(1)} s; peak growth: RSS ${mb(peakRss)} MB, heap ${mb(peakHeap)} MB; retained after GC ${mb(retained)} MB`);
    expect(peakRss).toBeLessThan(64 * 1024 * 1024);
    expect(retained).toBeLessThan(16 * 1024 * 1024);
    expect(peakHeap).toBeLessThan(size); // garbage not yet collected, but never the file
    rmSync(file);
  }, 120_000);
});

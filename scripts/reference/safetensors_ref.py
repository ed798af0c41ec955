#!/usr/bin/python3
"""Reference safetensors files for tensor-core's readSafetensors / writeSafetensors, by hand.

Debian 12 has no `safetensors` module, so this script writes and reads the format itself
(8-byte little-endian u64 header length N, N bytes of UTF-8 JSON padded with spaces to a
multiple of 8, then the data buffer; tensors ordered by dtype alignment descending, then name,
as the Rust implementation's `prepare` does).

Two modes, run from the repository root:

    /usr/bin/python3 scripts/reference/safetensors_ref.py

        Needs torch (Debian's `python3-torch`; the `python3` first on PATH may lack it).
        Writes, from torch tensors of every dtype tensor-core reads (F32, F16, BF16, I64, I32,
        I8, U8, BOOL; subnormals, ±inf, NaN, negative zero, int32 extremes, a 0-d scalar and
        empty tensors):
          packages/tensor-core/fixtures/reference.safetensors   (about 1 KB)
          packages/tensor-core/fixtures/reference.json          (the values tfjs must read)
        read by packages/tensor-core/src/safetensors.test.ts, so CI needs no Python.

    python3 scripts/reference/safetensors_ref.py --check FILE EXPECTED.json

        Checks a file written by writeSafetensors against EXPECTED.json, with the standard
        library only: the header layout (length, 8-byte padding, JSON, metadata), contiguous
        offsets in the reference order, each tensor's dtype and shape, and every stored value,
        which it rounds itself (F16 through struct's round-half-even `e` format, BF16 by exact
        rational nearest-even). When torch imports, it also decodes every tensor with
        torch.frombuffer and compares F16/BF16 bits with torch's own float32 casts.
        Prints `ok: ...` and exits 0, or prints each mismatch and exits 1.

JSON format (both files): {"metadata": {str: str}, "tensors": {name: {"dtype", "shape",
"values"}}}. `values` are flat, row-major, and are the values on the tfjs side: in
reference.json the exact float64 value of what readSafetensors returns (F16/BF16 upcast to
float32, ints as int32, bools); in --check's file the values the tfjs tensor held before
writing, which the checker rounds to the stored dtype. Non-finite floats and negative zero are
the strings "nan", "inf", "-inf", "-0".
"""
import json
import math
import os
import struct
import sys
from fractions import Fraction

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
FIXTURES = os.path.join(ROOT, 'packages', 'tensor-core', 'fixtures')

# The Rust Dtype enum in increasing alignment order, and element sizes.
RANK = ['BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64']
SIZE = {'BOOL': 1, 'U8': 1, 'I8': 1, 'F16': 2, 'BF16': 2, 'I32': 4, 'F32': 4, 'I64': 8}
INT_FORMAT = {'I64': 'q', 'I32': 'i', 'I8': 'b', 'U8': 'B', 'BOOL': 'B'}


def encode_float(x):
    if math.isnan(x):
        return 'nan'
    if math.isinf(x):
        return 'inf' if x > 0 else '-inf'
    if x == 0 and math.copysign(1, x) < 0:
        return '-0'
    return x


def decode_float(v):
    return {'nan': math.nan, 'inf': math.inf, '-inf': -math.inf, '-0': -0.0}.get(v, v) if isinstance(v, str) else float(v)


def reference_order(header):
    names = [k for k in header if k != '__metadata__']
    return sorted(names, key=lambda k: (-RANK.index(header[k]['dtype']), k.encode('utf-8')))


def serialize(entries, metadata):
    """entries: {name: (dtype, shape, raw bytes)} -> safetensors bytes, laid out as Rust does."""
    header = {name: {'dtype': d, 'shape': s} for name, (d, s, _) in entries.items()}
    order = reference_order(header)
    out = {'__metadata__': metadata}
    offset = 0
    for name in order:
        dtype, shape, raw = entries[name]
        out[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(out, separators=(',', ':'), ensure_ascii=False).encode('utf-8')
    text += b' ' * ((8 - len(text) % 8) % 8)
    return struct.pack('<Q', len(text)) + text + b''.join(entries[name][2] for name in order)


def generate():
    import torch

    f32 = torch.float32
    cases = {
        'f32': (torch.tensor([[1.5, -0.0, math.inf], [-math.inf, 1e-45, 3.4028234663852886e38]], dtype=f32), 'F32'),
        'f32_nan': (torch.tensor([math.nan, 0.1], dtype=f32), 'F32'),
        'f16': (torch.tensor([[1.0, -2.5, 65504.0, 2.0 ** -24, 6.097555160522461e-05], [-0.0, math.inf, -math.inf, math.nan, 0.1]], dtype=torch.float16), 'F16'),
        'bf16': (torch.tensor([1.0, 0.1, -3.0e38, 1e-40, -0.0, math.inf, -math.inf], dtype=torch.bfloat16), 'BF16'),
        'i64': (torch.tensor([-2147483648, 2147483647, 0, -1, 123456789], dtype=torch.int64), 'I64'),
        'i32': (torch.tensor([[-2147483648, 2147483647], [7, -7]], dtype=torch.int32), 'I32'),
        'i8': (torch.tensor([-128, 127, 0, -1], dtype=torch.int8), 'I8'),
        'u8': (torch.tensor([0, 255, 128, 1], dtype=torch.uint8), 'U8'),
        'mask': (torch.tensor([True, False, True], dtype=torch.bool), 'BOOL'),
        'scalar': (torch.tensor(3.25, dtype=f32), 'F32'),
        'empty': (torch.zeros(0, 3, dtype=f32), 'F32'),
        'empty_i64': (torch.zeros(2, 0, dtype=torch.int64), 'I64'),
    }
    metadata = {'format': 'pt', 'producer': 'scripts/reference/safetensors_ref.py', 'note': 'héllo ✓'}
    entries, expected = {}, {}
    for name, (t, dtype) in cases.items():
        raw = bytes(t.reshape(-1).view(torch.uint8).tolist())
        shape = list(t.shape)
        entries[name] = (dtype, shape, raw)
        flat = t.reshape(-1)
        if dtype in ('F32', 'F16', 'BF16'):
            values = [encode_float(v) for v in flat.to(torch.float64).tolist()]
        else:
            values = flat.tolist()
        expected[name] = {'dtype': dtype, 'shape': shape, 'values': values}
    os.makedirs(FIXTURES, exist_ok=True)
    with open(os.path.join(FIXTURES, 'reference.safetensors'), 'wb') as f:
        f.write(serialize(entries, metadata))
    with open(os.path.join(FIXTURES, 'reference.json'), 'w') as f:
        json.dump({'metadata': metadata, 'tensors': expected}, f, indent=1, ensure_ascii=False)
        f.write('\n')
    print('wrote', os.path.join(FIXTURES, 'reference.safetensors'), 'and reference.json')


def f32_bits(x):
    return struct.unpack('<I', struct.pack('<f', x))[0]


def f16_bits(x):
    """IEEE half bits of float x, round-half-even (struct's `e`), overflow to ±inf."""
    try:
        return struct.unpack('<H', struct.pack('<e', x))[0]
    except OverflowError:
        return 0xFC00 if x < 0 else 0x7C00


def bf16_bits(x):
    """bfloat16 bits of float32-exact x, nearest with ties to even, decided with exact rationals."""
    if math.isinf(x):
        return 0xFF80 if x < 0 else 0x7F80
    low = f32_bits(x) >> 16  # truncation toward zero; low + 1 is one step further from zero

    def magnitude(bits):
        if bits & 0x7FFF == 0x7F80:
            return Fraction(2) ** 128  # the rounding boundary past the largest finite value
        return abs(Fraction(struct.unpack('<f', struct.pack('<I', bits << 16))[0]))

    a, b = abs(Fraction(x)) - magnitude(low), magnitude(low + 1) - abs(Fraction(x))
    return low if a < b or (a == b and low % 2 == 0) else low + 1


def check(path, expected_path):
    errors = []
    data = open(path, 'rb').read()
    expected = json.load(open(expected_path, encoding='utf-8'))
    n = struct.unpack('<Q', data[:8])[0]
    raw = data[8:8 + n]
    if n > 100_000_000 or (8 + n) % 8 != 0:
        errors.append(f'header length {n}: expected ≤ 100 MB and 8 + N a multiple of 8')
    if raw.rstrip(b' ')[-1:] != b'}' or len(raw) - len(raw.rstrip(b' ')) > 7:
        errors.append('header: expected JSON then at most 7 padding spaces')
    header = json.loads(raw.decode('utf-8'))
    if header.get('__metadata__') != (expected.get('metadata') or None):
        errors.append(f"metadata: expected {expected.get('metadata')}; got {header.get('__metadata__')}")
    if list(header)[:1] != ['__metadata__'] and '__metadata__' in header:
        errors.append('header: expected "__metadata__" first, as Rust writes it')
    names = [k for k in header if k != '__metadata__']
    if sorted(names) != sorted(expected['tensors']):
        errors.append(f"names: expected {sorted(expected['tensors'])}; got {sorted(names)}")
    by_offset = sorted(names, key=lambda k: header[k]['data_offsets'])
    if by_offset != reference_order(header):
        errors.append(f'order: expected {reference_order(header)}; got {by_offset}')
    position = 0
    for name in by_offset:
        begin, end = header[name]['data_offsets']
        if begin != position:
            errors.append(f'{name}: expected data_offsets to begin at {position}; got {begin}')
        position = end
    if 8 + n + position != len(data):
        errors.append(f'buffer: expected {len(data) - 8 - n} bytes covered; got {position}')
    try:
        import torch
    except ImportError:
        torch = None
    for name in names:
        if name not in expected['tensors']:
            continue
        info, want = header[name], expected['tensors'][name]
        dtype, shape = info['dtype'], info['shape']
        if (dtype, shape) != (want['dtype'], want['shape']):
            errors.append(f"{name}: expected {want['dtype']} {want['shape']}; got {dtype} {shape}")
            continue
        begin, end = info['data_offsets']
        chunk = data[8 + n + begin:8 + n + end]
        count = len(chunk) // SIZE[dtype]
        if count != math.prod(shape) or count != len(want['values']):
            errors.append(f"{name}: expected {len(want['values'])} values; got {count}")
            continue
        if dtype in INT_FORMAT:
            got = list(struct.unpack(f'<{count}{INT_FORMAT[dtype]}', chunk))
            wanted = [int(v) for v in want['values']]
            if got != wanted:
                errors.append(f'{name}: expected {wanted}; got {got}')
        else:
            values = [decode_float(v) for v in want['values']]
            fmt, bits_of = {'F32': ('I', f32_bits), 'F16': ('H', f16_bits), 'BF16': ('H', bf16_bits)}[dtype]
            got = struct.unpack(f'<{count}{fmt}', chunk)
            for i, (g, v) in enumerate(zip(got, values)):
                nan = (g & 0x7FFFFFFF) > 0x7F800000 if dtype == 'F32' else (g & 0x7FFF) > (0x7C00 if dtype == 'F16' else 0x7F80)
                if math.isnan(v) != nan or (not nan and g != bits_of(v)):
                    errors.append(f'{name}[{i}]: expected {v!r} stored as {dtype} bits {bits_of(v):#x}; got {g:#x}')
            if torch is not None and dtype in ('F16', 'BF16') and count:
                ours = torch.frombuffer(bytearray(chunk), dtype=torch.int16)
                theirs = torch.tensor(values, dtype=torch.float32).to(torch.float16 if dtype == 'F16' else torch.bfloat16).view(torch.int16)
                finite = ~torch.tensor([math.isnan(v) for v in values])
                if not torch.equal(ours[finite], theirs[finite]):
                    errors.append(f'{name}: torch casts float32 to {dtype} as {theirs.tolist()}; file has {ours.tolist()}')
        if torch is not None and count:
            tdtype = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': torch.int64, 'I32': torch.int32, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool}[dtype]
            decoded = torch.frombuffer(bytearray(chunk), dtype=tdtype).reshape(shape)
            if list(decoded.shape) != shape:
                errors.append(f'{name}: torch decodes shape {list(decoded.shape)}; expected {shape}')
    for e in errors:
        print('mismatch:', e)
    if errors:
        return 1
    print(f"ok: {len(names)} tensors checked (torch: {'yes, ' + torch.__version__ if torch else 'not importable; stdlib only'})")
    return 0


if __name__ == '__main__':
    if len(sys.argv) == 4 and sys.argv[1] == '--check':
        sys.exit(check(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 1:
        generate()
        sys.exit(0)
    print(__doc__)
    sys.exit(2)

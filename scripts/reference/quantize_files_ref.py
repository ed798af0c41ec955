"""Reads the quantised checkpoints @posttrain/quantize writes and dequantises every layer the way
compressed-tensors (pack-quantized) and bitsandbytes (NF4, double quantisation) define it.

Usage (run from the repository root):
    QUANTIZE_FILES_OUT=/tmp/qfiles npx vitest run --project quantize src/checkpoint.test
    /usr/bin/python3 scripts/reference/quantize_files_ref.py /tmp/qfiles

For each case directory (and its `<case>-float` twin, the float model before quantisation) it
  - parses config.json's quantization_config the way the consumer does (compressed-tensors'
    config_groups/targets/ignore, transformers' BitsAndBytesConfig llm_int8_skip_modules),
  - reads model.safetensors with a small parser (the `safetensors` package when importable),
  - dequantises each quantised layer with torch: compressed-tensors' `unpack_from_int32` (packed_dim 1
    for weights, 0 for zero-points), `weight_shape`, `dequantize(x_q, scale, zero_point, g_idx)`;
    bitsandbytes' `QuantState.from_dict` fields and `dequantize_4bit` (nested absmax: dynamic map ·
    nested_absmax + nested_offset; nibbles high first; code[q] · absmax[block]),
  - checks the result against the float weights: round-to-nearest grids within half a step of
    the scale (int) or of the block's NF4 gap (nf4); GPTQ's error is reported, not bounded,
  - writes packages/quantize/src/fixtures/quantize_files_ref.json: per case and layer the shape,
    sum, sum of |w| and the values at 16 fixed indices, which checkpoint.test.ts compares with its
    own dequantisation of the same (deterministic) files.

When the `compressed_tensors` / `bitsandbytes` packages are importable, their functions are used
for the unpacking and dequantisation instead (neither installs on Debian 12 here).
"""

import json
import os
import struct
import sys

import torch

# the largest gap between neighbouring NF4 codes (-1.0 → -0.6961928)
NF4_MAX_GAP = 1.0 - 0.6961928009986877

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8}


def read_safetensors(path):
    try:
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(path), None
    except ImportError:
        pass
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=DTYPES[info["dtype"]]) if end > start else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out, header


# --- compressed-tensors (pack_quantized.py, forward.py) -------------------------------------------


def unpack_from_int32(value, num_bits, shape, packed_dim=1):
    try:
        from compressed_tensors.compressors.quantized_compressors.pack_quantized import unpack_from_int32 as ct  # noqa: PLC0415

        return ct(value, num_bits, torch.Size(shape), packed_dim=packed_dim)
    except ImportError:
        pass
    assert value.dtype == torch.int32
    pack_factor = 32 // num_bits
    mask = (1 << num_bits) - 1
    if packed_dim == 1:
        unpacked = torch.zeros((value.shape[0], value.shape[1] * pack_factor), dtype=torch.int32)
        for i in range(pack_factor):
            unpacked[:, i::pack_factor] = (value >> (num_bits * i)) & mask
        unpacked = unpacked[:, : int(shape[1])]
    else:
        unpacked = torch.zeros((value.shape[0] * pack_factor, value.shape[1]), dtype=torch.int32)
        for i in range(pack_factor):
            unpacked[i::pack_factor, :] = (value >> (num_bits * i)) & mask
        unpacked = unpacked[: int(shape[0]), :]
    offset = pow(2, num_bits) // 2
    return (unpacked - offset).to(torch.int8)


def ct_dequantize(x_q, scale, zero_point, g_idx, group_size):
    """forward.py `dequantize` for channel / group strategies: (x_q - zp) * scale, per column's group."""
    cols = x_q.shape[1]
    if g_idx is None:
        g_idx = torch.arange(cols) // (group_size or cols)
    g_idx = g_idx.long()
    s = scale[:, g_idx]
    x = x_q.to(torch.float32)
    if zero_point is not None:
        x = x - zero_point[:, g_idx].to(torch.float32)
    return x * s


def ct_matches(target, path):
    import re  # noqa: PLC0415

    if target.startswith("re:"):
        return re.match(target[3:], path) is not None
    if target in ("Linear", "Conv1D"):
        return True  # every layer we look at is a Linear (vLLM's view of GPT-2 too)
    return target == path


def compressed_tensors_layers(qc, tensors):
    layers = {}
    prefixes = sorted({k[: -len(".weight_packed")] for k in tensors if k.endswith(".weight_packed")})
    for path in prefixes:
        assert not any(ct_matches(t, path) for t in qc.get("ignore") or []), f"{path} is quantised but ignored"
        group = next(g for g in qc["config_groups"].values() if any(ct_matches(t, path) for t in g["targets"]))
        args = group["weights"]
        shape = tensors[f"{path}.weight_shape"].tolist()
        q = unpack_from_int32(tensors[f"{path}.weight_packed"], args["num_bits"], shape)
        scale = tensors[f"{path}.weight_scale"].to(torch.float32)
        zp = None
        if not args["symmetric"]:
            zp = unpack_from_int32(tensors[f"{path}.weight_zero_point"], args["num_bits"], (shape[0], scale.shape[-1]), packed_dim=0)
        g_idx = tensors.get(f"{path}.weight_g_idx")
        assert (g_idx is not None) == (args["actorder"] == "group"), f"{path}: g_idx present iff actorder group"
        w = ct_dequantize(q, scale, zp, g_idx, args["group_size"])
        half_step = 0.5 * scale[:, (g_idx.long() if g_idx is not None else torch.arange(shape[1]) // (args["group_size"] or shape[1]))]
        layers[path] = (w, half_step, args.get("actorder") == "group")
    return layers


# --- bitsandbytes (functional.py QuantState, backends/default/ops.py) ------------------------------


def bnb_layers(qc, tensors):
    layers = {}
    skip = qc.get("llm_int8_skip_modules") or ["lm_head"]
    for key in tensors:
        if not key.endswith(".weight.quant_state.bitsandbytes__nf4"):
            continue
        path = key[: -len(".weight.quant_state.bitsandbytes__nf4")]
        assert not any(f".{s}." in f".{path}." for s in skip), f"{path} is quantised but skipped"
        state = json.loads(bytes(tensors[key].tolist()).decode("utf-8"))
        assert state["quant_type"] == "nf4" and state["blocksize"] == 64 and state["nested_blocksize"] == 256
        out_f, in_f = state["shape"]
        n = out_f * in_f
        packed = tensors[f"{path}.weight"].reshape(-1).to(torch.int32)
        assert tensors[f"{path}.weight"].dtype == torch.uint8 and packed.numel() == (n + 1) // 2
        codes = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n].long()
        # double quantisation: absmax = nested_quant_map[code] * nested_absmax[block // 256] + offset
        qabs = tensors[f"{path}.weight.absmax"].long()
        nested = tensors[f"{path}.weight.nested_quant_map"][qabs]
        nested_absmax = tensors[f"{path}.weight.nested_absmax"]
        absmax = nested * nested_absmax[torch.arange(qabs.numel()) // 256] + state["nested_offset"]
        code = tensors[f"{path}.weight.quant_map"]
        w = code[codes] * absmax[torch.arange(n) // 64]
        # NF4's largest gap between neighbouring codes, half of it times the block absmax
        half_step = (0.5 * NF4_MAX_GAP * absmax[torch.arange(n) // 64]).reshape(out_f, in_f)
        layers[path] = (w.reshape(out_f, in_f).to(torch.float32), half_step, False)
    return layers


def float_weight(tensors, path, model_type):
    w = tensors[f"{path}.weight"].to(torch.float32)
    return w.t() if model_type == "gpt2" else w  # GPT-2's Conv1D keeps [in, out]; the quantised layouts are [out, in]


def main(root):
    fixture = {"torch": torch.__version__, "cases": {}}
    names = sorted(d for d in os.listdir(root) if not d.endswith("-float") and os.path.isdir(os.path.join(root, d)))
    gen = torch.Generator().manual_seed(0)
    for name in names:
        d = os.path.join(root, name)
        config = json.load(open(os.path.join(d, "config.json")))
        qc = config["quantization_config"]
        tensors, _ = read_safetensors(os.path.join(d, "model.safetensors"))
        floats, _ = read_safetensors(os.path.join(f"{d}-float", "model.safetensors"))
        if qc["quant_method"] == "compressed-tensors":
            assert qc["format"] == "pack-quantized" and qc["quantization_status"] == "compressed"
            layers = compressed_tensors_layers(qc, tensors)
        else:
            assert qc["quant_method"] == "bitsandbytes" and qc["bnb_4bit_quant_type"] == "nf4" and qc["bnb_4bit_use_double_quant"]
            layers = bnb_layers(qc, tensors)
        assert "lm_head.weight" not in tensors or tensors["lm_head.weight"].dtype == torch.float32, "lm_head stays float"
        out = {}
        worst = 0.0
        for path, (w, half_step, gptq) in sorted(layers.items()):
            ref = float_weight(floats, path, config["model_type"])
            err = (w - ref).abs()
            if qc["quant_method"] == "bitsandbytes":
                # the block absmax went through 8-bit double quantisation: widen the bound by its error
                n = ref.numel()
                true_absmax = torch.nn.functional.pad(ref.reshape(-1).abs(), (0, (-n) % 64)).reshape(-1, 64).max(dim=1).values
                recovered = half_step.reshape(-1)[::64] / (0.5 * NF4_MAX_GAP)
                half_step = half_step + ((true_absmax - recovered).abs()[torch.arange(n) // 64]).reshape(half_step.shape)
            ratio = float((err / half_step.clamp_min(1e-12)).max())
            worst = max(worst, ratio)
            if not gptq:
                assert ratio <= 1.0 + 1e-4, f"{name} {path}: |w - ŵ| is {ratio:.4f} half-steps"
            flat = w.reshape(-1)
            index = sorted(torch.randperm(flat.numel(), generator=gen)[:16].tolist())
            out[path] = {
                "shape": list(w.shape),
                "sum": float(flat.double().sum()),
                "sum_abs": float(flat.double().abs().sum()),
                "index": index,
                "values": [float(flat[i]) for i in index],
            }
        fixture["cases"][name] = {"quant_method": qc["quant_method"], "layers": out}
        print(f"{name}: {len(out)} layers dequantised; max |w - ŵ| = {worst:.3f} half-steps of the grid{' (GPTQ: not bounded)' if any(g for _, _, g in layers.values()) else ''}")
    target = os.path.join(os.path.dirname(__file__), "..", "..", "packages", "quantize", "src", "fixtures", "quantize_files_ref.json")
    with open(target, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.normpath(target)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("QUANTIZE_FILES_OUT", "/tmp/qfiles"))

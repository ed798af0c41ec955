"""posttrain's LoRA adapter files against Hugging Face's real PEFT library, both directions.

Needs torch, transformers, peft and safetensors (not for CI; CI reads only the fixture this writes):

    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch peft transformers safetensors

Run from the repository root.

  check ADAPTER_DIR   posttrain → PEFT. Loads examples/sft/tiny-base with transformers'
                      LlamaForCausalLM (float32, eager attention) and ADAPTER_DIR with
                      PeftModel.from_pretrained, and compares PEFT's logits on PROMPTS with the
                      ones posttrain computes (scripts/reference/dump-adapter-logits.ts, run here
                      through npx on the cpu and wasm backends unless --ours names JSON files).
                      Also: prints PEFT's LoraConfig and fails on any warning while parsing or
                      loading; checks that every tensor in the file landed in a LoRA parameter
                      and every LoRA parameter came from the file; compares logits after
                      merge_and_unload(); re-saves the adapter with PEFT's save_pretrained and
                      lists every difference between the two directories (config fields and
                      values, safetensors keys, dtypes, shapes, header metadata, tensor values).
                      Exits 1 when a logit differs by more than --tol (default 1e-4) or a check fails.

      /tmp/hfenv/bin/python scripts/reference/peft_roundtrip.py check /tmp/sft-lora

  make-fixture        PEFT → posttrain. A fresh PEFT LoRA on the tiny base, seed 0,
                      init_lora_weights=False (B nonzero: nn.Linear's default init), r 4,
                      lora_alpha 8, target_modules q_proj, v_proj, up_proj, written with
                      save_pretrained to packages/lora/fixtures/peft-made-adapter/ (PEFT's model
                      card README.md removed: only the two adapter files are kept), and PEFT's
                      logits on PROMPTS to packages/lora/fixtures/peft_made_logits.json (with the
                      library versions). Also a PiSSA adapter (init_lora_weights="pissa", r 4,
                      q_proj and v_proj, B moved after init as training would) in
                      packages/lora/fixtures/peft-made-pissa-adapter/, with the last-position
                      logits PEFT gives after reloading it (PEFT reruns PiSSA on the base when it
                      loads). packages/lora/src/peft-made.test.ts loads them all.

      /tmp/hfenv/bin/python scripts/reference/peft_roundtrip.py make-fixture
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from hf_common import Captured, compare_dirs, versions

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
BASE = "examples/sft/tiny-base"  # relative, so PEFT records a machine-independent base_model_name_or_path
FIXTURE_ADAPTER = "packages/lora/fixtures/peft-made-adapter"
FIXTURE_PISSA_ADAPTER = "packages/lora/fixtures/peft-made-pissa-adapter"
FIXTURE_LOGITS = "packages/lora/fixtures/peft_made_logits.json"
# Reversal prompts as the demo writes them; ByteTokenizer: each byte is its own id.
PROMPTS = ["abc>", "hgfe>", "dcba>", "aab>"]
SEED = 0


def byte_ids(text):
    return list(text.encode("utf-8"))


def load_base():
    model = LlamaForCausalLM.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


@torch.no_grad()
def logits_of(model):
    """[T][V] logits of each prompt, run alone (no padding)."""
    return [model(input_ids=torch.tensor([byte_ids(p)])).logits[0].float() for p in PROMPTS]


def max_diff(a, b):
    return max(float((x - torch.as_tensor(y, dtype=torch.float32)).abs().max()) for x, y in zip(a, b))


def dump_ours(adapter_dir, backend, out):
    cmd = ["npx", "tsx", "--conditions=@posttrain/source", "scripts/reference/dump-adapter-logits.ts", adapter_dir, out, "--backend", backend]
    subprocess.run(cmd, cwd=ROOT, check=True)
    with open(out) as f:
        return json.load(f)


def check(args):
    adapter = args.adapter
    print("versions:", json.dumps(versions()))
    failures = []
    base = load_base()
    with Captured() as cap:
        model = PeftModel.from_pretrained(base, adapter).eval()
    config = model.peft_config["default"]
    print("PEFT's LoraConfig:", config)
    scalings = {float(s) for m in model.modules() if hasattr(m, "scaling") and isinstance(m.scaling, dict) for s in m.scaling.values()}
    print(f"  r={config.r} lora_alpha={config.lora_alpha} use_rslora={config.use_rslora} → scaling {sorted(scalings)}")
    if cap.messages:
        failures.append("warnings while parsing/loading the adapter:\n    " + "\n    ".join(cap.messages))
    else:
        print("no warnings while parsing adapter_config.json or loading the weights")

    # Every file tensor landed in a LoRA parameter, every LoRA parameter came from the file.
    saved = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    params = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    expected = {k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight"): v for k, v in saved.items()}
    unexpected = sorted(set(expected) - set(params))
    missing = sorted(set(params) - set(expected))
    unequal = sorted(k for k in set(expected) & set(params) if not torch.equal(expected[k].float(), params[k]))
    if unexpected or missing or unequal:
        failures.append(f"weights: unexpected {unexpected}, missing {missing}, unequal {unequal}")
    else:
        print(f"weights: all {len(saved)} tensors of the file are PEFT's LoRA parameters, bit for bit, and none is left out")

    theirs = logits_of(model)
    with model.disable_adapter():
        plain = logits_of(model)
    effect = max_diff(theirs, [p.tolist() for p in plain])
    print(f"the adapter moves PEFT's logits by up to {effect:.4g} (so a match within {args.tol:g} means something)")

    ours_files = args.ours or []
    runs = []
    if ours_files:
        for path in ours_files:
            with open(path) as f:
                runs.append(json.load(f))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in ("cpu", "wasm"):
                runs.append(dump_ours(adapter, backend, os.path.join(tmp, f"{backend}.json")))
    for run in runs:
        if [p["text"] for p in run["prompts"]] != PROMPTS or [p["ids"] for p in run["prompts"]] != [byte_ids(p) for p in PROMPTS]:
            failures.append(f"{run['backend']}: prompts/ids differ from {PROMPTS}")
            continue
        d = max_diff(theirs, [p["logits"] for p in run["prompts"]])
        scale = max(float(t.abs().max()) for t in theirs)
        print(f"posttrain ({run['backend']}) vs PEFT: max |Δlogit| = {d:.3g} (max |logit| {scale:.3g})")
        if d > args.tol:
            failures.append(f"{run['backend']}: max |Δlogit| {d:.3g} > {args.tol:g}")

    with tempfile.TemporaryDirectory() as tmp, Captured() as cap:
        model.save_pretrained(tmp)
        notes = compare_dirs(adapter, tmp)
    for message in cap.messages:  # e.g. a base_model_name_or_path that is not on the Hub
        print("  save_pretrained said: " + message.splitlines()[0])
    print("PEFT's save_pretrained of the same adapter vs our files:" + ("" if notes else " no differences"))
    for note in notes:
        print("  " + note)

    merged = model.merge_and_unload().eval()
    m = logits_of(merged)
    dm = max_diff(theirs, [t.tolist() for t in m])
    print(f"merge_and_unload() vs PEFT unmerged: max |Δlogit| = {dm:.3g}")
    for run in runs:
        print(f"merge_and_unload() vs posttrain ({run['backend']}): max |Δlogit| = {max_diff(m, [p['logits'] for p in run['prompts']]):.3g}")
    if dm > args.tol:
        failures.append(f"merge_and_unload: max |Δlogit| {dm:.3g} > {args.tol:g}")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("OK")


def save_fixture_adapter(model, relative):
    out = os.path.join(ROOT, relative)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    readme = os.path.join(out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)  # PEFT's model card template: not part of the adapter format
    for name in sorted(os.listdir(out)):
        os.chmod(os.path.join(out, name), 0o644)  # safetensors writes 0600
        print(f"wrote {relative}/{name} ({os.path.getsize(os.path.join(out, name))} bytes)")
    return out


def rounded(rows):
    return [[float(f"{v:.8g}") for v in row] for row in rows]


def make_fixture(args):
    print("versions:", json.dumps(versions()))
    torch.manual_seed(SEED)

    # 1. Plain LoRA with B ≠ 0: every logit of every prompt.
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj", "up_proj"],
        init_lora_weights=False,  # A and B keep nn.Linear's kaiming-uniform init, so B ≠ 0
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(load_base(), config).eval()
    save_fixture_adapter(model, FIXTURE_ADAPTER)
    theirs = logits_of(model)
    with model.disable_adapter():
        plain = logits_of(model)

    # 2. PiSSA (init_lora_weights="pissa"): A and B from the top-4 SVD of W, base ← W − scale·B·A,
    # then B moved as training would move it. PEFT saves only A and B and, loading, runs PiSSA on
    # the fresh base again to get the residual back; the logits below are from that load. Last
    # position of each prompt only, to keep the fixture small.
    pissa_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], init_lora_weights="pissa", task_type="CAUSAL_LM")
    trained = get_peft_model(load_base(), pissa_config).eval()
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 * torch.randn(p.shape))
    pissa_dir = save_fixture_adapter(trained, FIXTURE_PISSA_ADAPTER)
    in_memory = logits_of(trained)
    with Captured() as cap:
        reloaded = PeftModel.from_pretrained(load_base(), pissa_dir).eval()
    for message in cap.messages:
        print("  PEFT said on loading the PiSSA adapter: " + message.splitlines()[0])
    pissa = logits_of(reloaded)
    print(f"PiSSA: PEFT reloaded vs PEFT in memory: max |Δlogit| {max_diff(pissa, [t.tolist() for t in in_memory]):.3g}")
    # What a loader that leaves the base weight alone would give: W + scale·B·A.
    original = load_base()
    with torch.no_grad():
        for name, module in reloaded.named_modules():
            if hasattr(module, "base_layer") and name.endswith(("q_proj", "v_proj")):
                path = name.split("base_model.model.", 1)[1]
                module.base_layer.weight.copy_(original.get_submodule(path).weight)
    naive = logits_of(reloaded)

    fixture = {
        "description": "PEFT's logits of examples/sft/tiny-base + an adapter PEFT made, on each prompt alone (no padding), float32 CPU, eager attention; written by scripts/reference/peft_roundtrip.py make-fixture",
        "versions": versions(),
        "seed": SEED,
        "adapter": FIXTURE_ADAPTER,
        "lora_config": {"r": config.r, "lora_alpha": config.lora_alpha, "target_modules": sorted(config.target_modules), "init_lora_weights": False},
        "adapter_effect": round(max_diff(theirs, [p.tolist() for p in plain]), 6),
        "prompts": [{"text": text, "ids": byte_ids(text), "logits": rounded(t.tolist())} for text, t in zip(PROMPTS, theirs)],
        "pissa": {
            "adapter": FIXTURE_PISSA_ADAPTER,
            "lora_config": {"r": pissa_config.r, "lora_alpha": pissa_config.lora_alpha, "target_modules": sorted(pissa_config.target_modules), "init_lora_weights": "pissa"},
            "base_left_alone_effect": round(max_diff(pissa, [t.tolist() for t in naive]), 6),
            "prompts": [{"text": text, "ids": byte_ids(text), "last_logits": rounded(t[-1:].tolist())[0]} for text, t in zip(PROMPTS, pissa)],
        },
    }
    path = os.path.join(ROOT, FIXTURE_LOGITS)
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {FIXTURE_LOGITS} ({os.path.getsize(path)} bytes)")
    print(f"  the plain adapter moves the logits by up to {fixture['adapter_effect']}")
    print(f"  leaving the base alone (no PiSSA residual) moves the PiSSA logits by up to {fixture['pissa']['base_left_alone_effect']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="posttrain's adapter files → PEFT")
    c.add_argument("adapter", help="adapter directory (adapter_config.json + adapter_model.safetensors)")
    c.add_argument("--ours", nargs="*", help="logits JSON from dump-adapter-logits.ts (default: run it on cpu and wasm)")
    c.add_argument("--tol", type=float, default=1e-4, help="max |Δlogit| allowed (default 1e-4)")
    sub.add_parser("make-fixture", help="PEFT-made adapter + PEFT's logits → packages/lora/fixtures")
    args = parser.parse_args()
    if args.command == "make-fixture" and os.environ.get("PYTHONHASHSEED") != "0":
        # PEFT keeps target_modules as a set and writes it in set order: fix str hashing so that
        # the fixture's adapter_config.json comes out byte-identical on every run.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    torch.set_num_threads(1)  # reproducible float32 sums
    transformers.utils.logging.disable_progress_bar()
    if args.command == "check":
        args.adapter = os.path.abspath(args.adapter)
        args.ours = [os.path.abspath(p) for p in args.ours or []]
    os.chdir(ROOT)
    if args.command == "check":
        check(args)
    else:
        make_fixture(args)


if __name__ == "__main__":
    main()

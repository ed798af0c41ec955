"""posttrain's saved reward models against Hugging Face: transformers and PEFT load them, and score
the same inputs as posttrain does.

Needs torch, transformers, peft and safetensors (not for CI):

    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install torch peft transformers safetensors

Run from the repository root, after writing the two saves and posttrain's rewards with

    npx tsx --conditions=@posttrain/source scripts/reference/dump-reward-scores.ts
    /tmp/hfenv/bin/python scripts/reference/reward_hf_check.py [--scores /tmp/rm-scores.json] [--tol 1e-5]

  full     AutoModelForSequenceClassification.from_pretrained(full_dir, dtype=float32,
           output_loading_info=True): reports the class, missing/unexpected/mismatched keys and
           warnings, checks every file tensor equals the loaded parameter, compares the logits
           [B, 1] with posttrain's rewards.
  adapter  PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base,
           num_labels=1), adapter_dir): the same checks (every LoRA and score tensor of the file
           is a PEFT parameter, bit for bit), the logits against posttrain's, how far the adapter
           moves them (disable_adapter), the logits after merge_and_unload(); then re-saves with
           PEFT's save_pretrained and lists every difference between the two directories.

The inputs are right-padded with pad_token_id and pad ids occur nowhere else, so Hugging Face's
last-token rule (the last token that is not pad_token_id) and posttrain's (the last position whose
attention mask is 1) pick the same token; the script checks this before comparing.
Exits 1 when a logit differs by more than --tol or a check fails.
"""
import argparse
import json
import os
import sys
import tempfile

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from hf_common import Captured, compare_dirs, versions


@torch.no_grad()
def logits_of(model, scores):
    ids = torch.tensor(scores["inputIds"])
    mask = torch.tensor(scores["attentionMask"])
    out = model(input_ids=ids, attention_mask=mask).logits
    return out


def check_last_token_rule(scores, pad_token_id):
    """Hugging Face's rule (last non-pad id) and ours (last mask-1 position) agree on these inputs."""
    for ids, mask in zip(scores["inputIds"], scores["attentionMask"]):
        hf = max(i for i, t in enumerate(ids) if t != pad_token_id)
        ours = max(i for i, m in enumerate(mask) if m == 1)
        if hf != ours:
            return f"last-token rules disagree on {ids}: HF {hf}, ours {ours}"
    return None


def compare(name, logits, ours, tol, failures):
    if tuple(logits.shape) != (len(ours), 1):
        failures.append(f"{name}: expected HF logits of shape [{len(ours)}, 1]; got {list(logits.shape)}")
        return None
    diff = float((logits[:, 0] - torch.tensor(ours, dtype=torch.float32)).abs().max())
    print(f"  {name}: HF {[round(float(x), 6) for x in logits[:, 0]]}")
    print(f"  {name}: ours {[round(x, 6) for x in ours]}  max |diff| {diff:.3g}")
    if diff > tol:
        failures.append(f"{name}: max |HF − ours| {diff:.3g} > tol {tol:g}")
    return diff


def check_full(scores, tol, failures):
    path = scores["full"]
    print(f"[full] {path}")
    with Captured() as cap:
        model, info = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    model.eval()
    print(f"  class {type(model).__name__}, num_labels {model.config.num_labels}, pad_token_id {model.config.pad_token_id}, problem_type {model.config.problem_type}")
    print(f"  loading info: {json.dumps({k: sorted(map(str, v)) for k, v in info.items()})}")
    if type(model).__name__ != "LlamaForSequenceClassification":
        failures.append(f"full: expected LlamaForSequenceClassification; got {type(model).__name__}")
    if any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")):
        failures.append(f"full: loading info not empty: {info}")
    if cap.messages:
        print("  warnings:\n    " + "\n    ".join(cap.messages))
        failures.append("full: warnings while loading")
    else:
        print("  no warnings while loading")
    saved = load_file(os.path.join(path, "model.safetensors"))
    params = model.state_dict()
    unequal = sorted(k for k in saved if k not in params or not torch.equal(saved[k], params[k]))
    not_from_file = sorted(k for k in params if k not in saved and k != "lm_head.weight")
    if unequal or not_from_file:
        failures.append(f"full: file tensors not loaded as-is {unequal}; parameters not from the file {not_from_file}")
    else:
        print(f"  all {len(saved)} file tensors are the model's parameters, bit for bit; every parameter came from the file")
    problem = check_last_token_rule(scores, model.config.pad_token_id)
    if problem:
        failures.append(f"full: {problem}")
    logits = logits_of(model, scores)
    compare("full", logits, scores["rewards"]["full"], tol, failures)


def check_adapter(scores, tol, failures):
    path, base_dir = scores["adapter"], scores["base"]
    print(f"[adapter] {path} on {base_dir}")
    with Captured() as cap_base:
        base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=torch.float32)
    # The base is a causal LM checkpoint: transformers creates `score` fresh (and drops nothing but
    # lm_head's tie); PEFT must then overwrite `score` from the adapter file.
    print(f"  base: {type(base).__name__}, pad_token_id {base.config.pad_token_id}; warnings loading the base (expected: score newly initialised): {cap_base.messages}")
    with Captured() as cap:
        model = PeftModel.from_pretrained(base, path).eval()
    config = model.peft_config["default"]
    print(f"  PEFT: {type(model).__name__}, task_type {config.task_type}, modules_to_save {config.modules_to_save}, r {config.r}, lora_alpha {config.lora_alpha}")
    if cap.messages:
        print("  warnings while loading the adapter:\n    " + "\n    ".join(cap.messages))
        failures.append("adapter: warnings while loading")
    else:
        print("  no warnings while loading the adapter")
    saved = load_file(os.path.join(path, "adapter_model.safetensors"))
    params = {k: v for k, v in model.state_dict().items() if "lora_" in k or ".modules_to_save." in k}

    def peft_key(k):
        k = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        return k.replace("base_model.model.score.", "base_model.model.score.modules_to_save.default.")

    expected = {peft_key(k): v for k, v in saved.items()}
    unexpected = sorted(set(expected) - set(params))
    missing = sorted(set(params) - set(expected))
    unequal = sorted(k for k in set(expected) & set(params) if not torch.equal(expected[k].float(), params[k]))
    if unexpected or missing or unequal:
        failures.append(f"adapter: weights: unexpected {unexpected}, missing {missing}, unequal {unequal}")
    else:
        print(f"  all {len(saved)} file tensors are PEFT's LoRA / modules_to_save parameters, bit for bit, none left out")
    problem = check_last_token_rule(scores, model.config.pad_token_id)
    if problem:
        failures.append(f"adapter: {problem}")
    logits = logits_of(model, scores)
    compare("adapter", logits, scores["rewards"]["adapter"], tol, failures)
    with model.disable_adapter():
        plain = logits_of(model, scores)
    print(f"  the adapter (LoRA + saved head vs base + fresh head) moves HF's logits by up to {float((logits - plain).abs().max()):.4g}")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        notes = compare_dirs(path, tmp)
    print("  PEFT re-save vs ours: " + ("identical keys, dtypes, shapes, values and config fields" if not notes else "\n    " + "\n    ".join(notes)))
    merged = model.merge_and_unload().eval()
    compare("adapter merged", logits_of(merged, scores), scores["rewards"]["adapter"], tol, failures)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", default="/tmp/rm-scores.json")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()
    with open(args.scores) as f:
        scores = json.load(f)
    print("versions:", json.dumps(versions()))
    print(f"ours: backend {scores['backend']}, texts {scores['texts']}, T {len(scores['inputIds'][0])}")
    torch.manual_seed(0)
    failures = []
    check_full(scores, args.tol, failures)
    check_adapter(scores, args.tol, failures)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"OK: both saves load in Hugging Face and match posttrain within {args.tol:g}")


if __name__ == "__main__":
    main()

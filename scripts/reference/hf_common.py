"""Helpers shared by the Hugging Face checks (peft_roundtrip.py, reward_hf_check.py): library
versions, captured load warnings, safetensors headers and a diff of two saved directories.
Needs torch, transformers, peft and safetensors (a one-off venv; see those scripts)."""
import json
import logging
import os
import struct
import warnings

import peft
import safetensors
import torch
import transformers
from safetensors.torch import load_file


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "safetensors": safetensors.__version__}


class Captured:
    """Collects Python warnings and WARNING+ log records of transformers/peft/safetensors."""

    def __enter__(self):
        self.records = []
        self._warnings = warnings.catch_warnings(record=True)
        self.warnings = self._warnings.__enter__()
        warnings.simplefilter("always")
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.records.append(f"{record.name}: {record.getMessage()}")
        for name in ("transformers", "peft", "safetensors"):
            logging.getLogger(name).addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        for name in ("transformers", "peft", "safetensors"):
            logging.getLogger(name).removeHandler(self.handler)
        self._warnings.__exit__(*exc)
        self.messages = [f"{w.category.__name__}: {w.message}" for w in self.warnings] + self.records
        return False


def safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def compare_dirs(ours_dir, peft_dir):
    """Every difference between our adapter files and PEFT's re-save of the same adapter."""
    notes = []
    with open(os.path.join(ours_dir, "adapter_config.json")) as f:
        ours = json.load(f)
    with open(os.path.join(peft_dir, "adapter_config.json")) as f:
        theirs = json.load(f)
    for key in sorted(set(theirs) - set(ours)):
        notes.append(f"config: PEFT writes {key}={json.dumps(theirs[key])}, ours omits it")
    for key in sorted(set(ours) - set(theirs)):
        notes.append(f"config: ours writes {key}={json.dumps(ours[key])}, PEFT does not")
    for key in sorted(set(ours) & set(theirs)):
        a, b = ours[key], theirs[key]
        if isinstance(a, list) and isinstance(b, list):
            a, b = sorted(a), sorted(b)  # PEFT stores sets; list order is arbitrary
        if a != b:
            notes.append(f"config: {key} ours={json.dumps(ours[key])} PEFT={json.dumps(theirs[key])}")
    h_ours = safetensors_header(os.path.join(ours_dir, "adapter_model.safetensors"))
    h_peft = safetensors_header(os.path.join(peft_dir, "adapter_model.safetensors"))
    if h_ours.get("__metadata__") != h_peft.get("__metadata__"):
        notes.append(f"safetensors __metadata__: ours={h_ours.get('__metadata__')} PEFT={h_peft.get('__metadata__')}")
    k_ours = {k for k in h_ours if k != "__metadata__"}
    k_peft = {k for k in h_peft if k != "__metadata__"}
    for k in sorted(k_peft - k_ours):
        notes.append(f"safetensors: PEFT has key {k}, ours lacks it")
    for k in sorted(k_ours - k_peft):
        notes.append(f"safetensors: ours has key {k}, PEFT lacks it")
    for k in sorted(k_ours & k_peft):
        for field in ("dtype", "shape"):
            if h_ours[k][field] != h_peft[k][field]:
                notes.append(f"safetensors: {k} {field} ours={h_ours[k][field]} PEFT={h_peft[k][field]}")
    t_ours = load_file(os.path.join(ours_dir, "adapter_model.safetensors"))
    t_peft = load_file(os.path.join(peft_dir, "adapter_model.safetensors"))
    for k in sorted(k_ours & k_peft):
        if not torch.equal(t_ours[k], t_peft[k]):
            notes.append(f"safetensors: {k} values differ (max {float((t_ours[k] - t_peft[k]).abs().max()):.3g})")
    return notes

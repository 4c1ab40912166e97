"""The checkpoint format: data only, never code.

    torch.save({"format": "snncompile-checkpoint", "version": 1,
                "config": <plain dict, see SNN>, "state_dict": <name -> tensor>}, path)

Loading uses `torch.load(..., weights_only=True)`, which refuses any pickle that would
construct arbitrary objects or run code; every failure becomes one `InputFileError` line.
"""
from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import InputFileError, SnnCompileError, UnsupportedError
from .layers import SNN

FORMAT = "snncompile-checkpoint"
VERSION = 1


def save_checkpoint(model: SNN, path: str | Path, extra: dict | None = None) -> None:
    """Write `model` (config + weights) to `path`. `extra`: plain JSON-like metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "version": VERSION, "config": model.config,
                "state_dict": state, "extra": dict(extra or {})}, path)


def read_checkpoint(path: str | Path) -> dict:
    """torch.load(weights_only=True) with every failure turned into one InputFileError."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: not for users
            warnings.simplefilter("ignore")
            try:   # mmap: tensor data stays on disk until the checks below accept it
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                ckpt = torch.load(path, map_location="cpu", weights_only=True)  # legacy
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        raise InputFileError(f"{path}: refused to load: the file contains objects other than "
                             f"tensors and plain data ({first[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a corrupt file
        # torch's safe unpickler raises many types on garbage (IndexError, struct.error...)
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise InputFileError(f"{path}: corrupt or truncated checkpoint ({msg})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputFileError(f"{path}: not an snncompile checkpoint (expected a dict with "
                             f"format='{FORMAT}'; write one with snncompile.nn.save_checkpoint)")
    if ckpt.get("version") != VERSION:
        raise InputFileError(f"{path}: checkpoint version {ckpt.get('version')} is not "
                             f"supported (this snncompile reads version {VERSION})")
    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise InputFileError(f"{path}: checkpoint lacks 'config' or 'state_dict'")
    return ckpt


#: dtypes a float parameter may be stored in (no float8, complex, quantized or integer)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MAX_STATE_ELEMENTS = 1 << 28   # all parameters together (1 GiB as float32)
MAX_LAYERS = 1 << 12           # layers of one model
MAX_CONFIG_ITEMS = 1 << 16     # values in the config, all levels together
MAX_CONFIG_DEPTH = 8           # nesting of the config (it is a few plain dicts and lists)
#: config keys (at any level) that hold integers (shape: a list of them), and reals
INT_KEYS = frozenset({"shape", "bits", "out", "kernel", "stride", "padding", "groups",
                      "steps", "window", "gain_bits", "t_ratio", "c_ratio", "latency",
                      "hidden", "channels", "version"})
REAL_KEYS = frozenset({"du", "dv", "vth", "init_bias", "eps", "momentum"})
MAX_INT_FIELD = 1 << 24


def check_config(path, config: dict) -> None:
    """The config is plain data of bounded size: every integer field (`INT_KEYS`) holds
    integers (2.5 is refused, not truncated to 2), every real (`REAL_KEYS`) is finite."""
    count = 0

    def walk(value, where: str, depth: int):
        nonlocal count
        count += 1
        if count > MAX_CONFIG_ITEMS or depth > MAX_CONFIG_DEPTH:
            raise InputFileError(f"{path}: model config is larger than {MAX_CONFIG_ITEMS} "
                                 f"values or nested deeper than {MAX_CONFIG_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InputFileError(f"{path}: config{where}: key {key!r:.40} is not a "
                                         "string")
                here = f"{where}.{key}"
                if key in ("name", "type", "kind", "mode", "encoding", "reset", "fire_at") \
                        and not isinstance(item, (str, type(None))):
                    raise InputFileError(f"{path}: config{where} '{key}' = {item!r:.60} "
                                         "must be a string")
                if key in INT_KEYS:
                    _integers(path, f"{where} '{key}'", item)
                elif key in REAL_KEYS:
                    _real(path, f"{where} '{key}'", item)
                walk(item, here, depth + 1)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]", depth + 1)
        elif isinstance(value, str) and len(value) > 256:
            raise InputFileError(f"{path}: config{where}: string of {len(value)} characters "
                                 "exceeds 256")
        elif not isinstance(value, (str, int, float, bool, type(None))):
            raise InputFileError(f"{path}: config{where}: {type(value).__name__} is not "
                                 "plain data")

    walk(config, "", 0)
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise InputFileError(f"{path}: config 'layers' must be a non-empty list")
    if len(layers) > MAX_LAYERS:
        raise InputFileError(f"{path}: {len(layers)} layers exceed {MAX_LAYERS}")
    if not all(isinstance(spec, dict) for spec in layers):
        raise InputFileError(f"{path}: every entry of config 'layers' must be a table")
    if not isinstance(config.get("input"), dict):
        raise InputFileError(f"{path}: config 'input' must be a table")


def _integers(path, where: str, value) -> None:
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if v is None and not isinstance(value, (list, tuple)):
            continue   # an optional field left unset
        if isinstance(v, bool) or not isinstance(v, (int, float)) \
                or not math.isfinite(v) or v != int(v) \
                or not -MAX_INT_FIELD <= v <= MAX_INT_FIELD:
            raise InputFileError(f"{path}: config{where} = {value!r:.60} must be "
                                 f"{'integers' if items is value else 'an integer'} in "
                                 f"[-{MAX_INT_FIELD}, {MAX_INT_FIELD}]")


def _real(path, where: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise InputFileError(f"{path}: config{where} = {value!r:.60} must be a finite number")


def check_state(path, state: dict) -> None:
    """Every parameter is a dense CPU tensor of a float dtype whose storage, read from the
    file, holds all its elements (a stride-0 tensor declaring 256 x 2**20 values in a
    1 KB file is refused before anything that size is allocated), finite, and bounded in
    total."""
    total = 0
    for key, t in state.items():
        where = f"{path}: parameter '{str(key)[:80]}'"
        if not isinstance(t, torch.Tensor):
            raise InputFileError(f"{where} is a {type(t).__name__}, not a tensor")
        if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
            kind = ("quantized" if t.is_quantized else f"{t.device.type}"
                    if t.device.type != "cpu" else str(t.layout).replace("torch.", ""))
            raise InputFileError(f"{where} is a {kind} tensor; only dense CPU tensors are "
                                 "read")
        if _batch_counter(key, t):   # BatchNorm's own integer bookkeeping, never used
            continue
        if t.dtype not in FLOAT_DTYPES:
            raise InputFileError(f"{where} has dtype {str(t.dtype).replace('torch.', '')};"
                                 " supported: " + ", ".join(str(d).replace("torch.", "")
                                                            for d in FLOAT_DTYPES))
        n = t.numel()
        total += n
        if total > MAX_STATE_ELEMENTS:
            raise InputFileError(f"{where}: parameters hold more than {MAX_STATE_ELEMENTS} "
                                 "values in total")
        if n:
            reach = t.storage_offset() + 1 + sum((d - 1) * abs(st)
                                                 for d, st in zip(t.shape, t.stride()))
            stored = t.untyped_storage().nbytes()
            if any(st == 0 for d, st in zip(t.shape, t.stride()) if d > 1) \
                    or max(reach, n) * t.element_size() > stored:
                raise InputFileError(f"{where} of shape {tuple(t.shape)} is not stored in "
                                     "full (stride 0, overlapping or outside its storage)")
        if not torch.isfinite(t).all():
            raise InputFileError(f"{where} contains NaN or inf")


def _batch_counter(key, t: torch.Tensor) -> bool:
    """A BatchNorm's `num_batches_tracked`: one int64 (the compiler reads eval statistics
    only)."""
    return (str(key).endswith(".num_batches_tracked") and t.dtype == torch.int64
            and t.numel() == 1)


def load_state(path, model: nn.Module, state: dict) -> None:
    """Check names, shapes and finiteness, then load `state` into `model` (eval mode)."""
    _match(path, model.state_dict(), state)
    check_state(path, state)
    model.load_state_dict(state)
    model.eval()


def _match(path, expected: dict, state: dict) -> None:
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise InputFileError(f"{path}: state_dict does not match the config "
                             f"(missing {missing[:3]}, unexpected {extra[:3]})"[:300])
    for key, tensor in state.items():
        if (not isinstance(tensor, torch.Tensor)
                or tuple(tensor.shape) != tuple(expected[key].shape)):
            raise InputFileError(f"{path}: parameter '{key}' has shape "
                                 f"{tuple(getattr(tensor, 'shape', ()))}, config expects "
                                 f"{tuple(expected[key].shape)}")


def has_attention(layers) -> bool:
    """True when a list of layer specs holds a layer of type "attention", at the top
    level or inside a residual block's body or shortcut."""
    for spec in layers if isinstance(layers, list) else ():
        if not isinstance(spec, dict):
            continue
        if spec.get("type") == "attention" or (spec.get("type") == "residual" and any(
                has_attention(spec.get(part)) for part in ("body", "shortcut"))):
            return True
    return False


def model_class(config: dict) -> type:
    """SNN, AttentionSNN (a layer of type "attention", also in a residual block) or HTDA
    (config["model"] == "htda")."""
    if config.get("model") == "htda":
        from .htda import HTDA
        return HTDA
    if has_attention(config.get("layers")):
        from .attention import AttentionSNN
        return AttentionSNN
    return SNN


def load_checkpoint(path: str | Path) -> tuple[SNN, dict]:
    """Return (model in eval mode, checkpoint dict) for any of the package's models.
    Raises InputFileError / UnsupportedError on anything odd."""
    ckpt = read_checkpoint(path)
    config = ckpt["config"]
    check_config(path, config)
    check_state(path, ckpt["state_dict"])
    cls = model_class(config)
    skeleton = _build(path, cls, config, meta=True)
    if skeleton is not None:   # names and shapes checked before anything is allocated
        _match(path, skeleton.state_dict(), ckpt["state_dict"])
    model = _build(path, cls, config)
    load_state(path, model, ckpt["state_dict"])
    return model, ckpt


def _build(path, cls, config: dict, meta: bool = False):
    """`cls(config)`, on the meta device (no memory, no initialisation) when `meta`; None
    if the model cannot be built there (it is then checked after the real build)."""
    try:
        if meta:
            try:
                with torch.device("meta"):
                    return cls(config)
            except SnnCompileError:
                raise
            except Exception:  # noqa: BLE001 - an op without a meta kernel
                return None
        return cls(config)
    except UnsupportedError as exc:
        raise UnsupportedError(f"{path}: {exc}") from None
    except SnnCompileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError,
            MemoryError, OverflowError) as exc:   # torch raises RuntimeError on bad sizes
        raise InputFileError(f"{path}: malformed model config ({exc!r:.200})") from None

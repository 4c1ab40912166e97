"""The checkpoint format: data only, never code.

    torch.save({"format": "snncompile-checkpoint", "version": 1,
                "config": <plain dict, see SNN>, "state_dict": <name -> tensor>}, path)

Loading uses `torch.load(..., weights_only=True)`, which refuses any pickle that would
construct arbitrary objects or run code; every failure becomes one `InputFileError` line.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import InputFileError, UnsupportedError
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
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
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


def load_state(path, model: nn.Module, state: dict) -> None:
    """Check names, shapes and finiteness, then load `state` into `model` (eval mode)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise InputFileError(f"{path}: state_dict does not match the config "
                             f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for key, tensor in state.items():
        if (not isinstance(tensor, torch.Tensor)
                or tuple(tensor.shape) != tuple(expected[key].shape)):
            raise InputFileError(f"{path}: parameter '{key}' has shape "
                                 f"{tuple(getattr(tensor, 'shape', ()))}, config expects "
                                 f"{tuple(expected[key].shape)}")
        if not torch.isfinite(tensor).all():
            raise InputFileError(f"{path}: parameter '{key}' contains NaN or inf")
    model.load_state_dict(state)
    model.eval()


def model_class(config: dict) -> type:
    """SNN, AttentionSNN (a layer of type "attention") or HTDA (config["model"] == "htda")."""
    if config.get("model") == "htda":
        from .htda import HTDA
        return HTDA
    if any(isinstance(s, dict) and s.get("type") == "attention"
           for s in config.get("layers", ()) or ()):
        from .attention import AttentionSNN
        return AttentionSNN
    return SNN


def load_checkpoint(path: str | Path) -> tuple[SNN, dict]:
    """Return (model in eval mode, checkpoint dict) for any of the package's models.
    Raises InputFileError / UnsupportedError on anything odd."""
    ckpt = read_checkpoint(path)
    config = ckpt["config"]
    try:
        model = model_class(config)(config)
    except UnsupportedError as exc:
        raise UnsupportedError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError,
            MemoryError, OverflowError) as exc:   # torch raises RuntimeError on bad sizes
        raise InputFileError(f"{path}: malformed model config ({exc!r})") from None
    load_state(path, model, ckpt["state_dict"])
    return model, ckpt

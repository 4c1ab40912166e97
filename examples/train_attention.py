"""Train small attention SNNs on CPU and compare them with plain SNNs (a few minutes).

    .venv/bin/python examples/train_attention.py [--epochs N] [--seed S] [--save]

Digits (8x8, T=16, Bernoulli spikes: pixel value / 16 per step, so that no single frame
holds the whole image): (a) conv SNN, (b) + TCSA causal, (c) + CA causal, (d) HTDA
(binary map, latency 1). Event timing data (2x8x8 spikes, T=16, see
`examples.datasets.events`): (a) conv SNN, + TA causal (window 4), + TA window (as
released). Attention sits before lif1 and lif2 on digits, before lif1 on events; every
attention gain is rounded to 8 bits (gain_bits=8).
Prints float test accuracy, mean firing rate per LIF layer and total spikes per inference
(all LIF layers, all steps, mean over the test set). `--save` writes checkpoints under
examples/checkpoints/ when each is below 200 KB.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.datasets.events import digits_images, event_timing  # noqa: E402
from snncompile.nn import SNN, save_checkpoint  # noqa: E402
from snncompile.nn.attention import AttentionSNN  # noqa: E402
from snncompile.nn.htda import HTDA, fit_htda  # noqa: E402
from snncompile.nn.layers import LIFLayer  # noqa: E402
from snncompile.nn.train import fit  # noqa: E402

STEPS = 16
LIF = {"type": "lif", "du": 0.25, "dv": 0.1, "vth": 1.0}
ATT = {"type": "attention", "mode": "causal", "window": 4, "t_ratio": 2, "c_ratio": 4,
       "kernel": 3, "gain_bits": 8}


def digits_config(att: dict | None) -> dict:
    layers = [{"type": "conv2d", "out": 8, "kernel": 3, "padding": 1, "name": "conv1"},
              {**LIF, "bias": True, "name": "lif1"},
              {"type": "avgpool2d", "kernel": 2},
              {"type": "conv2d", "out": 16, "kernel": 3, "padding": 1, "name": "conv2"},
              {**LIF, "name": "lif2"},
              {"type": "avgpool2d", "kernel": 2},
              {"type": "flatten"},
              {"type": "dense", "out": 10, "name": "fc3"},
              {**LIF, "name": "lif3"}]
    if att:
        layers.insert(4, {**att, "name": "att2"})
        layers.insert(1, {**att, "name": "att1"})
    return {"input": {"shape": [1, 8, 8], "encoding": "spikes", "steps": STEPS},
            "layers": layers}


def events_config(att: dict | None) -> dict:
    lif = {**LIF, "du": 0.1}   # a slow current keeps a memory of earlier bursts
    layers = [{"type": "conv2d", "out": 8, "kernel": 3, "padding": 1, "name": "conv1"},
              {**lif, "name": "lif1"},
              {"type": "avgpool2d", "kernel": 2},
              {"type": "flatten"},
              {"type": "dense", "out": 32, "name": "fc2"},
              {**lif, "name": "lif2"},
              {"type": "dense", "out": 4, "name": "fc3"},
              {**lif, "name": "lif3"}]
    if att:
        layers.insert(1, {**att, "name": "att1"})
    return {"input": {"shape": [2, 8, 8], "encoding": "spikes", "steps": STEPS},
            "layers": layers}


def htda_config() -> dict:
    cfg = digits_config(None)
    cfg["model"] = "htda"
    # latency 2 = the chip's loop: lif2 (depth 2) reaches lif1 (depth 1) one synapse later,
    # plus the loop's one-step delay; counts and a binary map are exact in integers
    cfg["htda"] = {"target": "lif1", "source": "lif2", "hidden": 8, "kernel": 3,
                   "latency": 2, "read": "count", "init": "ones", "init_bias": 2.0,
                   "mask": "binary", "area": 0.02, "tv": 0.05}
    return cfg


def measure(model, x, y, batch_size: int = 256):
    """(accuracy, {lif: mean firing rate}, total spikes per inference) on (x, y)."""
    lif_names = [n for n, m in zip(_snn(model).names, _snn(model).layers)
                 if isinstance(m, LIFLayer)]
    sums = {n: 0.0 for n in lif_names}
    sizes = {}
    correct = 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i:i + batch_size], dtype=torch.float32)
            spikes = _lif_spikes(model, xb)
            out = spikes[lif_names[-1]]
            pred = out.sum(1).reshape(len(xb), -1).argmax(1).numpy()
            correct += int((pred == y[i:i + batch_size]).sum())
            for n in lif_names:
                sums[n] += float(spikes[n].sum())
                sizes[n] = spikes[n][0].numel()    # T * neurons
    rates = {n: sums[n] / (len(x) * sizes[n]) for n in lif_names}
    return correct / len(x), rates, sum(sums.values()) / len(x)


def _snn(model):
    return model.snn if isinstance(model, HTDA) else model


def _lif_spikes(model, xb):
    if isinstance(model, HTDA):
        rec: dict = {}
        model(xb, record=rec)
        return {k: v["spikes"] for k, v in rec.items() if k != "maps"}
    got = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: got.__setitem__(n, out))
             for n, m in zip(model.names, model.layers) if isinstance(m, LIFLayer)]
    try:
        model(xb)
    finally:
        for h in hooks:
            h.remove()
    return got


def train_snn(config, xtr, ytr, epochs, input_scale, seed=0):
    torch.manual_seed(seed)
    model = (AttentionSNN if any(s["type"] == "attention" for s in config["layers"])
             else SNN)(copy.deepcopy(config))
    with torch.no_grad():
        model.layers[0].module.weight.mul_(input_scale)
    fit(model, xtr, ytr, epochs=epochs, lr=5e-3, progress=False, seed=seed)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12, help="digits epochs (events: 2x)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []

    def run(label, stem, data, build):
        t0 = time.time()
        model = build()
        acc, rates, total = measure(model, data[2], data[3])
        rows.append((label, acc, rates, total, time.time() - t0))
        note = ""
        if isinstance(model, HTDA):
            rec: dict = {}
            with torch.no_grad():
                model(torch.as_tensor(data[2], dtype=torch.float32), record=rec)
            maps = rec["maps"][:, model.latency:]
            per_step = " ".join(f"{v:.2f}" for v in maps.mean((0, 2, 3, 4)).tolist())
            note = (f", map mean {float(maps.mean()):.3f} (steps {model.latency}.., per step: "
                    f"{per_step}), std over samples {float(maps.std(0).mean()):.3f}")
        print(f"  {label}: acc {acc:.3f}, {total:.0f} spikes{note}, {time.time() - t0:.0f} s",
              flush=True)
        if args.save:
            path = ROOT / "examples" / "checkpoints" / f"{stem}.pt"
            save_checkpoint(model, path)
            if path.stat().st_size > 200_000:
                path.unlink()
                print(f"  {path.name}: over 200 KB, not kept")

    digits = digits_images(steps=STEPS, encoding="bernoulli")
    ev = event_timing(steps=STEPS, seed=0)
    e, sd = args.epochs, args.seed
    run("digits (a) plain", "attention_digits_plain", digits,
        lambda: train_snn(digits_config(None), *digits[:2], e, 1.0, sd))
    run("digits (b) tcsa causal", "attention_digits_tcsa_causal", digits,
        lambda: train_snn(digits_config({**ATT, "kind": "tcsa"}), *digits[:2], e, 1.0, sd))
    run("digits (c) ca causal", "attention_digits_ca_causal", digits,
        lambda: train_snn(digits_config({**ATT, "kind": "ca"}), *digits[:2], e, 1.0, sd))

    def htda():
        torch.manual_seed(sd)
        model = HTDA(htda_config())
        fit_htda(model, *digits[:2], epochs=e, lr=5e-3, seed=sd)
        return model
    run("digits (d) htda", "attention_digits_htda", digits, htda)
    run("events (a) plain", "attention_events_plain", ev,
        lambda: train_snn(events_config(None), *ev[:2], 2 * e, 1.0, sd))
    run("events ta causal", "attention_events_ta_causal", ev,
        lambda: train_snn(events_config({**ATT, "kind": "ta"}), *ev[:2], 2 * e, 1.0, sd))
    run("events ta window", "attention_events_ta_window", ev,
        lambda: train_snn(events_config({**ATT, "kind": "ta", "mode": "window",
                                         "t_ratio": 4}), *ev[:2], 2 * e, 1.0, sd))

    print(f"\n| model | float acc | mean firing rate per LIF | spikes / inference | train s |")
    print("|---|---|---|---|---|")
    for label, acc, rates, total, secs in rows:
        r = ", ".join(f"{k} {v:.3f}" for k, v in rates.items())
        print(f"| {label} | {acc:.3f} | {r} | {total:.0f} | {secs:.0f} |")
    return rows


if __name__ == "__main__":
    main()

"""Issue 12's attention networks on generated gestures: train, compile for loihi2, verify.

Two networks, each with and without attention, on generated DVS-style gestures; compiled
for loihi2 with the attention on the co-processor.

    .venv/bin/python examples/gesture_networks.py --quick    # smoke version (tests run it)
    .venv/bin/python examples/gesture_networks.py            # full widths (long on 2 cores)

Data: `examples.datasets.gestures` (11 classes of motion, two polarities, 2x32x32 frames,
T steps). Networks (every LIF: du 0.5, dv 0.2, vth 1.0, reset to 0, spike at v > vth):

A  the MA-SNN authors' DVS128 Gesture layout (Att_SNN.py: Input-MP4-64C3-128C3-AP2-128C3-AP2-
   256FC-11; issue 12). Each conv block is conv 3x3 -> AvgPool -> attention -> LIF, the pool
   on the conv's current as the authors order it. The authors pool their 128x128 input by 4
   to 32x32 first, so on this 2x32x32 input the block pools are 1, 2, 2 and the flattened
   map is 128 x 8 x 8 = 8192 -> 256 -> 11, as in the paper. Attention (`--kind`, default
   tcsa) sits in all three conv blocks, none on the FC layers.
B  a residual attention network in the Att_Res_SNN style: a stem conv -> AvgPool 2 -> LIF,
   a residual block, a transition conv -> AvgPool 2 -> LIF, a second residual block, then
   a sum pool 2, FC 11. Each block is the released Att_Res_SNN BasicBlock: body conv ->
   LIF -> conv -> CSA (`--res-kind`), the attention on the second conv's current at the
   end of the body; a 1x1 conv shortcut; the gated current and the shortcut's add into
   the block's LIF. The stem and transition convs have no attention.

"Without attention" is the same layout minus the attention layers. Training is the
package's `snncompile.nn.train.fit` (cross-entropy on output spike counts; `RECIPE`:
surrogate slope 2, Adam lr 5e-3, batch 32), after opening the attention gates and scaling
each synapse so that its LIF starts at a 10% firing rate (the output at 5%; `start_firing`;
ablations in bench/gesture_recipe.py). Each model is saved as a
checkpoint and compiled with `compile_model(..., "loihi2", calib=...)`; `verify` compares
the simulator (the baseline, so "compiled acc" is the simulator's), the integer reference
and Lava (on `--lava-samples` samples) spike for spike and every co-processor value, then
the compiled network against the float model; `energy_report` gives cores and latency.

Printed per network: float and compiled accuracy on the test split, per-layer firing rates
(float / compiled, from verify's fidelity table), spikes per inference (trained LIF layers,
compiled), cores, co-processor bytes per step, latency per step and per inference (energy
model), co-processor latency per step, mismatches and both verdicts; then a table, and all
of it as JSON (`--json`, default OUT/gesture_networks.json).

`--bn` adds {"type": "batchnorm"} after every conv (the authors' conv + BN: conv ->
batchnorm -> avgpool -> attention -> lif per block); the compiler folds each BatchNorm into
its conv's weight and bias, and the bias axon feeds the attention gate, so the gain
multiplies current + bias as in the float model. It is off by default. `--mode`
is passed to every attention layer (causal by default; "window", the released form, compiles
with a buffered co-processor window, and its delay is in the latency per inference).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.datasets.gestures import gestures  # noqa: E402
from snncompile.energy.run import energy_report  # noqa: E402
from snncompile.errors import SnnCompileError  # noqa: E402
from snncompile.nn import SNN, load_checkpoint, save_checkpoint  # noqa: E402
from snncompile.nn.checkpoint import model_class, read_checkpoint  # noqa: E402
from snncompile.nn.attention import KINDS, MODES, AttentionLayer, ChannelAttention  # noqa: E402
from snncompile.nn.layers import LIFLayer, Residual  # noqa: E402
from snncompile.nn.train import accuracy, fit  # noqa: E402
from snncompile.pipeline import FidelityWarning, compile_model  # noqa: E402
from snncompile.report.compile import table  # noqa: E402
from snncompile.verify.compare import verify  # noqa: E402

LIF = {"type": "lif", "du": 0.5, "dv": 0.2, "vth": 1.0}
#: what --quick and the full mode set unless a flag says otherwise
PRESETS = {
    "quick": {"steps": 8, "train": 110, "test": 22, "epochs": 5, "calib": 16,
              "lava_samples": 2, "width_a": (8, 16, 16, 32), "width_b": (8, 16)},
    "full": {"steps": 8, "train": 220, "test": 55, "epochs": 4, "calib": 32,
             "lava_samples": 2, "width_a": (64, 128, 128, 256), "width_b": (32, 64)},
}
FIELDS = ["network", "attention", "float acc", "compiled acc", "firing rate float/compiled",
          "spikes/inference", "cores", "co-proc bytes/step", "latency/step",
          "latency/inference", "co-proc latency/step", "mismatches", "backends",
          "float model"]


def conv(out: int, name: str, kernel: int = 3, bn: bool = False) -> list[dict]:
    layer = {"type": "conv2d", "out": out, "kernel": kernel, "padding": kernel // 2,
             "name": name}
    return [layer] + ([{"type": "batchnorm", "name": f"{name}.bn"}] if bn else [])


def attention(kind: str | None, mode: str, name: str) -> list[dict]:
    if not kind:
        return []
    return [{"type": "attention", "kind": kind, "mode": mode, "window": 4, "t_ratio": 2,
             "c_ratio": 4, "kernel": 3, "gain_bits": 8, "name": name}]


def gesture_config(widths, kind: str | None, mode: str, bn: bool, steps: int) -> dict:
    """Network A: three conv blocks (pools 1, 2, 2), FC widths[3], FC 11."""
    layers = []
    for i, (c, pool) in enumerate(zip(widths[:3], (1, 2, 2)), 1):
        layers += conv(c, f"conv{i}", bn=bn)
        layers += [{"type": "avgpool2d", "kernel": pool, "name": f"pool{i}"}] if pool > 1 else []
        layers += attention(kind, mode, f"att{i}") + [dict(LIF, name=f"lif{i}")]
    layers += [{"type": "flatten"}, {"type": "dense", "out": widths[3], "name": "fc4"},
               dict(LIF, name="lif4"), {"type": "dense", "out": 11, "name": "fc5"},
               dict(LIF, name="lif5")]
    return {"input": {"shape": [2, 32, 32], "encoding": "spikes", "steps": steps},
            "layers": layers}


def residual_config(widths, kind: str | None, mode: str, bn: bool, steps: int) -> dict:
    """Network B: stem, residual block, transition, residual block, sum pool, FC 11. The
    attention sits where the released Att_Res_SNN BasicBlock puts its CSA: at the end of
    each block's body, on the second conv's (+ BN's) current, before `+ shortcut(x)`."""
    def block(c, name):
        body = conv(c, f"{name}.conv1", bn=bn) + [dict(LIF, name=f"{name}.lif")] \
            + conv(c, f"{name}.conv2", bn=bn) + attention(kind, mode, f"{name}.att")
        return [{"type": "residual", "name": name, "body": body,
                 "shortcut": conv(c, f"{name}.short", kernel=1, bn=bn)},
                dict(LIF, name=f"{name}.out")]
    layers = []
    for i, c in enumerate(widths, 1):
        name = "stem" if i == 1 else f"trans{i}"
        layers += conv(c, name, bn=bn) + [{"type": "avgpool2d", "kernel": 2,
                                           "name": f"{name}.pool"},
                                          dict(LIF, name=f"{name}.lif")]
        layers += block(c, f"res{i}")
    layers += [{"type": "sumpool2d", "kernel": 2, "name": "pool"}, {"type": "flatten"},
               {"type": "dense", "out": 11, "name": "fc"}, dict(LIF, name="out")]
    return {"input": {"shape": [2, 32, 32], "encoding": "spikes", "steps": steps},
            "layers": layers}


# ---------------------------------------------------------------- training
def _synapses(layers) -> tuple[list, list, AttentionLayer | None]:
    """([(LIF, [synapse modules whose currents it sums], attention layer or None)], the
    synapses still pending at the end, the attention on them or None) in forward order;
    a synapse followed by a BatchNorm is represented by the BatchNorm (what sets its
    output's scale). A residual block's LIF sums the body's last current (gated by the
    attention at the end of the body, if any) and the shortcut's."""
    pairs, pending, att = [], [], None
    for layer in layers:
        mod = getattr(layer, "module", None)
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            pending, att = [mod], None
        elif isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            pending = [mod]
        elif isinstance(layer, AttentionLayer):
            att = layer
        elif isinstance(layer, Residual):
            body = _synapses(layer.body)
            pairs += body[0]
            pending, att = body[1] + _synapses(layer.shortcut)[1], body[2]
        elif isinstance(layer, LIFLayer):
            pairs.append((layer, pending, att))
            pending, att = [], None
    return pairs, pending, att


def _rescale(mods: list, att, k: float) -> None:
    """Scale the current into a LIF by k: the synapses' weights (and biases) by k, a
    BatchNorm's affine weight and bias by k (its output scales by k in train and eval
    mode alike), and each attention gate's first weights by 1/k (its MLP or conv has no
    bias, so the gains are unchanged and the modulated current scales by exactly k)."""
    for mod in mods:
        mod.weight.mul_(k)
        if mod.bias is not None:
            mod.bias.mul_(k)
    for gate in (att.gate_modules().values() if att is not None else ()):
        first = gate.mlp[0] if hasattr(gate, "mlp") else gate.conv
        first.weight.div_(k)


def _logits(gate, cur: torch.Tensor) -> torch.Tensor:
    """A gate's sigmoid logits on `cur` (unquantised): log(g / (1 - g))."""
    bits, gate.gain_bits = gate.gain_bits, None
    try:
        g = gate(cur).double().clamp(1e-12, 1 - 1e-12)
    finally:
        gate.gain_bits = bits
    return torch.log(g / (1 - g))


def tame_gates(att: AttentionLayer, cur: torch.Tensor, rms: float = 1.5) -> None:
    """Start each gate of `att` (in order, each on the current the gates before it
    modulated) near an open gate: flip the sign of its last weights where its logits on
    `cur` are negative on average (per channel for CA), and scale them so that the logits
    have an RMS of `rms` (gains mostly between 0.2 and 0.95). The logits are linear in the
    last weights (MLP without bias, SA's conv), so both steps are exact. A random start
    can close a gate: TA's logits come from the max over all C*H*W currents, and at
    initialisation one of them closed network A's first TCSA to a mean gain of 0.02, which
    the firing-rate start then made up with a 173x BatchNorm gamma (`--bn`) that no
    weight mantissa can hold next to a threshold of 1."""
    for gate in att.gate_modules().values():
        last = gate.mlp[2] if hasattr(gate, "mlp") else gate.conv
        logit = _logits(gate, cur)
        units = last.weight.shape[0]        # CA: a logit per channel (axis 2), window TA:
        if units > 1:                       # one per step (axis 1); else one for all
            axis = 2 if isinstance(gate, ChannelAttention) else 1
            mean = logit.transpose(0, axis).reshape(units, -1).mean(1)
            last.weight[mean < 0] *= -1
        elif float(logit.mean()) < 0:
            last.weight.neg_()
        for _ in range(3):                  # again where float sigmoids saturated
            last.weight.mul_(rms / float(_logits(gate, cur).pow(2).mean().sqrt() + 1e-12))
        cur = gate(cur) * cur


def _capture(model: SNN, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What `module` receives when `model` runs on `x`."""
    seen = {}
    hook = module.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen["x"]


def _names(model: SNN) -> dict:
    """{id(layer): config name} for the layers of `model`, residual blocks' included."""
    out, todo = {}, [(model.names, model.layers)]
    while todo:
        names, layers = todo.pop()
        for name, layer in zip(names, layers):
            out[id(layer)] = name
            if isinstance(layer, Residual):
                todo += [(layer.body_names, layer.body), (layer.shortcut_names, layer.shortcut)]
    return out


def start_firing(model: SNN, x: torch.Tensor, rate: float = 0.1, out_rate: float = 0.05):
    """A trainable start for surrogate gradients on sparse event input, layer by layer in
    forward order: open each attention layer's gates (`tame_gates`), then scale each LIF's
    input current (`_rescale`) so that it fires at `rate` on `x` (the output layer at
    `out_rate`). A rate the layer cannot reach at any scale (ReLU'd or sparse currents:
    only neurons with a positive current ever fire) is lowered to 90% of the most it
    reaches, with a line on stderr; it used to pin the scale at the search's bound (1000)."""
    pairs = _synapses(model.layers)[0]
    with torch.no_grad():
        for i, (lif, mods, att) in enumerate(pairs):
            if att is not None:
                tame_gates(att, _capture(model, att, x))
            cur = _capture(model, lif, x)
            target = out_rate if i == len(pairs) - 1 else rate
            lo, hi = 1e-3, 1e3
            most = lif(cur * hi).mean().item()
            if most <= target:
                name = _names(model).get(id(lif), "a lif")
                print(f"start_firing: {name} fires at {most:.3f} at most on these samples "
                      f"(target {target}); starting it at {0.9 * most:.3f}", file=sys.stderr)
                target = 0.9 * most
            for _ in range(24):             # the rate grows with the scale
                mid = (lo * hi) ** 0.5
                lo, hi = (lo, mid) if lif(cur * mid).mean().item() > target else (mid, hi)
            _rescale(mods, att, hi)


#: the training recipe (ablations: bench/gesture_recipe.py, README "Issue 12's networks")
RECIPE = {"rate": 0.1, "out_rate": 0.05, "surrogate_scale": 2.0, "lr": 5e-3,
          "batch_size": 32}


def train(config: dict, data, args) -> tuple[SNN, float, list]:
    """Build, start (`start_firing`), fit (`RECIPE`), settle BatchNorm statistics:
    (model, seconds, loss per epoch)."""
    xtr, ytr = data[:2]
    torch.manual_seed(args.seed)
    model = model_class(config)(copy.deepcopy(config))   # attention also inside blocks
    t0 = time.perf_counter()
    for mod in model.modules():
        if isinstance(mod, LIFLayer):
            mod.surrogate_scale = args.surrogate
    start_firing(model, torch.as_tensor(xtr[:16], dtype=torch.float32), RECIPE["rate"],
                 args.out_rate)
    losses = fit(model, xtr, ytr, epochs=args.epochs, lr=args.lr,
                 batch_size=RECIPE["batch_size"], seed=args.seed, progress=False)
    settle_batchnorm(model, torch.as_tensor(xtr, dtype=torch.float32))
    return model, time.perf_counter() - t0, losses


def settle_batchnorm(model: SNN, x: torch.Tensor, batch: int = 32) -> None:
    """Set every BatchNorm's running statistics (what eval mode, and so the compiler,
    uses) to the exact averages over `x`: a few training batches at momentum 0.1 leave
    them near their initial 0 / 1, far from the batch statistics the model trained with."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None              # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


# ---------------------------------------------------------------- compile, verify, price
#: the flags that change what train() returns for a config (recorded in each checkpoint)
TRAINING = ("train", "epochs", "seed", "lr", "surrogate", "out_rate", "steps")


def training(args) -> dict:
    return {k: getattr(args, k) for k in TRAINING}


def reusable(path: Path, config: dict, args) -> tuple[SNN | None, dict, str]:
    """(model, checkpoint extra, note) for a checkpoint `--reuse` may load instead of
    training: its config must equal the one this run builds (layout, widths, kind, mode,
    --bn) and its recorded training settings this run's; (None, {}, why not) otherwise.
    A checkpoint written before the settings were recorded is loaded, with a note."""
    if not path.is_file():
        return None, {}, f"{path}: not found"
    ckpt = read_checkpoint(path)
    if ckpt["config"] != config:
        return None, {}, (f"{path}: its config differs from this run's (layout, widths, "
                          "attention kind or mode, --bn)")
    extra = dict(ckpt.get("extra") or {})
    done = extra.get("training")
    if done is not None and done != training(args):
        diff = ", ".join(f"{k} {done.get(k)} != {v}" for k, v in training(args).items()
                         if done.get(k) != v)
        return None, {}, f"{path}: trained with other settings ({diff})"
    note = "" if done is not None else (" (training settings not recorded in this older "
                                        "checkpoint: its config matches this run's)")
    return load_checkpoint(path)[0], extra, note


def evaluate(label: str, kind: str | None, model: SNN, data, args, out: Path,
             extra: dict | None = None) -> dict:
    """Checkpoint, compile for loihi2, verify, price: one result row (a dict)."""
    xtr, _, xte, yte = data
    stem = _stem(label, kind)
    ckpt = out / f"{stem}.pt"
    if extra is None:                   # trained by this run
        extra = {"dataset": "examples.datasets.gestures", "steps": args.steps,
                 "training": training(args)}
    save_checkpoint(model, ckpt, extra)
    row = {"network": label, "attention": kind or "none", "checkpoint": str(ckpt),
           "float_acc": accuracy(model, xte, yte)}
    t0 = time.perf_counter()
    try:
        build = compile_model(ckpt, "loihi2", calib=xtr[:args.calib])
    except SnnCompileError as exc:
        print(f"{label}, {kind or 'no attention'}: not compiled: {exc}", file=sys.stderr)
        return dict(row, compiled=False, reason=str(exc))
    build.save(out / f"{stem}.loihi2.build")
    row["compile_s"] = time.perf_counter() - t0
    for line in build.report["fidelity"]["warnings"]:
        print(f"compile warning (calibration data): {line}")
    t0 = time.perf_counter()
    rep = verify(build, xte, yte, backends=("sim", "reference", "lava"),
                 lava_samples=args.lava_samples)
    row["verify_s"] = time.perf_counter() - t0
    print(rep.text())
    (out / f"{stem}.loihi2.verify.json").write_text(json.dumps(rep.to_json(), indent=1))
    t0 = time.perf_counter()
    energy, mapping = energy_report(build, xte)
    row["energy_s"] = time.perf_counter() - t0
    return dict(row, compiled=True, **_verified(rep), **_priced(build, energy, mapping))


def _stem(label: str, kind: str | None) -> str:
    return f"gesture_{label.split()[0].lower()}_{kind or 'plain'}"


def _verified(rep) -> dict:
    """What the result row takes from verify: accuracies, rates, spikes, both verdicts."""
    fid, n, t = rep.fidelity, rep.samples, rep.steps
    rates = {r["layer"]: {"neurons": r["neurons"],
                          "float": None if r["float"] is None else r["float"] / (r["neurons"]
                                                                                 * n * t),
                          "compiled": r["compiled"] / (r["neurons"] * n * t)}
             for r in fid.layers}
    return {"compiled_acc": rep.accuracy["compiled"], "verify_float_acc": rep.accuracy["float"],
            "rates": rates, "spikes_per_inference": sum(r["compiled"] for r in fid.layers) / n,
            "float_spikes_per_inference": sum(r["float"] or 0 for r in fid.layers) / n,
            "mismatches": rep.mismatches, "equivalent": rep.equivalent,
            "samples_compared": {b: v["samples"] for b, v in rep.backends.items()},
            "faithful": rep.faithful, "fidelity": fid.verdict, "worst": fid.worst,
            "agreement": fid.agreement,
            "verdict_line": fid.verdict_line()}


def _priced(build, energy, mapping) -> dict:
    part = build.report.get("partition")
    return {"cores": mapping.n_cores,
            "coproc_bytes_per_step": part["bytes_per_step"] if part else 0,
            "coproc_latency_per_step_s": part["added_latency_per_step_s"] if part else 0.0,
            "latency_per_step_s": energy.latency_per_step_s,
            "latency_per_inference_s": energy.latency_per_inference_s,
            "energy_per_inference_j": energy.energy_per_inference_j}


def _us(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def _rate(v: dict) -> str:
    return ("-" if v["float"] is None else f"{v['float']:.3f}") + f"/{v['compiled']:.3f}"


def table_row(r: dict) -> list:
    if not r["compiled"]:
        return [r["network"], r["attention"], f"{r['float_acc']:.1%}", "not compiled"] \
            + ["-"] * (len(FIELDS) - 4)
    rates = " ".join(_rate(v) for v in r["rates"].values())
    w, agree = r["worst"], r.get("agreement")
    why = ([f"{w['layer']} {w['difference']:+.1%}"] if w else []) \
        + ([f"same decision {agree:.1%}"] if agree is not None else [])
    fid = r["fidelity"] + (f" ({'; '.join(why)})" if why else "")
    backends = ", ".join(f"{b} {k}" for b, k in r["samples_compared"].items())
    return [r["network"], r["attention"], f"{r['float_acc']:.1%}", f"{r['compiled_acc']:.1%}",
            rates, f"{r['spikes_per_inference']:.0f}", r["cores"],
            f"{r['coproc_bytes_per_step']:,}", _us(r["latency_per_step_s"]),
            _us(r["latency_per_inference_s"]), _us(r["coproc_latency_per_step_s"]),
            r["mismatches"], ("EQUIVALENT" if r["equivalent"] else "NOT EQUIVALENT")
            + f" ({backends})", fid]


# ---------------------------------------------------------------- main
def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--quick", action="store_true",
                    help="smoke version: narrow layers, 110 samples, 5 epochs (README: "
                    "time measured)")
    ap.add_argument("--steps", type=int, help="time steps T (default 8; issue 12: 8 to 60)")
    ap.add_argument("--epochs", type=int, help="training epochs (quick 5, full 4)")
    ap.add_argument("--train", type=int, help="training samples (quick 110, full 220)")
    ap.add_argument("--test", type=int, help="test samples (quick 22, full 55)")
    ap.add_argument("--calib", type=int, help="calibration samples (quick 16, full 32)")
    ap.add_argument("--lava-samples", type=int, help="test samples Lava runs (default 2)")
    ap.add_argument("--kind", default="tcsa", choices=KINDS,
                    help="network A's attention kind (default tcsa)")
    ap.add_argument("--res-kind", default="csa", choices=KINDS,
                    help="network B's attention kind (default csa, as Att_Res_SNN)")
    ap.add_argument("--mode", default="causal", choices=MODES,
                    help="attention mode (default causal; window is passed through to "
                    "the attention layers and the compiler)")
    ap.add_argument("--bn", action="store_true", help="BatchNorm after every conv")
    ap.add_argument("--networks", default="a,b", choices=("a", "b", "a,b"),
                    help="which networks (default a,b)")
    ap.add_argument("--lr", type=float, default=RECIPE["lr"],
                    help=f"Adam learning rate (default {RECIPE['lr']})")
    ap.add_argument("--surrogate", type=float, default=RECIPE["surrogate_scale"],
                    help="surrogate gradient slope (LIFLayer.surrogate_scale; default "
                    f"{RECIPE['surrogate_scale']}, the layer's own default is 10)")
    ap.add_argument("--out-rate", type=float, default=RECIPE["out_rate"],
                    help=f"output layer's start firing rate (default {RECIPE['out_rate']})")
    ap.add_argument("--reuse", metavar="DIR",
                    help="load the checkpoints an earlier run wrote to DIR (its --out) "
                    "instead of training, where a checkpoint's config and recorded "
                    "training settings equal this run's; the others are trained (said "
                    "on stderr, and in the JSON row)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "out" / "gestures"))
    ap.add_argument("--json", help="results JSON (default OUT/gesture_networks.json)")
    args = ap.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full"]
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(2)
    warnings.simplefilter("ignore", FidelityWarning)   # printed where they arise
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    data = gestures(n_train=args.train, n_test=args.test, steps=args.steps, seed=args.seed)
    print(f"mode: {'quick' if args.quick else 'full'}; T = {args.steps}; {args.train} train / "
          f"{args.test} test samples; {args.epochs} epochs; BatchNorm "
          f"{'on' if args.bn else 'off (--bn adds it)'}; attention mode {args.mode}; "
          f"network A widths {args.width_a}, B widths {args.width_b}", flush=True)
    nets = {"a": ("A gesture (authors' layout)", gesture_config, args.width_a, args.kind),
            "b": ("B residual (Att_Res_SNN style)", residual_config, args.width_b,
                  args.res_kind)}
    rows = []
    for key in args.networks.split(","):
        label, make, widths, kind = nets[key]
        for k in (None, kind):
            print(f"\n== {label}, {k or 'no attention'}", flush=True)
            config = make(widths, k, args.mode, args.bn, args.steps)
            model, extra = None, None
            if args.reuse:                  # a checkpoint trained by an earlier run
                path = Path(args.reuse) / f"{_stem(label, k)}.pt"
                model, extra, note = reusable(path, config, args)
                if model is None:
                    print(f"--reuse: not reused, training instead: {note}", file=sys.stderr,
                          flush=True)
                    print(f"not reused ({note}): training", flush=True)
                else:
                    print(f"not trained: loaded {path}{note}", flush=True)
                    secs, trained = 0.0, {"reused": str(path),
                                          "training": extra.get("training")}
            if model is None:
                model, secs, losses = train(config, data, args)
                print(f"trained in {secs:.1f} s; loss per epoch "
                      + " ".join(f"{v:.3f}" for v in losses), flush=True)
                trained = {"train_s": secs, "losses": losses, "training": training(args)}
            t0 = time.perf_counter()
            row = dict(evaluate(label, k, model, data, args, out, extra), **trained)
            row["total_s"] = secs + time.perf_counter() - t0
            rows.append(row)
    what = "quick mode (smoke sizes, not the networks of issue 12)" if args.quick \
        else "full mode"
    print(f"\n== {what}: loihi2, attention on the co-processor; firing rates per LIF layer "
          f"(float / compiled) on the {args.test} test samples")
    print(table(FIELDS, [table_row(r) for r in rows], "llrrlrrrrrrrll"))
    for r in rows:
        if r["compiled"]:
            print(f"{r['network']}, {r['attention']}: {r['verdict_line']}")
            print(f"{r['network']}, {r['attention']}: firing rate per layer (float / "
                  "compiled): " + ", ".join(f"{name} {_rate(v)}"
                                            for name, v in r["rates"].items()))
        times = ", ".join(f"{k[:-2]} {r[k]:.1f} s" for k in ("train_s", "compile_s",
                                                               "verify_s", "energy_s")
                          if k in r)
        print(f"{r['network']}, {r['attention']}: time {times}")
    total = time.perf_counter() - t_all
    print(f"total time {total:.0f} s")
    path = Path(args.json) if args.json else out / "gesture_networks.json"
    doc = {"mode": "quick" if args.quick else "full", "args": vars(args), "rows": rows,
           "total_s": total}
    path.write_text(json.dumps(doc, indent=1, default=list) + "\n")
    print(f"wrote {path}")
    ok = all(r["compiled"] and r["equivalent"] and r["faithful"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

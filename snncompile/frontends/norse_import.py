"""Import a norse model (`SequentialState` of Linear/Conv2d/Flatten and LIFCell,
LIFBoxCell or IAFCell, optionally ending in a LICell or LIBoxCell readout) into a float
`Graph`, through NIR.

norse 1.1.0 provides `norse.torch.to_nir` (norse/torch/utils/export_nir.py). We call the
same tracer (`nirtorch.extract_nir_graph`) with norse's own per-module translation, adding
`torch.nn.Flatten`, which norse 1.1.0 leaves out (its node comes back as None), and
Linear/Conv2d without bias (norse writes an Affine with zero bias for Linear and crashes
on a Conv2d without bias: `module.bias.detach()` on None), and LICell, which norse 1.1.0
cannot export (written as NIR CubaLI in norse's own convention: tau = dt / tau_inv, r = 1,
w_in = 1, as its LIFCell branch writes CubaLIF). Then
`import_nir(..., norse_quirks=True)` undoes what norse writes differently from the NIR
equations: tau stored as tau * dt (norse#411) and input current added with gain 1.

norse's LIFCell updates exactly in Loihi's order (i += x; v += dt/tau_mem (v_leak - v + i);
i decays), so an imported LIFCell network spikes like the norse model (see the tests).

    >>> graph = import_norse(model, torch.zeros(1, 784))
"""
from __future__ import annotations

import warnings
from functools import partial

from ..errors import BackendError, UnsupportedError, is_max_pool, max_pool_refused
from ..ir import Graph
from snncompile.formats.nir.read import import_nir

SUPPORTED_MODULES = ("Linear", "Conv2d", "Flatten", "LIFCell", "LIFBoxCell", "IAFCell",
                     "LICell", "LIBoxCell")


def import_norse(model, sample_input, dt: float = 1e-3) -> Graph:
    """Trace a norse model with one time step of `sample_input` (shape (batch, *in)) and
    return its float graph. Synapse biases (torch's default Linear and Conv2d have one)
    stay on the synapse when the next cell's current decays (LIFCell: compiled as an
    always-on bias axon), or become the cell's voltage bias where it has none (IAFCell)."""
    try:
        import nirtorch
        import norse.torch.utils.export_nir as norse_nir
    except ImportError as exc:
        raise BackendError(f"import_norse: norse is not installed ({exc})") from None
    _check_modules(model)
    mapper = partial(_module_to_nir, norse_fn=norse_nir._extract_norse_module, dt=dt)
    with warnings.catch_warnings():  # nirtorch 2.6 deprecates the tracer norse 1.1.0 uses
        warnings.simplefilter("ignore", DeprecationWarning)
        nirgraph = nirtorch.extract_nir_graph(model, mapper, sample_input, model_name="norse")
    graph = import_nir(nirgraph, dt=dt, norse_quirks=True)
    graph.meta.update(source=type(model).__name__, frontend="norse")
    return graph


def _module_to_nir(module, norse_fn, dt: float):
    import nir
    import numpy as np
    import torch

    if isinstance(module, torch.nn.Flatten):
        return nir.Flatten(input_type={"input": None}, start_dim=module.start_dim,
                           end_dim=module.end_dim)
    weight = module.weight.detach().cpu().numpy() if hasattr(module, "weight") else None
    if isinstance(module, torch.nn.Linear) and module.bias is None:
        return nir.Linear(weight=weight.astype(np.float32))
    if isinstance(module, torch.nn.Conv2d) and module.bias is None:  # norse 1.1.0 crashes
        if not isinstance(module.padding, tuple):
            raise UnsupportedError(f"norse Conv2d: padding '{module.padding}' is not "
                                   "supported; give it as integers")
        return nir.Conv2d(input_shape=None, weight=weight.astype(np.float32),
                          stride=module.stride, padding=module.padding,
                          dilation=module.dilation, groups=module.groups,
                          bias=np.zeros(weight.shape[0], np.float32))
    if type(module).__name__ == "LICell":   # norse 1.1.0's to_nir has no LICell branch
        p = module.p
        v_leak = np.asarray(p.v_leak.detach().cpu().numpy(), dtype=np.float32)
        return nir.CubaLI(tau_syn=dt / p.tau_syn_inv.detach().cpu().numpy(),
                          tau_mem=dt / p.tau_mem_inv.detach().cpu().numpy(),
                          r=np.ones_like(v_leak), v_leak=v_leak, w_in=np.ones_like(v_leak))
    return norse_fn(module, dt=dt)


def _check_modules(model) -> None:
    children = list(model.children()) or [model]
    for i, child in enumerate(children):
        kind = type(child).__name__
        if is_max_pool(kind):
            raise max_pool_refused(f"norse layer {i}", kind)
        if kind not in SUPPORTED_MODULES:
            raise UnsupportedError(f"norse layer {i}: {kind} is not supported; supported: "
                                   + ", ".join(SUPPORTED_MODULES))

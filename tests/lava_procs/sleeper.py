"""A Lava process whose model, in its first spike phase, sleeps for 10 minutes unless the
file `flag` exists (and creates it), the way a deadlocked runtime leaves a worker waiting;
later runs step normally and count their steps in `steps`. Import after
`snncompile.backends.lava.session.require_lava()`."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class Sleeper(AbstractProcess):
    def __init__(self, flag: str):
        super().__init__(flag=flag)
        self.steps = Var(shape=(1,), init=0)


@implements(proc=Sleeper, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class SleeperModel(PyLoihiProcessModel):
    steps: np.ndarray = LavaPyType(np.ndarray, int)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.flag = Path(proc_params["flag"])

    def run_spk(self):
        if not self.flag.exists():
            self.flag.touch()
            time.sleep(600)
        self.steps[0] += 1

"""A small, deterministic training loop for the package's SNN layers."""
from __future__ import annotations

import numpy as np
import torch

from .layers import SNN


def fit(model: SNN, x: np.ndarray, y: np.ndarray, epochs: int = 20, lr: float = 5e-3,
        batch_size: int = 64, seed: int = 0, progress: bool = True,
        rate_penalty: float = 0.0) -> list[float]:
    """Train on spike-count logits with cross-entropy. x: (N, T, *shape) integers/floats.

    The logits are output spike counts scaled by 1/T*8, so a class that fires every step
    has logit 8. `rate_penalty` adds the mean firing rate of every LIF layer to the loss.
    Returns the loss per epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    steps = x.shape[1]
    losses = []
    it = range(epochs)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = it = tqdm(it, desc="train", unit="epoch", leave=False, disable=None)
    model.train()
    for _ in it:
        perm = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = torch.as_tensor(perm[i:i + batch_size])
            out = model(xt[idx])
            logits = out.sum(1).reshape(len(idx), -1) * (8.0 / steps)
            loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            if rate_penalty:
                loss = loss + rate_penalty * out.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def accuracy(model: SNN, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32))
            pred = out.sum(1).reshape(out.shape[0], -1).argmax(1).numpy()
            correct += int((pred == y[i:i + batch_size]).sum())
    return correct / len(x)

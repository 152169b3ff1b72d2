"""The optimisation loop both trainers share: AdamW under a one-cycle schedule, one batch a step.

The trainers differ only in how a step's batch is drawn and scored, so each passes that as
``batch_loss``; the optimiser, schedule, step order and progress log are the same for both,
and a change to them reaches both networks at once. The loop draws no random numbers itself:
the trainer's seeded generators are consumed by ``batch_loss`` alone, in step order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch


def fit(
    net: torch.nn.Module,
    batch_loss: Callable[[], torch.Tensor],
    *,
    steps: int,
    lr: float,
    name: str,
    log: logging.Logger,
    log_every: int,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``net`` for ``steps`` steps of ``batch_loss()`` (peak learning rate ``lr``) and
    return every step's loss; ``net`` is left in eval mode. Progress goes to the trainer's own
    ``log`` under ``name``, every ``log_every`` steps."""
    net.train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses: list[float] = []
    start = time.monotonic()
    for step in range(steps):
        # The last step's gradients go before the forward pass: they never share memory with its activations.
        optimiser.zero_grad(set_to_none=True)
        loss = batch_loss()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if on_step:
            on_step(step, losses[-1])
        if step % log_every == 0:
            log.info("%s step %d/%d loss %.4f (%.0f s)", name, step, steps, losses[-1], time.monotonic() - start)
    net.eval()
    return losses

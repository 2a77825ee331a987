"""Data parallelism over the processes ``accelerate launch`` starts, one per device.

Every process holds the whole policy (its LoRA adapter trains; the base stays frozen) and
walks the same records in the same seeded order. Each global batch (``batch_size`` per
process) is cut into contiguous shards, one per process, and each process weights its
loss by its shard's share of the accumulation group. Before every optimiser step the
adapter's gradients are averaged over the processes, in one all-reduce of one flat
buffer: DDP's arithmetic, so the step is the mean over exactly the records the group
holds, what one process taking the whole global batch computes. (Not DDP's wrapper: the
recipes' log-probs run the backbone and the LM head apart, past a wrapped forward, and
an adapter's few megabytes gain nothing from overlapping the reduction with backward.)
The process group is accelerate's. Only the main process writes files.

Launched with ``--use_fsdp``, the policy's base is sharded over the processes instead of
held whole by each (``training.fsdp``); the batches, shards and weights stay as here.

Started without ``accelerate launch`` (one process), nothing here does anything, and the
recipes run exactly as they always have.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from codealign.settings.model import ModelConfig
from codealign.training import fsdp


@dataclass
class Ranks:
    """This process among its peers: ``world`` processes, this one ``rank``."""

    world: int = 1
    rank: int = 0
    accelerator: Any = None
    local_rank: int = 0
    sharded: bool = False  # FSDP: the policy's base sharded over the processes

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str:
        """Where this process's copy of the model lives."""
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def model_config(self, config: ModelConfig) -> ModelConfig:
        """``config`` as this process loads it: on its own device; sharded, on the CPU in
        the dtype its device would take (FSDP moves each process's shards there)."""
        if self.world == 1:
            return config
        if not self.sharded:
            return dataclasses.replace(config, device=self.device)
        from codealign.models.loading import resolve_dtype

        dtype = resolve_dtype(config, torch.device(self.device))
        names: dict[torch.dtype, Literal["float32", "bfloat16", "float16"]] = {
            torch.float32: "float32",
            torch.bfloat16: "bfloat16",
            torch.float16: "float16",
        }
        return dataclasses.replace(config, device="cpu", dtype=names[dtype])

    def shard(self, batch: Sequence[int]) -> list[int]:
        """This process's contiguous share of a global batch (it may be empty)."""
        per = math.ceil(len(batch) / self.world)
        return list(batch[self.rank * per : (self.rank + 1) * per])

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Every process's gradients replaced by their mean over the processes (those
        FSDP holds arrive averaged already, as shards)."""
        if self.world == 1:
            return
        from torch.distributed.tensor import DTensor

        grads = [p.grad for p in params if p.grad is not None and not isinstance(p, DTensor)]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order, on every process."""
        if self.world == 1:
            return [value]
        gathered: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the processes (for the step log)."""
        if self.world == 1 or not values:
            return values
        keys = sorted(values)
        device = torch.device(self.device)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist(), strict=True)}

    def wait(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()


@functools.cache
def current() -> Ranks:
    """The processes of this run: those of ``accelerate launch`` (torchrun's environment),
    or this one alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    return Ranks(
        accelerator.num_processes,
        accelerator.process_index,
        accelerator,
        accelerator.local_process_index,
        fsdp.requested(),
    )

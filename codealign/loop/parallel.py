"""``iterate`` under ``accelerate launch``: one process per device, one run directory.

Every process walks the same stage table and reads the same files; what each stage does
depends on what it needs:

- **sampling is data-parallel**: each process samples its share of the prompts (every
  world-th task) on its own device, and the groups are gathered to all of them;
- **execution, scoring and pairs run once**, on the main process's sandbox pool, while
  the others wait;
- **training is data-parallel** (``codealign.training.distributed``): every process
  trains on the same records, its shard of each global batch; under ``--use_fsdp`` the
  base is sharded over the processes (``codealign.training.fsdp``);
- **only the main process writes files** (each once, atomically), and every stage ends
  with a barrier, so every process sees the same finished files and resumes alike.

Sampling and execution do not overlap here (``sampling.overlap`` is taken as off): the
main process's pool runs after every shard is in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from codealign.errors import InputError
from codealign.loop.backends import Sampler
from codealign.settings.loop import RunConfig
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks import Task

if TYPE_CHECKING:
    from codealign.training.distributed import Ranks

#: Stages every process takes part in; the others run on the main process alone.
COLLECTIVE = frozenset({"sample", "train", "evaluate"})


def current_ranks() -> Ranks | None:
    """This process among those of ``accelerate launch``; None when it runs alone (and
    then torch is not even imported here)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from codealign.training.distributed import current

    return current()


def check_parallel_run(config: RunConfig, world: int) -> None:
    """Refuse what does not yet run data-parallel, rather than run it N times."""
    if world == 1:
        return
    from codealign.training import fsdp

    if fsdp.requested() and config.model.quantization != "none":
        raise InputError(
            f"--use_fsdp with model.quantization={config.model.quantization}: FSDP shards an "
            "unquantized base; launch 4-bit QLoRA without --use_fsdp (each process then "
            "holds the whole NF4 base)"
        )
    if config.iterate.rm_refresh_every:
        raise InputError(
            "iterate.rm_refresh_every under accelerate launch: the readability model's "
            "refresh trains in one process; run it without a launch"
        )
    if config.sampling.backend == "vllm":
        raise InputError(
            "sampling.backend=vllm under accelerate launch: give the engine the GPUs with "
            "sampling.tensor_parallel_size in one process instead"
        )


def sharded(sample: Sampler, ranks: Ranks) -> Sampler:
    """``sample``, each process taking every world-th task on its own device; every
    process gets every task's group back."""
    import torch.distributed

    def run(
        tasks: Sequence[Task], model: ModelConfig, sampling: SamplingConfig, progress: bool
    ) -> Iterator[list[dict[str, Any]]]:
        mine = list(tasks)[ranks.rank :: ranks.world]
        on_device = dataclasses.replace(model, device=ranks.device)
        groups = list(sample(mine, on_device, sampling, progress and ranks.main))
        gathered: list[Any] = [None] * ranks.world
        torch.distributed.all_gather_object(gathered, groups)
        return iter([group for part in gathered for group in part])

    return run

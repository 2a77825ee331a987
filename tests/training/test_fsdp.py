"""FSDP's pieces in one process: accelerate's settings read back, the norm clipped over
shards and whole tensors together (worked by hand), and a model sharded over a group of
one computing what it computed whole. Two processes: tests/training/test_distributed.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from codealign.errors import InputError
from codealign.training import fsdp
from codealign.training.steps import clip_gradients


@pytest.fixture()
def group() -> Iterator[None]:
    """A gloo process group of this process alone (FSDP and DTensors need one)."""
    import torch.distributed as dist

    store = dist.HashStore()
    dist.init_process_group("gloo", rank=0, world_size=1, store=store)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_accelerates_fsdp_settings_are_read_from_its_launch_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ACCELERATE_USE_FSDP", "FSDP_RESHARD_AFTER_FORWARD", "FSDP_OFFLOAD_PARAMS",
                 "FSDP_SHARDING_STRATEGY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert not fsdp.requested()
    assert fsdp.FsdpOptions.from_env() == fsdp.FsdpOptions(True, False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "true")
    assert fsdp.requested()
    assert fsdp.FsdpOptions.from_env() == fsdp.FsdpOptions(True, True)
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP")  # ZeRO-2: keep after forward
    assert fsdp.FsdpOptions.from_env().reshard_after_forward is False
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "FULL_SHARD")
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    assert fsdp.FsdpOptions.from_env().reshard_after_forward is False


def test_the_norm_is_clipped_over_shards_and_whole_tensors_together(group: None) -> None:
    """Gradients (3, 0) as a DTensor and (0, 4) plain: the total norm is 5, so a limit of
    1 scales both by 1/5 (torch's clip_grad_norm_ cannot mix the two kinds)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (1,))
    sharded = torch.nn.Parameter(distribute_tensor(torch.zeros(2), mesh, [Shard(0)]))
    sharded.grad = distribute_tensor(torch.tensor([3.0, 0.0]), mesh, [Shard(0)])
    whole = torch.nn.Parameter(torch.zeros(2))
    whole.grad = torch.tensor([0.0, 4.0])
    assert clip_gradients([sharded, whole], 1.0) == pytest.approx(5.0)
    assert isinstance(sharded.grad, DTensor)
    assert sharded.grad.full_tensor().tolist() == pytest.approx([0.6, 0.0], abs=1e-5)
    assert whole.grad.tolist() == pytest.approx([0.0, 0.8], abs=1e-5)
    # Under the limit nothing changes; plain tensors alone take torch's own clip (its
    # 1e-6 in the denominator is the only departure from the arithmetic).
    assert clip_gradients([sharded, whole], 10.0) == pytest.approx(1.0)
    assert whole.grad.tolist() == pytest.approx([0.0, 0.8], abs=1e-5)
    assert clip_gradients([whole], 0.4) == pytest.approx(0.8)
    assert whole.grad.tolist() == pytest.approx([0.0, 0.4], abs=1e-5)


def test_a_sharded_model_computes_what_it_computed_whole(
    group: None, small_model_dir: Path
) -> None:
    """Over a group of one, every weight becomes a DTensor (the layers' and the outer
    unit's), the log-probs and their gradients are those of the whole model, and the
    adapter gathered for saving is the adapter."""
    from torch.distributed.tensor import DTensor

    from codealign.settings.model import ModelConfig
    from codealign.training.adapters import load_policy
    from codealign.training.sequences import TokenSequence, collate, completion_outputs

    config = ModelConfig(name=str(small_model_dir), device="cpu", lora_dropout=0.0)
    batch = collate([TokenSequence((5, 6, 7), (8, 9)), TokenSequence((5,), (10, 11, 12))], 0, 32)

    def run(shard: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], object]:
        torch.manual_seed(0)
        model = load_policy(config)
        for name, p in model.named_parameters():  # LoRA's B starts at 0: make it count
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
        if shard:
            assert fsdp.shard(model, 1, fsdp.FsdpOptions()) == 2  # two decoder layers
            assert all(isinstance(p, DTensor) for p in model.parameters())
        out = completion_outputs(model, batch, entropy=True)
        out.logps.sum().backward()
        grads = {
            n: (p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad)
            for n, p in model.named_parameters()
            if p.grad is not None
        }
        return out.logps.detach(), grads, model

    whole_logps, whole_grads, whole = run(False)
    sharded_logps, sharded_grads, sharded = run(True)
    torch.testing.assert_close(sharded_logps, whole_logps)
    assert whole_grads.keys() == sharded_grads.keys() and whole_grads
    for name, grad in whole_grads.items():
        torch.testing.assert_close(sharded_grads[name], grad)
    assert fsdp.gathered_adapters(whole) is None
    gathered = fsdp.gathered_adapters(sharded)
    assert gathered is not None and gathered.keys() == {
        n
        for n, _ in whole.named_parameters()
        if "lora_" in n  # type: ignore[attr-defined]
    }
    assert fsdp.local_parameter_bytes(sharded) == fsdp.local_parameter_bytes(whole)


def test_a_model_without_layer_classes_cannot_be_sharded() -> None:
    with pytest.raises(InputError, match="names no decoder layer classes"):
        fsdp.layer_classes(torch.nn.Linear(2, 2))

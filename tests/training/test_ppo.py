"""The RL recipe on a 2-layer model: PPO, GRPO and RLOO on one base model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codealign.errors import InputError
from codealign.models.loading import load_model
from codealign.settings.ppo import PPOConfig
from codealign.settings.preference import PreferenceConfig
from codealign.training.adapters import load_policy_tokenizer, pad_id_of
from codealign.training.advantages import advantage_estimator, compute_rewards
from codealign.training.dpo import train_preference
from codealign.training.ppo import (
    STATE_FILE,
    VALUE_HEAD_FILE,
    RLSetup,
    collect_trajectory,
    encode_rollouts,
    load_actor_critic,
    rollout_stats,
    train_ppo,
    update_policy,
)
from codealign.training.sequences import (
    TokenSequence,
    collate,
    completion_hidden,
    completion_outputs,
)
from tests.training.test_dpo import CHOSEN, PROMPT, REJECTED, margin, model_config


def rollouts(groups: int = 2, per_group: int = 4) -> list[dict[str, object]]:
    """Half of every prompt's samples are right (reward 1), half wrong (0)."""
    return [
        {"task_id": f"t{g}", "prompt": PROMPT, "completion": c, "reward": r}
        for g in range(groups)
        for i in range(per_group)
        for c, r in [((CHOSEN, 1.0), (REJECTED, 0.0))[i % 2]]
    ]


@pytest.mark.parametrize("method", ["ppo", "grpo", "rloo"])
def test_every_method_learns_the_rewarded_completion(
    small_model_dir: Path, tmp_path: Path, method: str
) -> None:
    config = PPOConfig(lr=3e-3, epochs=4, minibatch_size=4, micro_batch_size=2, vf_coef=0.5)
    metrics = train_ppo(
        rollouts(), model_config(small_model_dir), config, tmp_path / "a", method=method,
        progress=False,
    )  # fmt: skip
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").open()]
    assert len(log) == metrics["steps"] == 8
    # Dropout is off and the old log-probs are the policy's own: the first ratio is 1.
    assert log[0]["clip_fraction"] == 0.0 and log[0]["approx_kl"] == pytest.approx(0, abs=1e-6)
    assert log[-1]["approx_kl"] > 0
    for key in ("reward_mean", "reward_std", "kl", "kl_coef", "entropy", "response_length"):
        assert key in log[0]
    assert metrics["reward_mean"] == 0.5 and metrics["zero_variance_groups"] == 0.0
    assert metrics["kl"] == pytest.approx(0, abs=1e-5)  # fresh LoRA = the reference
    assert margin(small_model_dir, tmp_path / "a") > margin(small_model_dir, None) + 0.5
    critic = method == "ppo"
    assert (tmp_path / "a" / VALUE_HEAD_FILE).exists() == critic
    assert ("value_loss" in log[0]) == critic and ("explained_variance" in log[0]) == critic


def test_each_phase_runs_alone(small_model_dir: Path) -> None:
    """Collect, rewards, advantages and update, called one by one on a fresh LoRA: the
    rollout policy is the reference (KL 0) and the critic starts at zero."""
    config = PPOConfig(lr=3e-3, epochs=1, minibatch_size=4, micro_batch_size=3)
    base = model_config(small_model_dir)
    tokenizer = load_policy_tokenizer(base)
    encoded = encode_rollouts(rollouts(), tokenizer, config.max_length)
    actor_critic = load_actor_critic(base, config, "ppo", pad_id_of(tokenizer))
    setup = RLSetup("ppo", 1.0, "base", 0.05, "reward", "k1")

    trajectory = collect_trajectory(actor_critic, encoded, setup, config)
    assert len(trajectory) == 8 and trajectory.groups.tolist() == [0] * 4 + [1] * 4
    assert trajectory.lengths == [len(r.sequence.completion_ids) for r in encoded]
    assert trajectory.scores.tolist() == [1.0, 0.0] * 4
    for old, ref, value, n in zip(
        trajectory.old_logps, trajectory.ref_logps, trajectory.values, trajectory.lengths,
        strict=True,
    ):  # fmt: skip
        assert len(old) == len(ref) == len(value) == n
        assert torch.allclose(old, ref, atol=1e-6) and not value.any()

    rewards = compute_rewards(trajectory, setup.kl_coef, "reward", "k1")
    assert float(rewards.kl.abs().max()) < 1e-5
    advantages = advantage_estimator("gae")(trajectory, rewards, config)
    assert [len(a) for a in advantages.advantages] == trajectory.lengths
    stats = rollout_stats(trajectory, rewards, advantages, setup.kl_coef)
    assert stats.reward_mean == 0.5 and stats.explained_variance_rollout is not None

    log = update_policy(actor_critic, trajectory, advantages, stats, setup, config)
    assert [row["step"] for row in log] == [1, 2]
    assert log[0]["clip_fraction"] == 0.0 and "value_loss" in log[0]
    assert float(actor_critic.value_head.weight.detach().abs().sum()) > 0  # the critic moved


def lora_weights(adapter: Path) -> dict[str, torch.Tensor]:
    return load_file(str(adapter / "adapter_model.safetensors"))


def test_the_loss_is_a_token_mean_whatever_the_micro_batches(
    small_model_dir: Path, tmp_path: Path
) -> None:
    """Accumulating 1, 2 or 4 rollouts per forward gives the same update."""
    trained = []
    for micro in (1, 4):
        config = PPOConfig(lr=1e-3, epochs=1, minibatch_size=4, micro_batch_size=micro)
        train_ppo(
            rollouts(), model_config(small_model_dir), config, tmp_path / str(micro),
            progress=False,
        )  # fmt: skip
        trained.append(lora_weights(tmp_path / str(micro)))
    for name, weight in trained[0].items():
        assert torch.allclose(weight, trained[1][name], atol=1e-6), name


def test_groups_without_signal_change_nothing(small_model_dir: Path, tmp_path: Path) -> None:
    """All samples of every prompt scored alike: GRPO's advantages are all 0 and the
    policy equals the reference, so the fresh LoRA's B matrices stay exactly 0."""
    records = [dict(r, reward=1.0) for r in rollouts()]
    config = PPOConfig(lr=1e-2, epochs=2, minibatch_size=4)
    metrics = train_ppo(
        records, model_config(small_model_dir), config, tmp_path / "a", method="grpo",
        progress=False,
    )  # fmt: skip
    assert metrics["zero_variance_groups"] == 1.0 and metrics["reward_std"] == 0.0
    b = [w for name, w in lora_weights(tmp_path / "a").items() if "lora_B" in name]
    assert b and all(bool((w == 0).all()) for w in b)


@pytest.mark.parametrize("value_model", ["shared", "adapter"])
def test_a_second_round_continues_the_critic_and_the_kl_controller(
    small_model_dir: Path, tmp_path: Path, value_model: str
) -> None:
    first = PPOConfig(lr=3e-3, epochs=3, minibatch_size=4, vf_coef=1.0, value_model=value_model)  # type: ignore[arg-type]
    base = model_config(small_model_dir)
    round1 = train_ppo(rollouts(), base, first, tmp_path / "r1", progress=False)
    assert json.loads((tmp_path / "r1" / STATE_FILE).read_text())["kl_coef"] == first.kl_coef
    assert (tmp_path / "r1" / "value" / "adapter_config.json").exists() == (
        value_model == "adapter"
    )
    head = load_file(str(tmp_path / "r1" / VALUE_HEAD_FILE))
    assert float(head["weight"].abs().sum()) > 0  # the critic learnt something
    assert round1["kl"] == pytest.approx(0, abs=1e-5)

    # Round 2 starts from round 1's policy; the reference is still the bare base, so the
    # rollouts (the completion that policy learnt to prefer) now have a KL, and a target
    # below it makes the controller raise β.
    preferred = [r for r in rollouts() if r["reward"] == 1.0]
    second = PPOConfig(
        lr=3e-3, epochs=1, minibatch_size=4, value_model=value_model,  # type: ignore[arg-type]
        kl_target=1e-4, kl_horizon=8,
    )  # fmt: skip
    round2 = train_ppo(
        preferred, model_config(small_model_dir, adapter=str(tmp_path / "r1")), second,
        tmp_path / "r2", progress=False,
    )  # fmt: skip
    assert round2["kl"] > 0.01
    assert round2["kl_coef"] == first.kl_coef  # carried over from round 1
    # error clipped to +0.2, n / H = 4 / 8: β' = β (1 + 0.2 · 0.5)
    assert round2["kl_coef_next"] == pytest.approx(first.kl_coef * 1.1)
    # The critic was loaded, not started again from zero: on the same rollouts its first
    # loss is lower than a fresh critic's.
    fresh = tmp_path / "r1-fresh-critic"
    shutil.copytree(tmp_path / "r1", fresh)
    (fresh / VALUE_HEAD_FILE).unlink()
    shutil.rmtree(fresh / "value", ignore_errors=True)
    restarted = train_ppo(
        preferred, model_config(small_model_dir, adapter=str(fresh)), second,
        tmp_path / "r2-fresh", progress=False,
    )  # fmt: skip
    assert round2["value_loss_first"] < restarted["value_loss_first"]
    # The sampler loads the policy alone, whatever else the folder holds.
    model = load_model(model_config(small_model_dir, adapter=str(tmp_path / "r2")))
    assert list(model.peft_config) == ["default"]


def test_qlora_policy_learns_through_the_rl_recipe(small_model_dir: Path, tmp_path: Path) -> None:
    config = PPOConfig(lr=3e-3, epochs=4, minibatch_size=4, vf_coef=0.5)
    quantized = model_config(small_model_dir, quantization="4bit")
    train_ppo(rollouts(), quantized, config, tmp_path / "a", progress=False)
    assert margin(small_model_dir, tmp_path / "a") > margin(small_model_dir, None) + 0.5


def test_bad_rollouts_and_settings_are_named(small_model_dir: Path, tmp_path: Path) -> None:
    base, config = model_config(small_model_dir), PPOConfig()
    bad = rollouts()
    del bad[3]["reward"]
    with pytest.raises(InputError, match=r"rollout 3 \(task t0\): no reward"):
        train_ppo(bad, base, config, tmp_path / "a", progress=False)
    with pytest.raises(InputError, match="temperature must be > 0"):
        train_ppo(rollouts(), base, config, tmp_path / "a", temperature=0.0, progress=False)
    with pytest.raises(ValueError, match="must be frozen"):
        train_ppo(rollouts(), base, config, tmp_path / "a", reference="start", progress=False)
    with pytest.raises(InputError, match="trains on rollouts"):
        train_preference([], base, PreferenceConfig(), tmp_path / "b", method="ppo")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_both_head_paths_agree_on_log_probs_entropy_and_hidden_states(
    small_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blockwise through a plain head, or the model's own logits: the same per-token
    log-probs (at a sampling temperature), entropies and hidden states for the critic."""
    model = load_model(model_config(small_model_dir))
    seqs = [TokenSequence((5, 6, 7), (11, 12)), TokenSequence((5,), (13, 14, 15))]
    batch = collate(seqs, pad_id=0, max_length=64)
    results = []
    with torch.no_grad():
        for plain in (True, False):
            if not plain:
                monkeypatch.setattr("codealign.training.sequences._plain_head", lambda m: None)
            out = completion_outputs(model, batch, temperature=0.7, entropy=True)
            results.append((out, completion_hidden(model, batch)))
    (fused, fused_hidden), (own, own_hidden) = results
    assert fused.entropy is not None and own.entropy is not None
    assert torch.allclose(fused.logps, own.logps, atol=1e-5)
    assert torch.allclose(fused.entropy, own.entropy, atol=1e-5)
    assert bool((fused.entropy[batch.label_mask.bool()] > 0).all())
    assert torch.allclose(fused.hidden, own.hidden, atol=1e-6)
    assert torch.allclose(fused_hidden, own_hidden, atol=1e-6)
    assert torch.allclose(fused_hidden, fused.hidden, atol=1e-6)
    # Off the completion tokens everything is 0.
    assert fused.logps[0, 0] == 0 and fused.entropy[0, 0] == 0

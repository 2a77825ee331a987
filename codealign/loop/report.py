"""The report of an iterate run: report.json, report.md and report.png, rebuilt from the
run directory's files after every round (so it always matches them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from codealign.jsonl import atomic_writer, write_json
from codealign.loop.layout import (
    REPORTED_TRAIN_KEYS,
    PreferenceSummary,
    RoundPaths,
    RunLayout,
    read_json,
)

SIGNALS = ("execution", "lint", "types", "readability", "security")


def round_row(paths: RoundPaths, r: int, ks: Sequence[int]) -> dict[str, Any] | None:
    """One round's figures, or None before it has finished (its evaluation, or its
    training in a round that ``iterate.eval_every`` does not evaluate)."""
    metrics = paths.eval_metrics()
    train = paths.train_metrics()
    if metrics is None and (r == 0 or train is None):
        return None
    row: dict[str, Any] = {"round": r}
    for k in ks:
        row[f"pass@{k}"] = metrics.get(f"pass@{k}") if metrics else None
    row["eval_mean_pass_rate"] = metrics.get("mean_pass_rate") if metrics else None
    if metrics and "answers" in metrics:
        row["eval_answers"] = metrics["answers"]["rates"]
    summary = paths.summary()
    if summary is not None:
        means = summary["signals"].get("signals", {})
        row["signals"] = {s: means[s]["mean"] for s in SIGNALS if s in means}
        if "pairs" in summary:
            row["pairs"] = cast(PreferenceSummary, summary)["pairs"]
        else:  # rollouts for PPO/GRPO/RLOO
            row["rollouts"] = summary["records"]
            row["zero_variance_pass_groups"] = summary.get("zero_variance_pass_groups")
        row["train_records"] = summary["records"]
        row["prompts"] = summary["prompts"]
        row["prompts_skipped"] = summary["prompts_skipped"]
        row["skip_reasons"] = summary["skip_reasons"]
        row["monitor"] = summary["monitor"]
    if train is not None:
        row["train"] = {k: train[k] for k in REPORTED_TRAIN_KEYS if k in train}  # type: ignore[literal-required]
    refresh = read_json(paths.refresh)
    if refresh is not None:  # iterate.rm_refresh_every: the readability model changed here
        row["readability_refresh"] = refresh
    row["seconds"] = paths.times_taken()
    return row


def refresh_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The readability model's refreshes: the round each changed it, what it trained on,
    and its accuracy on the held-out human labels before and after."""
    refreshed = [row for row in rows if "readability_refresh" in row]
    if not refreshed:
        return []
    lines = ["", "| refresh round | policy pairs | human pairs | held-out human accuracy before "
             "| after |", "|---|---|---|---|---|"]  # fmt: skip
    for row in refreshed:
        info = row["readability_refresh"]
        lines.append(
            f"| {row['round']} | {info['policy_pairs']} | {info['human_pairs']} | "
            f"{_fmt(info['human_heldout_accuracy_before'])} | "
            f"{_fmt(info['human_heldout_accuracy_after'])} |"
        )
    lines += ["", "The readability model was refreshed in these rounds, before they were "
              "scored: trained on from the one before on the policy's own correct programs "
              "(and their degraded twins) and the developers' labels."]  # fmt: skip
    return lines


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _is_rl(rows: Sequence[dict[str, Any]]) -> bool:
    return any("rollouts" in row for row in rows)


def markdown(rows: Sequence[dict[str, Any]], ks: Sequence[int]) -> str:
    rl = _is_rl(rows)
    lines = ["# codealign iterate report", ""]
    head = ["round", *(f"pass@{k}" for k in ks)]
    if rl:
        head += ["mean reward", "no-signal groups", "mean pass rate", "reward tests"]
        head += ["held-back tests", "KL", "β", "clip frac.", "value EV", "entropy", "minutes"]
    else:
        head += ["pairs", "skipped prompts", "mean pass rate", "reward tests", "held-back tests"]
        head += ["loss", "reward acc.", "chosen logp", "minutes"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        mon = row.get("monitor", {})
        train = row.get("train", {})
        cells = [str(row["round"]), *(_fmt(row.get(f"pass@{k}")) for k in ks)]
        if rl:
            cells += [
                _fmt(train.get("reward_mean")),
                _fmt(train.get("zero_variance_groups"), 2),
                _fmt(row.get("signals", {}).get("execution")),
                _fmt(mon.get("reward_tests_pass_rate")),
                _fmt(mon.get("heldback_tests_pass_rate")),
                _fmt(train.get("kl")),
                _fmt(train.get("kl_coef"), 4),
                _fmt(train.get("clip_fraction_last")),
                _fmt(train.get("explained_variance_last")),
                _fmt(train.get("entropy")),
            ]
        else:
            cells += [
                _fmt(row.get("pairs")),
                _fmt(row.get("prompts_skipped")),
                _fmt(row.get("signals", {}).get("execution")),
                _fmt(mon.get("reward_tests_pass_rate")),
                _fmt(mon.get("heldback_tests_pass_rate")),
                _fmt(train.get("loss_last")),
                _fmt(train.get("reward_accuracy")),
                _fmt(train.get("chosen_logp_per_token_last")),
            ]
        cells.append(_fmt(sum(row["seconds"].values()) / 60, 1))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Round 0 is the model before training. pass@k is measured on the held-out tasks; the "
        "other columns describe the round's training samples. *Reward tests* and *held-back "
        "tests* are the mean pass rates of those samples on the tests the reward saw and on "
        "the tests it never saw: a widening gap is the sign of reward hacking.",
        "",
        (
            "*No-signal groups*: the share of prompts whose samples all scored the same (no "
            "group-relative signal). *KL* is the rollout policy's KL from the reference per "
            "sequence (nats), *β* its coefficient; *clip frac.* the share of tokens the "
            "clipped objective held back in the last updates; *value EV* the critic's "
            "explained variance (PPO)."
            if rl
            else "A falling *chosen logp* (per token) is the sign of a preference loss "
            "pushing both sides down."
        ),
        *answer_lines(rows, ks),
        *refresh_lines(rows),
        "",
        "![per-round metrics](report.png)",
        "",
    ]
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], ks: Sequence[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [row["round"] for row in rows]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    for k in ks:
        evaluated = [row for row in rows if row.get(f"pass@{k}") is not None]
        ax.plot(
            [row["round"] for row in evaluated],
            [row[f"pass@{k}"] for row in evaluated],
            marker="o",
            label=f"pass@{k}",
        )
    ax.set(title="held-out pass@k", xlabel="round", ylim=(0, 1.05))
    ax.legend()
    ax = axes[0][1]
    trained = [row for row in rows if "signals" in row]
    for signal in SIGNALS:
        values = [row["signals"].get(signal) for row in trained]
        if any(v is not None for v in values):
            ax.plot([row["round"] for row in trained], values, marker="o", label=signal)
    mon = [row for row in trained if "reward_tests_pass_rate" in row.get("monitor", {})]
    if mon:
        ax.plot(
            [row["round"] for row in mon],
            [row["monitor"]["heldback_tests_pass_rate"] for row in mon],
            marker="x",
            linestyle="--",
            label="held-back tests",
        )
    ax.set(title="training samples: mean signal", xlabel="round", ylim=(0, 1.05))
    if trained:
        ax.legend(fontsize="small")
    ax = axes[1][0]
    if _is_rl(rows):
        rl_rows = [row for row in trained if "reward_mean" in row.get("train", {})]
        x = [row["round"] for row in rl_rows]
        ax.plot(x, [row["train"]["reward_mean"] for row in rl_rows], marker="o", label="reward")
        ax.plot(x, [row["train"].get("kl") for row in rl_rows], marker="s", label="KL (nats)")
        ax.set(title="rollouts: mean reward and KL to the reference", xlabel="round")
        if rl_rows:
            ax.legend(fontsize="small")
    else:
        ax.bar([row["round"] for row in trained], [row.get("pairs", 0) for row in trained])
        ax.set(title="preference pairs made", xlabel="round")
    ax = axes[1][1]
    stages = sorted({s for row in rows for s in row["seconds"]})
    bottom = [0.0] * len(rows)
    for stage in stages:
        values = [row["seconds"].get(stage, 0.0) / 60 for row in rows]
        ax.bar(rounds, values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(title="minutes per stage", xlabel="round")
    if stages:
        ax.legend(fontsize="small")
    for row_axes in axes:
        for a in row_axes:
            a.set_xticks(rounds)
    fig.tight_layout()
    with atomic_writer(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def _counts(metrics: dict[str, Any] | None) -> dict[str, tuple[int, int]] | None:
    per_task = (metrics or {}).get("per_task")
    if not per_task:
        return None
    return {task: (e["n"], e["c"]) for task, e in per_task.items()}


def paired_changes(layout: RunLayout, rows: Sequence[dict[str, Any]], ks: Sequence[int]) -> None:
    """Each evaluated round's change in pass@k from round 0, paired by task, with its
    bootstrap 95% interval (``row["change"]["pass@k"]``)."""
    from dataclasses import asdict

    from codealign.evaluation.paired import paired_bootstrap

    before = _counts(layout.round(0).eval_metrics())
    if before is None:
        return
    for row in rows[1:]:
        after = _counts(layout.round(row["round"]).eval_metrics())
        if after is None:
            continue
        row["change"] = {}
        for k in ks:
            try:
                row["change"][f"pass@{k}"] = asdict(paired_bootstrap(before, after, k))
            except ValueError:  # fewer than k samples per task: pass@k is not computable
                continue


def answer_lines(rows: Sequence[dict[str, Any]], ks: Sequence[int]) -> list[str]:
    """The held-out answers round by round: the change from round 0 with its interval, and
    what the answers looked like (model samples only)."""
    if not any("eval_answers" in row or "change" in row for row in rows):
        return []
    head = [*(f"Δ pass@{k} vs round 0 [95% CI]" for k in ks), "syntax errors", "wrong name"]
    head += ["cut at the token limit", "no code"]
    lines = ["", "| round | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["round"])]
        for k in ks:
            c = row.get("change", {}).get(f"pass@{k}")
            cells.append(f"{c['change']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]" if c else "–")
        rates = row.get("eval_answers", {})
        for key in ("syntax_error", "wrong_name", "cut_at_limit", "no_code"):
            cells.append(_fmt(rates.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Held-out answers: the change of pass@k from round 0 is paired by task (a "
              "percentile bootstrap over tasks, 10,000 resamples); the other columns are "
              "shares of the held-out samples."]  # fmt: skip
    return lines


def write_report(layout: RunLayout, ks: Sequence[int], rounds: int) -> dict[str, Any]:
    """Rebuild report.json, report.md and report.png from the rounds finished so far."""
    rows = []
    for r in range(rounds + 1):
        row = round_row(layout.round(r), r, ks)
        if row is None:
            break
        rows.append(row)
    paired_changes(layout, rows, ks)
    report = {"rounds": rows}
    write_json(layout.report_json, report)
    with atomic_writer(layout.report_md) as fh:
        fh.write(markdown(rows, ks))
    if rows:
        plot(rows, ks, layout.report_png)
    return report

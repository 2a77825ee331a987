"""The hostile corpus (tests/data/hostile_corpus.py) through codealign, class by class.

Every program in the corpus is wrong unless its trick works, so none may pass; nothing
may leak (no host canary read or changed, no host listener reached, no state left for a
later job, no judge stalled, swollen or crashed); and honest samples must still pass on
the same pool afterwards. One batch per class, two workers, on Docker and on bubblewrap.
``python benchmarks/bench_integrity.py`` runs the same corpus through other harnesses.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codealign.execution import ExecutionConfig
from codealign.settings.execution import DEFAULT_IMAGE
from tests.data.hostile_corpus import (
    CLASSES,
    AttackClass,
    ClassReport,
    HostContext,
    cases_of,
    run_codealign_class,
)


@pytest.fixture(scope="module")
def host() -> Iterator[HostContext]:
    with HostContext() as context:
        yield context


def _holds(report: ClassReport) -> None:
    assert report.runnable, f"no case of {report.attack} ran"
    false_passes = [o.case.name for o in report.false_passes]
    assert not false_passes, report.describe()
    pool = [leak for leak in report.class_leaks if "honest samples failed" in leak]
    leaks = [o.case.name for o in report.leaking] + [
        leak for leak in report.class_leaks if leak not in pool
    ]
    assert not leaks, report.describe()
    assert not pool, report.describe()  # an honest sample still passes after the class


def _config(sandbox: str, image: str = DEFAULT_IMAGE) -> ExecutionConfig:
    return ExecutionConfig(
        sandbox="docker" if sandbox == "docker" else "bwrap",
        image=image,
        workers=2,
        timeout_s=3.0,
        memory_mb=512,
    )


@pytest.mark.docker
@pytest.mark.parametrize("attack", CLASSES)
def test_docker_holds_against_the_corpus(
    attack: AttackClass, docker_image: str, host: HostContext
) -> None:
    config = _config("docker", docker_image)
    _holds(run_codealign_class(config, attack, cases_of(attack), host, "docker"))


@pytest.mark.sandbox
@pytest.mark.parametrize("attack", CLASSES)
def test_bwrap_holds_against_the_corpus(attack: AttackClass, host: HostContext) -> None:
    from tests.conftest import _require_bwrap

    _require_bwrap()
    _holds(run_codealign_class(_config("bwrap"), attack, cases_of(attack), host, "bwrap"))


def test_every_case_is_a_typed_record_of_its_class() -> None:
    for attack in CLASSES:
        cases = cases_of(attack)
        assert cases, attack
        for case in cases:
            assert case.attack == attack
            assert (case.plant is not None) == (attack == "persistence"), case.name

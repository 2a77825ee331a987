"""Rows from the ``datasets`` library: saved datasets, Parquet and Arrow files, hub names.

``datasets`` is imported only here and only when needed: importing it takes a second.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codealign.errors import InputError

HF_PREFIX = "hf:"


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` was written by ``save_to_disk`` (of a Dataset or a DatasetDict)."""
    saved = (path / "dataset_info.json").is_file() and (path / "state.json").is_file()
    return saved or (path / "dataset_dict.json").is_file()


def dataset_rows(source: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_index, row)`` from ``source``: a saved dataset folder, a ``.parquet`` or
    ``.arrow`` file, or ``hf:<name-or-path>[:<split>]``.

    Null fields are dropped, since Arrow fills every struct field a row lacks with null.
    """
    for index, row in enumerate(_open(source)):
        yield index, _drop_nulls(row)


def _open(source: str | Path) -> Any:
    try:
        if isinstance(source, str):
            return _load_hub(source.removeprefix(HF_PREFIX))
        if source.is_dir():
            import datasets

            return _pick_split(datasets.load_from_disk(str(source)), source)
        if source.suffix == ".parquet":
            # pyarrow directly: Dataset.from_parquet would copy the file into the HF cache.
            return importlib.import_module("pyarrow.parquet").read_table(source).to_pylist()
        import datasets

        return datasets.Dataset.from_file(str(source))
    except InputError:
        raise
    except Exception as exc:  # datasets and pyarrow raise many unrelated exception types
        raise InputError(f"cannot load dataset: {exc}", path=source) from None


def _load_hub(spec: str) -> Any:
    import datasets

    name, _, split = spec.partition(":")
    if not name:
        raise InputError("expected hf:<name-or-path>[:<split>]", path=HF_PREFIX + spec)
    if split:
        return datasets.load_dataset(name, split=split)
    return _pick_split(datasets.load_dataset(name), HF_PREFIX + spec)


def _pick_split(loaded: Any, where: str | Path) -> Any:
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    if "test" in loaded:
        return loaded["test"]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    splits = ", ".join(sorted(loaded))
    raise InputError(f"dataset has several splits and none is 'test'; splits: {splits}", path=where)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value

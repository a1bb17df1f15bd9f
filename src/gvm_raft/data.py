"""Prompt datasets and prompt rendering.

Datasets: JSON lines (.jsonl / .json), parquet, a directory saved with ``datasets``
``save_to_disk``, or a hub dataset ``owner/name[:split]`` where the hub is reachable, loaded
through the ``datasets`` library. Rows need a problem and an answer
column (names configurable); answers of any type are normalised to strings
(numbers -> their shortest form, lists -> comma-joined); rows without a usable problem or answer
are skipped with a count and a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from gvm_raft.errors import ConfigError, DataError, LogFileError
from gvm_raft.fileio import read_jsonl
from gvm_raft.rewards.boxed import last_boxed
from gvm_raft.seeds import Stream, stream_rng


@dataclass(frozen=True)
class PromptRow:
    """One training or test prompt: its row id (position in the dataset), the problem (a text,
    or a conversation: a list of chat messages, as TRL's conversational datasets hold), the
    reference answer (None when the dataset has none: answer_column empty) and every column."""

    row_id: int
    problem: str | list[dict[str, str]]
    answer: str | None
    columns: dict[str, Any]

    @property
    def conversational(self) -> bool:
        return isinstance(self.problem, list)


def load_prompts(
    path: str | Path, prompt_column: str = "problem", answer_column: str = "answer"
) -> list[PromptRow]:
    """Rows of a dataset file or directory; ``row_id`` is the row's position in the file."""
    import datasets

    source = Path(path)
    datasets.disable_progress_bars()
    if not source.exists():
        dataset = _load_from_hub(str(path))
    elif source.is_dir():
        try:
            dataset = datasets.load_from_disk(str(source))
        except FileNotFoundError as err:
            raise DataError(
                f"dataset {source} is a directory but not one saved by datasets' save_to_disk "
                f"({err}); point at a .jsonl, .json or .parquet file, or at a saved dataset"
            ) from None
    else:
        suffix = source.suffix.lower()
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(suffix)
        if kind is None:
            raise DataError(f"dataset {source}: use .jsonl, .json, .parquet or a saved dataset dir")
        if _blank(source):
            raise DataError(f"dataset {source} is empty: it holds no rows")
        try:
            dataset = datasets.load_dataset(kind, data_files=str(source), split="train")
        except Exception as err:
            raise DataError(_unreadable(source, err)) from err
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[next(iter(dataset))]
    return rows_of(dataset, prompt_column, answer_column, str(source))


def rows_of(
    dataset: Any, prompt_column: str, answer_column: str, source: str = "the dataset"
) -> list[PromptRow]:
    """The usable rows of a ``datasets.Dataset`` (or ``IterableDataset``, a list of dicts, a
    pandas DataFrame or a dict of equal-length columns): a non-empty problem (text or chat
    messages) and, unless answer_column is empty, an answer. A row missing either column counts
    as unusable."""
    records, names = _records(dataset, source)
    for column in (prompt_column, answer_column):
        if column and column not in names:
            raise DataError(
                f"dataset {source} has no column {column!r} (columns: {', '.join(names)}); "
                "set prompt_column / answer_column"
            )
    rows, skipped = [], 0
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(
                f"dataset {source}: row {index} is of type {type(record).__name__}, not a dict of "
                "columns; give rows as dicts, e.g. {'problem': ..., 'answer': ...}"
            )
        problem = record.get(prompt_column)
        answer = normalise_answer(record.get(answer_column)) if answer_column else None
        if not _usable_problem(problem) or (answer_column and answer is None):
            skipped += 1
            continue
        rows.append(PromptRow(index, problem, answer, dict(record)))
    if skipped:
        warnings.warn(
            f"dataset {source}: skipped {skipped} rows without a usable problem or answer",
            stacklevel=2,
        )
    if not rows:
        raise DataError(f"dataset {source} has no usable rows")
    return rows


def group_name(column: str, row: PromptRow) -> str | None:
    """A row's group of ``column``, "<column>=<value>" (None where the row has no value)."""
    value = row.columns.get(column)
    return None if value is None else f"{column}={value}"


def check_group_column(column: str | None, rows: Sequence[PromptRow], source: str) -> None:
    """eval_group_column must name a column every row of an evaluation set fills."""
    if column is None:
        return
    lacking = [row.row_id for row in rows if row.columns.get(column) is None]
    if lacking:
        present = sorted(set().union(*(row.columns for row in rows)))
        raise DataError(
            f"eval_group_column={column!r}: {len(lacking)} of the {len(rows)} rows of {source} "
            f"have no value in such a column (first: row {lacking[0]}; columns: "
            f"{', '.join(present)}): name a column every row fills, or leave eval_group_column "
            "unset"
        )


def _records(dataset: Any, source: str) -> tuple[Any, list[str]]:
    """The dataset's rows (an iterable of dicts) and its column names, for every form
    ``rows_of`` takes; anything else is refused by name."""
    import datasets

    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = ", ".join(dataset)
        raise DataError(
            f"dataset {source} is a DatasetDict (splits: {splits}): pass one split, e.g. "
            f"dataset[{next(iter(dataset), 'train')!r}]"
        )
    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        return dataset, list(dataset.column_names or [])
    if type(dataset).__name__ == "DataFrame" and hasattr(dataset, "to_dict"):
        return dataset.to_dict("records"), [str(c) for c in dataset.columns]
    if isinstance(dataset, dict):
        lengths = {len(v) for v in dataset.values() if isinstance(v, (list, tuple))}
        if len(lengths) != 1 or not all(isinstance(v, (list, tuple)) for v in dataset.values()):
            raise DataError(
                f"dataset {source} is a dict but not of equal-length column lists; pass a "
                "datasets.Dataset, a list of row dicts or {'problem': [...], 'answer': [...]}"
            )
        names = list(dataset)
        return [
            dict(zip(names, row, strict=True)) for row in zip(*dataset.values(), strict=True)
        ], names
    if isinstance(dataset, (list, tuple)):
        if not dataset:
            raise DataError(f"dataset {source} is empty: it holds no rows")
        if not isinstance(dataset[0], dict):
            raise DataError(
                f"dataset {source}: row 0 is of type {type(dataset[0]).__name__}, not a dict of "
                "columns; give rows as dicts, e.g. {'problem': ..., 'answer': ...}"
            )
        return dataset, list(dataset[0])
    raise DataError(
        f"dataset {source} is of type {type(dataset).__name__}: pass a datasets.Dataset, a list of "
        "row dicts, a pandas DataFrame or a dict of columns"
    )


def _usable_problem(problem: Any) -> bool:
    """A non-blank text, or a non-empty list of chat messages (dicts with role and content)."""
    if isinstance(problem, str):
        return bool(problem.strip())
    return (
        isinstance(problem, list)
        and bool(problem)
        and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in problem)
    )


def _blank(source: Path, chunk: int = 1 << 16) -> bool:
    """Whether a file holds only whitespace, reading no further than its first other byte."""
    with source.open("rb") as handle:
        while block := handle.read(chunk):
            if block.strip():
                return False
    return True


def _unreadable(source: Path, err: Exception) -> str:
    """Why a dataset file could not be read, with the first bad line of a JSON lines file."""
    if source.suffix.lower() == ".jsonl":
        try:
            read_jsonl(source)
        except LogFileError as bad:
            return f"dataset {bad}"
    return f"dataset {source} cannot be read: {err}"


def _load_from_hub(name: str) -> Any:
    """``owner/name`` or ``owner/name:split`` (default split: train) from the Hugging Face hub."""
    import datasets

    repo, _, split = name.partition(":")
    owner = repo.split("/")[0]
    looks_local = repo.count("/") != 1 or Path(owner).is_dir() or Path(repo).suffix != ""
    if looks_local or repo.startswith((".", "~")):
        raise FileNotFoundError(f"dataset {name} does not exist")
    try:
        return datasets.load_dataset(repo, split=split or "train")
    except Exception as err:
        raise FileNotFoundError(
            f"dataset {name}: no such file, and loading it from the Hugging Face hub failed "
            f"({type(err).__name__}: {str(err)[:200]})"
        ) from None


def normalise_answer(answer: Any) -> str | None:
    """A reference answer as a string, or None when unusable (missing, empty, NaN).

    Numbers take their shortest form (27.0 -> "27"), lists are comma-joined, and a text holding
    ``\\boxed{}`` (a worked solution, as in Minerva Math) is reduced to its last boxed content.
    """
    if answer is None or isinstance(answer, bool):
        return None
    if isinstance(answer, float):
        if not math.isfinite(answer):
            return None
        return str(int(answer)) if answer.is_integer() else repr(answer)
    if isinstance(answer, int):
        return str(answer)
    if isinstance(answer, (list, tuple)):
        parts = [normalise_answer(a) for a in answer]
        parts = [p for p in parts if p is not None]
        return ", ".join(parts) if parts else None
    text = str(answer).strip()
    if "\\boxed" in text:
        text = (last_boxed(text) or "").strip()
    return text or None


def render_prompt(
    tokenizer: PreTrainedTokenizerBase,
    problem: str | list[dict[str, str]],
    template: str = "auto",
    system_prompt: str = "",
) -> str:
    """The text the model is conditioned on.

    template: "chat" (the tokenizer's chat template, system prompt appended to the user turn as
    in the RLHFlow implementation), "plain" ("{problem}\\n"), "auto" (chat when the tokenizer
    has one), or a format string containing {problem}.
    """
    if isinstance(problem, list):  # a conversation: the chat template, whatever the template
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("a conversational dataset needs a tokenizer with a chat template")
        return tokenizer.apply_chat_template(problem, tokenize=False, add_generation_prompt=True)
    if template == "auto":
        template = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    if template == "plain":
        return f"{problem}\n"
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "prompt_template=chat but the tokenizer has no chat template; use plain"
            )
        content = f"{problem} {system_prompt}".strip()
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    if "{problem}" not in template:
        raise ConfigError(
            "prompt_template must be auto, chat, plain or a format string with {problem}"
        )
    return template.replace("{problem}", problem)


def prompt_batch(num_rows: int, per_iteration: int, seed: int, iteration: int) -> list[int]:
    """Positions of an iteration's prompts: consecutive slices of the stream of per-epoch seeded
    permutations, so every epoch visits each prompt once. A batch that spans an epoch boundary
    never holds a prompt twice (see ``epoch_order``)."""
    start = (iteration - 1) * per_iteration
    positions: list[int] = []
    while len(positions) < per_iteration:
        epoch, offset = divmod(start + len(positions), num_rows)
        order = epoch_order(num_rows, per_iteration, seed, epoch)
        take = min(per_iteration - len(positions), num_rows - offset)
        positions.extend(order[offset : offset + take].tolist())
    return positions


def epoch_order(num_rows: int, per_iteration: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded permutation of ``epoch``, except that the boundary batch (the one spanning
    the end of the previous epoch) takes from this epoch only prompts it does not already hold:
    the first such prompts in the permutation's order, the others keeping theirs after them.
    Needs num_rows >= per_iteration; when num_rows is a multiple of it no batch spans epochs
    and every order is the plain seeded permutation."""
    order = stream_rng(seed, Stream.PROMPT_ORDER, 0).permutation(num_rows)
    for current in range(1, epoch + 1):
        tail = (current * num_rows) % per_iteration  # the boundary batch's share of epoch-1
        closing = order[num_rows - tail :]
        order = stream_rng(seed, Stream.PROMPT_ORDER, current).permutation(num_rows)
        if tail:
            head = np.zeros(num_rows, dtype=bool)
            head[np.flatnonzero(~np.isin(order, closing))[: per_iteration - tail]] = True
            order = np.concatenate([order[head], order[~head]])
    return order

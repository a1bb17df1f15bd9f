"""Crash-safe file writes: write to a temporary sibling, then rename over the target."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gvm_raft.errors import LogFileError, UserError


def check_output_file(path: str | os.PathLike[str], option: str = "--out") -> None:
    """Refuse, before any work, an output path that cannot become a file: an existing directory,
    or one whose parent is a file or cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{option} {path} is a directory: give a file name inside it")
    parent = next((p for p in [target.parent, *target.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {parent} is not writable")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the whole new one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one
    (a full disk or a kill mid-write leaves the old file and no temporary one)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: str | os.PathLike[str], drop_torn_tail: bool = False) -> list[dict]:
    """The JSON objects of a JSON lines file, one per non-blank line ([] if it does not exist).

    A line that is not JSON is an error naming the file and line; with drop_torn_tail a bad
    last line (what a kill or a full disk leaves in a file appended to) is dropped with a
    warning instead.
    """
    source = Path(path)
    if not source.exists():
        return []
    lines = [(n, line) for n, line in enumerate(source.read_text().splitlines(), 1) if line.strip()]
    rows = []
    for position, (number, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if drop_torn_tail and position == len(lines) - 1:
                warnings.warn(f"{source}:{number}: dropping a torn last line", stacklevel=2)
                break
            raise LogFileError(f"{source}:{number}: not a JSON line ({err.msg})") from None
        if not isinstance(row, dict):
            raise LogFileError(f"{source}:{number}: a line must hold a JSON object")
        rows.append(row)
    return rows


def write_jsonl(path: str | os.PathLike[str], rows: list[dict]) -> None:
    """Write one JSON object per line, atomically."""
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def append_jsonl(path: str | os.PathLike[str], rows: list[dict]) -> None:
    """Append one JSON object per line (a log; a line torn by a kill is what read_jsonl's
    drop_torn_tail drops)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))


@contextmanager
def building_dir(target: Path) -> Iterator[Path]:
    """Yield an empty sibling directory to build ``target`` in; when the block succeeds it
    replaces ``target`` by a rename, when it fails it is removed and ``target`` is untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""File helpers: every file the package writes is written atomically (temp file + rename), with
the permissions a plain ``open(path, "w")`` would give (0666 less the process umask)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it: set, then restore
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # the message names the file asked for, not the temporary one
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_table(path, frame, index: bool = False) -> None:
    """A pandas DataFrame to ``path`` atomically: Parquet (pyarrow; row groups of 1M rows, so a
    table sorted by date is read by date ranges without the rest) for a .parquet / .pq suffix,
    CSV otherwise."""
    import io

    if Path(path).suffix.lower() in (".parquet", ".pq"):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=index, engine="pyarrow", row_group_size=1 << 20)
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_text(path, frame.to_csv(index=index))


def atomic_write_dataset(path, frame, partition: str) -> None:
    """A pandas DataFrame as a Parquet dataset directory partitioned by the column ``partition``
    (hive layout: ``<partition>=<value>/*.parquet``; pandas and pyarrow read the directory back
    as one table), written into a temporary sibling and renamed into place, so a reader never
    sees part of it. ``path`` must not exist, or be an empty directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{path} exists and is not an empty directory: give a new directory for the dataset")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        pq.write_to_dataset(pa.Table.from_pandas(frame, preserve_index=False), tmp, partition_cols=[partition],
                            basename_template="part-{i}.parquet")
        for d in (tmp, *(p for p in tmp.rglob("*") if p.is_dir())):
            os.chmod(d, 0o777 & ~_umask())  # mkdtemp creates 0700
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output(path, kind: str, option: str = "--out") -> Path:
    """Refuse an output path of the wrong kind ('file' or 'dir') before any work starts: a
    directory given for a file, a file for a directory, a parent that is not a directory, or a
    place this process cannot write."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise ValueError(f"{option} {path} is a directory; give the path of the file to write")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ValueError(f"{option} {path} exists and is not a directory")
    parent = (p if kind == "dir" else p.parent).resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: {parent} is not a directory")
    target = p if p.exists() and kind == "file" else parent
    if not os.access(target, os.W_OK):
        raise ValueError(f"{option} {path}: {target} is not writable")
    return p

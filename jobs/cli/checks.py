"""Argument checks shared by every CLI stage: bad input -> one line on stderr, exit code 2, before any work.

A stage validates everything it can *before* starting Ray, reading large inputs or creating output
directories. Each check raises ``UsageError("--arg VALUE: reason")``; ``cli`` wraps a stage's ``main`` so
that a ``UsageError`` (and argparse's own errors) become exactly one line ``<prog>: error: <message>`` on
stderr and exit status 2, never a traceback::

    from jobs.cli import checks

    @checks.cli("extract")
    def main(argv=None) -> int:
        a = build_parser().parse_args(argv)
        checks.positive_int("--workers", a.workers, allow_none=True)
        out = checks.out_dir("--out", a.out)
        ...

Checks never create anything: ``out_dir`` only proves the directory could be created and written.
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import socket
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ADDRESS_TIMEOUT_S = 10.0  # TCP connect to a Ray cluster's GCS; the whole check stays well under 30 s
EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad command-line input; the message names the argument or path and the reason (one line)."""


def one_line(text: object) -> str:
    """First non-empty line of a message (multi-line library errors become one line)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else type(text).__name__


# ------------------------------------------------------------------------------------------------ wrapper
class _Parser(argparse.ArgumentParser):
    """argparse whose errors raise UsageError (so `cli` prints them as one line) instead of printing usage."""

    def error(self, message: str):  # noqa: D401  (argparse API)
        raise UsageError(message)


def parser(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """An ``argparse.ArgumentParser`` whose errors are UsageErrors (one line, exit 2 under ``cli``)."""
    return _Parser(*args, **kwargs)


def cli(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a stage's ``main``: UsageError -> ``<prog>: error: <msg>`` on stderr and return 2."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args: Any, **kwargs: Any) -> int:
            try:
                return main(*args, **kwargs)
            except UsageError as e:
                print(f"{prog}: error: {one_line(e)}", file=sys.stderr, flush=True)
                return EXIT_USAGE

        return run

    return wrap


# ------------------------------------------------------------------------------------------------- values
def positive_int(arg: str, value: int | None, *, allow_none: bool = False, minimum: int = 1) -> int | None:
    """``value >= minimum`` (1 by default); None only if ``allow_none``."""
    if value is None and allow_none:
        return None
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{arg} {value}: must be an integer >= {minimum}")
    return value


def number_in(arg: str, value: float | None, lo: float, hi: float, *, allow_none: bool = False) -> float | None:
    """``lo <= value <= hi``."""
    if value is None and allow_none:
        return None
    if value is None or not lo <= float(value) <= hi:
        raise UsageError(f"{arg} {value}: must be between {lo} and {hi}")
    return float(value)


def key_values(items: Iterable[str], arg: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> {k: v}, each value a Python literal where it reads as one (``3``, ``0.5``, ``True``),
    else the string itself; UsageError naming ``arg`` for an item without ``=``."""
    out = {}
    for it in items:
        if "=" not in it:
            raise UsageError(f"{arg} {it}: expected key=value")
        k, v = (x.strip() for x in it.split("=", 1))
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def number_list(arg: str, text: str, kind: type = int) -> list:
    """A comma list of ``kind`` numbers ("0,1,2"); UsageError naming ``arg`` for an item that is not one. The
    caller bounds the values (``positive_int``, ``number_in``)."""
    try:
        return [kind(t) for t in text.split(",")]
    except ValueError:
        what = "integers, e.g. 0,1,2" if kind is int else f"{kind.__name__}s"
        raise UsageError(f"{arg} {text}: expected a comma list of {what}") from None


def torch_device(arg: str, name: str):
    """The torch device ``name`` a benchmark runs on: cpu, or cuda[:N] with that GPU present (torch is
    imported here, not by the stages that never need it)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"{arg} {name}: expected cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{arg} {name}: CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{arg} {name}: no such GPU ({torch.cuda.device_count()} visible)")
    return device


def size(arg: str, hw: Sequence[int], *, minimum: int = 8, even: bool = False) -> tuple[int, int]:
    """(H, W) with both >= ``minimum`` (and even if asked)."""
    h, w = (int(v) for v in hw)
    if h < minimum or w < minimum:
        raise UsageError(f"{arg} {h} {w}: height and width must be >= {minimum}")
    if even and (h % 2 or w % 2):
        raise UsageError(f"{arg} {h} {w}: height and width must be even")
    return h, w


def choice(arg: str, value: str, known: Iterable[str]) -> str:
    known = sorted(known)
    if value not in known:
        raise UsageError(f"{arg} {value}: unknown; choose from {', '.join(known)}")
    return value


# -------------------------------------------------------------------------------------------------- paths
def existing_file(arg: str, path: str | os.PathLike | None) -> Path:
    if path is None or str(path) == "":
        raise UsageError(f"{arg}: a file is required")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{arg} {p}: {'is a directory, not a file' if p.is_dir() else 'no such file'}")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{arg} {p}: not readable")
    return p


def existing_dir(arg: str, path: str | os.PathLike | None, *, writable: bool = False) -> Path:
    """A directory that exists and is readable (and writable if asked: a scratch folder to create files in)."""
    if path is None or str(path) == "":
        raise UsageError(f"{arg}: a directory is required")
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{arg} {p}: {'is a file, not a directory' if p.exists() else 'no such directory'}")
    if not os.access(p, os.R_OK | os.X_OK):
        raise UsageError(f"{arg} {p}: not readable")
    if writable and not os.access(p, os.W_OK):
        raise UsageError(f"{arg} {p}: is not writable")
    return p


def out_dir(arg: str, path: str | os.PathLike | None) -> Path:
    """An output directory that exists and is writable, or could be created (nothing is created here)."""
    if path is None or str(path) == "":
        raise UsageError(f"{arg}: an output directory is required")
    p = Path(path)
    _creatable_dir(arg, p, p)
    return p


def out_file(arg: str, path: str | os.PathLike | None) -> Path:
    """A file to write (a report): not a directory, not read-only, and its folder exists and is writable or
    could be created (nothing is created here)."""
    if path is None or str(path) == "":
        raise UsageError(f"{arg}: an output file is required")
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{arg} {p}: is a directory, not a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{arg} {p}: is not writable")
    _creatable_dir(arg, p, p.parent)
    return p


def _creatable_dir(arg: str, p: Path, folder: Path) -> None:
    """UsageError naming ``arg`` and ``p`` unless ``folder`` (``p`` or its parent) is a writable directory or
    could be created: its first existing ancestor decides."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            raise UsageError(f"{arg} {p}: {probe} is a dangling symbolic link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == p else f"cannot be created: {probe} is a file"
        raise UsageError(f"{arg} {p}: {what}, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == p else f"cannot be created: {probe} is not writable"
        raise UsageError(f"{arg} {p}: {what}")


def version(arg: str, path: str | os.PathLike | None, kind: str | None = None) -> Path:
    """A dataset version (dir, file in it, LATEST file or root with LATEST) of ``kind``; returns its dir."""
    from manifests.versioning import read_meta, resolve

    if path is None or str(path) == "":
        raise UsageError(f"{arg}: a dataset version is required")
    try:
        vdir = resolve(path)
        meta = read_meta(vdir)
    except (OSError, ValueError, TypeError, KeyError) as e:  # missing, unreadable or malformed version.json
        raise UsageError(f"{arg} {path}: {_strip_path(one_line(e), path)}") from None
    if kind is not None and meta.kind != kind:
        raise UsageError(f"{arg} {path}: a {meta.kind!r} version, expected a {kind!r} version")
    return vdir


def shard_split(arg: str, split: str, vdir: Path) -> str:
    """``split`` is a split name of the shard dataset version ``vdir`` (keys of shards.parquet ``splits``)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(Path(vdir) / "shards.parquet", columns=["splits"]).column("splits").to_pylist()
    known = sorted({k for row in rows for k, _ in (row.items() if isinstance(row, dict) else row)})
    return split_in(arg, split, known, vdir)


def split_in(arg: str, split: str, known: Iterable[str], where: object) -> str:
    known = sorted(known)
    if split not in known:
        raise UsageError(f"{arg} {split}: not a split of {where} (splits: {', '.join(known) or 'none'})")
    return split


def _strip_path(msg: str, path: object) -> str:
    prefix = f"{path}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg


def nfc(text: str) -> str:
    """Unicode NFC form (video ids are stored NFC; lookups normalise the query the same way)."""
    return unicodedata.normalize("NFC", text)


# ---------------------------------------------------------------------------------------------------- Ray
def ray_address(arg: str, address: str | None, timeout: float = ADDRESS_TIMEOUT_S) -> str | None:
    """An existing cluster's GCS address ``host:port`` must accept a TCP connection within ``timeout``.

    ``None``, ``""``, ``"local"`` and ``"auto"`` pass unchanged (Ray resolves them); ``ray://host:port``
    (Ray Client) is checked the same way. Raises UsageError naming the address when it does not answer.
    """
    if address in (None, "", "local", "auto"):
        return address or None
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{arg} {address}: expected HOST:PORT of the cluster's head (e.g. 10.0.0.1:6379)")
    host = host.strip("[]")
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except TimeoutError:
        raise UsageError(
            f"{arg} {address}: no answer within {timeout:.0f} s (is `ray start --head` running "
            f"there, and the port open?)"
        ) from None
    except OSError as e:
        raise UsageError(
            f"{arg} {address}: cannot connect ({e.strerror or e}) after "
            f"{time.monotonic() - t0:.1f} s; start the head with `ray start --head --port={port}`"
        ) from None
    return address


def positive_seconds(text: str) -> float:
    """argparse ``type=`` for a finite number of seconds > 0 (``--decode-timeout``)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return v

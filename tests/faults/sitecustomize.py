"""Test-only fault injection for decoding: no production code knows of it.

When ``ASYM3D_TEST_DECODE_FAULTS`` holds ``NAME=KIND[,NAME=KIND...]``, a decoder backend of ``pipeline.decode``
(``STREAM_BACKENDS``) called on a file named NAME first crashes the process (KIND ``segv``:
sends itself SIGSEGV; ``abort``: abort()) or hangs it (``hang``: sleeps an hour), like a native decoder on a
poison file. The variable is read at each call (a contained child takes its caller's environment).

How it gets into a process: with this folder on PYTHONPATH, Python imports this file at start-up as
``sitecustomize`` in every process, so a CLI run (tests/test_poison.py) has it in the driver, its Ray workers
(they inherit the environment) and pipeline.contain's fork server, whose children are forks of it. A test can
also import it as ``faults.sitecustomize`` (tests/ is on sys.path), e.g. as a ``Contained`` preload module.
"""

import functools
import importlib.abc
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

FAULT_ENV = "ASYM3D_TEST_DECODE_FAULTS"


def fault(path) -> None:
    for item in os.environ.get(FAULT_ENV, "").split(","):
        name, _, kind = item.strip().partition("=")
        if name and name == Path(path).name:
            if kind == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            elif kind == "abort":
                os.abort()
            elif kind == "hang":
                time.sleep(3600)


def faulty(backend):
    @functools.wraps(backend)
    def call(path, *args, **kwargs):
        fault(path)
        return backend(path, *args, **kwargs)

    return call


def install(decode) -> None:
    for name, backend in decode.STREAM_BACKENDS.items():
        decode.STREAM_BACKENDS[name] = faulty(backend)


class _OnImport(importlib.abc.MetaPathFinder):
    """Installs the faults when pipeline.decode is imported (later, if ever: this runs at start-up)."""

    def find_spec(self, name, path=None, target=None):
        if name != "pipeline.decode":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_install(module):
            exec_module(module)
            install(module)

        spec.loader.exec_module = exec_and_install
        return spec


if "pipeline.decode" in sys.modules:
    install(sys.modules["pipeline.decode"])
else:
    sys.meta_path.insert(0, _OnImport())

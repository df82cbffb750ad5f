"""The flow benchmarks' flags are checked like every CLI flag: one line naming the flag, exit 2, before any
frame is loaded or solved and with no report written."""

from __future__ import annotations

import pytest

from jobs.bench import flow, flowperiodic, flowtranslate

CASES = [
    (flow, ["--sizes", "171x128,1x1"], "--sizes 1x1: width and height must be >= 16"),
    (flow, ["--sizes", "171"], "--sizes 171: expected WxH"),
    (flow, ["--presets", "accurate,nope"], "--presets nope: unknown"),
    (
        flow,
        ["--ablation", "--rows", "boundary, wmedian"],
        "--rows: ablation row 'boundary, wmedian': wmedian: expected",
    ),
    (flow, ["--ablation", "--rows", "boundary, bogus=3"], "--rows: unknown flow parameter 'bogus'"),
    (flow, ["--ablation", "--rows", "boundary, coarse_scale=1.5"], "--rows: coarse_scale must be 0 (off) or in (0, 1)"),
    (flow, ["--textures", "0"], "--textures 0: must be an integer >= 1"),
    (flow, ["--threads", "0"], "--threads 0: must be an integer >= 1"),
    (flow, ["--batches", "8,x"], "--batches 8,x: expected a comma list of integers"),
    (flow, ["--batches", "8,0"], "--batches 0: must be an integer >= 1"),
    (flow, ["--device", "tpu"], "--device tpu: expected cpu, cuda or cuda:N"),
    (flow, ["--device", "cuda"], "--device cuda: CUDA is not available"),  # the suite has no GPU
    (flowtranslate, ["--size", "abc"], "--size abc: expected WxH"),
    (flowtranslate, ["--seeds", "0"], "--seeds 0: must be an integer >= 1"),
    (flowtranslate, ["--variants", "nope"], "--variants: preset must be one of"),
    (flowperiodic, ["--size", "12x9"], "--size 12x9: width and height must be >= 16"),
    (flowperiodic, ["--periods", "2"], "--periods 2: must be between 4 and 128"),
    (flowperiodic, ["--amps", "0.5,x"], "--amps 0.5,x: expected a comma list of floats"),
    (flowperiodic, ["--variants", ";"], "--variants: no rows given"),
    (flowperiodic, ["--variants", "accurate, lighting='log'"], "--variants: lighting must be one of"),
]


@pytest.mark.parametrize("module, argv, expect", CASES, ids=[f"{m.__name__.split('.')[-1]}:{a}" for m, a, _ in CASES])
def test_bad_flag_one_line_exit_2_no_report(module, argv, expect, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(flow, "source_frames", lambda *a, **k: pytest.fail("frames loaded before the flags"))
    monkeypatch.setattr(flowtranslate, "source_frames", lambda *a, **k: pytest.fail("frames loaded first"))
    out = tmp_path / "report.md"
    assert module.main(["--out", str(out), *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench.") and expect in lines[0], lines
    assert list(tmp_path.iterdir()) == []

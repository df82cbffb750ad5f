"""The model family: paper parameter counts (Tables 1-3), every registered model on a tiny clip, overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import models
from models.layers import LAYERS, AsymConv3d, MicroNet, make_layer
from models.summary import conv_totals, group_totals, profile_model
from models.summary import main as summary_main

EXPECT = json.loads((Path(__file__).parent / "expect" / "model_params.json").read_text())
TINY = dict(width=0.125, frames=8, size=32)  # a few ms per model on a CPU


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convs on a shared 2-core machine: 2 threads under load are ~10x slower than 1 (docs/models.md)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def n_params(name: str, **kw) -> int:
    with torch.device("meta"):  # no memory, no init cost, even for c3d-b8
        return sum(p.numel() for p in models.build_model(name, **kw).parameters())


def test_registry_names():
    names = models.list_models()
    assert set(EXPECT["paper_table2_M"]) <= set(names)
    assert {"b5-M1", "b5-M2", "b5-M3", "b5-M4", "asym3dcnn", "asym3dcnn-m2", "asym3dcnn-m3"} <= set(names)
    assert len(names) == len(set(names)) == 23
    with pytest.raises(KeyError):
        models.build_model("c3d-b9")
    with pytest.raises(TypeError, match="allowed"):
        models.build_model("c3d-b5", depth=3)


@pytest.mark.parametrize("name", models.list_models())
def test_golden_param_count(name):
    assert n_params(name) == EXPECT["params"][name]


@pytest.mark.parametrize("table", ["2", "3"])
def test_paper_param_counts(table):
    paper, tol = EXPECT[f"paper_table{table}_M"], EXPECT[f"table{table}_tol_M"]
    got = {name: n_params(name) / 1e6 for name in paper}
    off = {name: round(got[name] - paper[name], 4) for name in paper if abs(got[name] - paper[name]) > tol}
    assert not off, f"Table {table} counts off by more than {tol}M: {off}"


def test_table1_c3d_b8_rows():
    rows = profile_model("c3d-b8")
    groups, tol = group_totals(rows), EXPECT["table1_tol"]
    for g in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        (params_m, macs_b), (p, m) = EXPECT["paper_table1"][g], groups[g]
        assert abs(p / 1e6 - params_m) <= tol["params_M"], (g, p)
        assert abs(m / 1e9 - macs_b) <= tol["macs_B"], (g, m)
        assert [p, m] == EXPECT["c3d_b8_groups_exact"][g]
    assert abs(conv_totals(rows)[0] / 1e6 - EXPECT["paper_table1"]["total_params_M"]) <= tol["params_M"]


@pytest.mark.parametrize("name", models.list_models())
def test_every_model_tiny_clip(name):
    torch.manual_seed(0)
    model = models.build_model(name, num_classes=7, **TINY)
    x = torch.randn(2, 3, 8, 32, 32, requires_grad=True)  # (B, C, T, H, W)
    y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert model.features(x).shape == (2, model.feature_dim)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 7
    assert model.spec.name == name and model.spec.width == 0.125


def test_features_feed_classifier():
    model = models.build_model("b5-M2", num_classes=5, **TINY).eval()
    x = torch.randn(3, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model.classifier(model.features(x)))
    assert model.feature_dim == round(2048 * 0.125)
    # the classifier is the last nn.Linear
    assert [m for m in model.modules() if isinstance(m, nn.Linear)][-1] is model.classifier


def test_overrides_width_size_frames_channels():
    full = models.build_model("c3d-b5", num_classes=10, width=0.25, frames=16, size=112, dropout=0.1)
    assert full.body.conv1.conv.out_channels == 16 and full.body.conv5.conv.out_channels == 64
    assert full.head.fc6.in_features == 64 * 1 * 4 * 4 and full.head.fc6.out_features == 512
    assert full.drop.p == 0.1
    small = models.build_model("c3d-b5", width=0.25, frames=8, size=56, in_channels=2)
    assert small.body.conv1.conv.in_channels == 2
    assert small.out_shape == (64, 1, 2, 2) and small.head.fc6.in_features == 64 * 4
    # short clips stop pooling time at T=1 instead of failing
    assert models.build_model("c3d-b8", frames=4, size=16, width=0.125).out_shape == (64, 1, 1, 1)
    y = small(torch.randn(1, 2, 8, 56, 56))
    assert y.shape == (1, 101)


def test_batch_norm_adds_bn_layers():
    plain = models.build_model("asym3dcnn", **TINY)
    bn = models.build_model("asym3dcnn", batch_norm=True, **TINY)
    convs = [m for m in bn.modules() if isinstance(m, nn.Conv3d)]
    bns = [m for m in bn.modules() if isinstance(m, nn.BatchNorm3d)]
    assert not any(isinstance(m, nn.BatchNorm3d) for m in plain.modules())
    assert len(bns) == len(convs) > 0 and all(c.bias is None for c in convs)
    bn.train()(torch.randn(2, 3, 8, 32, 32)).sum().backward()


def test_reset_classifier():
    model = models.build_model("b8-asyConv5", num_classes=101, **TINY)
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier")}
    model.reset_classifier(51)
    assert model.classifier.out_features == 51 and model.spec.num_classes == 51
    assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, 51)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in body.items())


def test_spec_round_trip():
    spec = models.get_spec("asym3dcnn", num_classes=51, width=0.5, batch_norm=True)
    d = models.spec_to_dict(spec)
    json.dumps(d)
    back = models.spec_from_dict(json.loads(json.dumps(d)))
    assert back == spec
    assert replace(spec, width=1.0) == models.get_spec("asym3dcnn", num_classes=51, batch_norm=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.width = 2.0  # frozen


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_layer_kinds_keep_shape(kind):
    x = torch.randn(1, 8, 4, 9, 9)
    assert make_layer(kind, 8, 16)(x).shape == (1, 16, 4, 9, 9)


@pytest.mark.parametrize(
    "kind, support", [("conv3", (3, 3, 3)), ("asym3", (3, 3, 3)), ("conv3x2", (5, 5, 5)), ("asym5", (3, 5, 5))]
)
def test_receptive_field(kind, support):
    """An output voxel sees exactly a t x k x k input window (Fig. 2): gradient support of the centre."""
    torch.manual_seed(0)
    layer = make_layer(kind, 2, 4)
    for m in layer.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.uniform_(m.weight, 0.1, 1.0)  # positive: ReLUs stay open
    x = torch.rand(1, 2, 9, 11, 11, requires_grad=True)
    layer(x)[0, :, 4, 5, 5].sum().backward()
    nz = x.grad[0].abs().sum(0).nonzero()
    assert tuple((nz.max(0).values - nz.min(0).values + 1).tolist()) == support


def test_asym_params_formula():
    """C*k*N + N*k*N + N*t*N weights (eq. 3-6 with D = M = N) plus one bias per conv."""
    c, n = 6, 10
    layer = AsymConv3d(c, n, k=5, t=3)
    assert sum(p.numel() for p in layer.parameters()) == c * 5 * n + n * 5 * n + n * 3 * n + 3 * n


@pytest.mark.parametrize("cout", [8, 32, 256, 1024])
def test_micronet_widths(cout):
    m = MicroNet(16, cout, left="asym5", middle="conv3")
    assert m(torch.randn(1, 16, 2, 5, 5)).shape == (1, cout, 2, 5, 5)


def test_summary_cli(capsys):
    summary_main(["c3d-b8"])
    out = capsys.readouterr().out
    assert "78,409,573" in out and "conv3b.conv" in out
    summary_main(["b5-M3", "--width", "0.125", "--frames", "8", "--size", "32", "--batch-norm"])
    assert "BatchNorm3d" in capsys.readouterr().out


def test_bench_models_smoke(tmp_path):
    from jobs.bench.models import main as bench_main
    from jobs.bench.models import resolve_models

    assert resolve_models("b5-asyConv3,table4")[:2] == ["c3d-b5", "b5-asyConv3"]
    assert len(resolve_models("table2")) == 16
    out = tmp_path / "models.md"
    bench_main(
        [
            "--device",
            "cpu",
            "--models",
            "b5-M3",
            "--width",
            "0.0625",
            "--frames",
            "4",
            "--size",
            "16",
            "--batch",
            "1",
            "--iters",
            "1",
            "--rounds",
            "2",
            "--warmup",
            "0",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    assert "| c3d-b5 |" in text and "| b5-M3 | c3d-b5 |" in text
    assert "`python -m jobs.bench.models --device cpu --models b5-M3 --width 0.0625 --frames 4" in text  # not pytest's

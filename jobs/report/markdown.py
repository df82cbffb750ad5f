"""The Markdown report of a demo run: report.md (linking the PNGs written beside it) and summary.json."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(summary: Mapping) -> str:
    """report.md text from the demo summary (see jobs.demo.summarize for its keys)."""
    s = summary
    lines = [f"# Demo report — {s['title']}", "", s["description"], ""]
    lines += [
        "## Results (test split, video level)",
        "",
        "| model | input | top-1 | mean class acc. | test videos |",
        "|---|---|---|---|---|",
    ]
    for row in s["results"]:
        lines.append(
            f"| {row['model']} | {row['stream']} | {_pct(row['top1'])} | "
            f"{_pct(row.get('mean_class_accuracy'))} | {row['n']} |"
        )
    if s.get("validation"):
        lines += [
            "",
            "## Validation (held-out training group; selects best.pt)",
            "",
            "| input | best validation top-1 | epoch | validation videos |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k.upper()} | {_pct(v['best_video_top1'])} | {v['best_epoch']} | {v['n_val']} |"
            for k, v in s["validation"].items()
        ]
    lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s["timings"].items()]
    if s.get("load_average"):
        lines += [
            "",
            f"Load average (1/5/15 min) at start {s['load_average']['start']}, at end {s['load_average']['end']}.",
        ]
    lines += ["", "## Settings", "", "```json", json.dumps(s["settings"], indent=2), "```", ""]
    for title, rel in s["figures"].items():
        lines += [f"## {title}", "", f"![{title}]({rel})", ""]
    lines += ["## Commands run", "", "```"] + [" ".join(c) for c in s["commands"]] + ["```", ""]
    return "\n".join(lines)


def write_report(out_dir: str | Path, summary: Mapping) -> Path:
    """Write report.md and summary.json into out_dir (figures are expected there already)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    path = out_dir / "report.md"
    path.write_text(markdown(summary))
    return path

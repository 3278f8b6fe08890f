"""``optkit bench bilevel`` end to end on tiny selections (outputs, summary rows, bad flags)."""

import json

import pytest

import optkit.cli as cli
from optkit.bench import bilevel as bench


def _go(*argv):
    return cli.main(["bench", "bilevel", *map(str, argv)])


def test_core_selection_writes_records_summary_and_plots(tmp_path):
    rc = _go("--suite", "core", "--problems", "V1,V2,R1", "--seeds", "0-1", "--time-limit", "3",
             "--n", "12", "--out", tmp_path, "--plot", "--quiet")
    assert rc == 0
    recs = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert {(r["problem"], r["method"]) for r in recs} >= {("V1", "barrier"), ("V1", "kkt"), ("V2", "barrier"),
                                                          ("R1", "kkt")}
    assert sum(r["problem"] == "R1" for r in recs) == 4  # 2 seeds x 2 methods
    v1 = [r for r in recs if r["problem"] == "V1"]
    for r in v1:
        assert r["status"] == "CONVERGED" and abs(r["F_resolved"] - 138.25757575757575) < 1e-6
        assert r["checkpoint_time"][0] == 0.0 and len(r["checkpoint_F"]) == len(r["checkpoint_time"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "--seeds 2" in summary["command"]
    assert any(row["problem"] == "R1" and "stored_means" in row for row in summary["rows"])
    assert (tmp_path / "objective_vs_time_V2.png").stat().st_size > 0
    assert "| V1 | barrier |" in (tmp_path / "table.md").read_text()


def test_checkpoints_keep_first_and_last():
    trace = [(0.01 * i, None) for i in range(500)]
    idx = bench._checkpoints(trace, 5.0, k=10)
    assert idx[0] == 0 and idx[-1] == 499 and len(idx) <= 12


@pytest.mark.parametrize("argv", [["--suite", "nope"], ["--methods", "newton"], ["--time-limit", "0"]])
def test_bad_flags_exit_2(argv, tmp_path):
    assert _go(*argv, "--out", tmp_path, "--quiet") == 2

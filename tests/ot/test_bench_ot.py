"""Quick run of ``optkit bench ot`` (spec ot.md §5 CLI, §7.5 clouds) on a tiny instance."""

import json

import pytest

pytest.importorskip("ot")

from optkit.cli import main  # noqa: E402


def test_bench_ot_clouds_small(tmp_path, capsys):
    code = main(["bench", "ot", "--n", "60", "--k", "1", "2", "--peers", "emd,pot-sparse-dual",
                 "--pot-max-iter", "50", "--out", str(tmp_path)])
    assert code == 0
    summary_path = tmp_path / "ot_clouds.json"
    assert summary_path.exists()
    assert (tmp_path / "ot_clouds.jsonl").exists()
    summary = json.loads(summary_path.read_text())
    for key in ("suite", "command", "machine", "config", "references", "runs", "peers",
                "comparisons", "strict"):
        assert key in summary, key
    assert summary["suite"] == "clouds"
    assert summary["command"].startswith("optkit bench ot --suite clouds --n 60 --k 1 2")

    refs = {(r["n"], r["k"]): r for r in summary["references"]}
    assert refs[(60, 1)]["kind"] == "exact" and refs[(60, 1)]["certified"]
    assert refs[(60, 2)]["kind"] in ("certified", "uncertified")

    runs = [r for r in summary["runs"] if r["k"] == 1]
    assert {r["method"] for r in runs} == {"auto", "bfgs"}
    for r in runs:
        assert r["status"] == "CONVERGED", r
        assert r["final_rel_err"] <= 1e-6
        assert r["time_to"]["1e-06"] is not None
        assert r["col_nnz_max"] == 1
    # k = 2: at most two nonzeros per column, exact column sums (semi-dual)
    for r in summary["runs"]:
        if r["k"] == 2:
            assert r["col_nnz_max"] <= 2
            assert r["r_col"] <= 1e-12

    peers = {(p["peer"], p.get("k")): p for p in summary["peers"]}
    assert peers[("emd", None)]["status"] == "ok"
    assert peers[("emd", None)]["peak_rss_mb"] > 0
    pot = peers[("pot-sparse-dual", 1)]
    assert pot["status"] == "ok" and pot["nit"] <= 50
    # every dual value is a lower bound on the exact k = 1 optimum
    assert pot["fun"] <= refs[(60, 1)]["value"] + 1e-12
    assert {c["method"] for c in summary["comparisons"]} == {"auto", "bfgs"}
    assert "optkit auto" in capsys.readouterr().out


def test_bench_ot_rejects_unknown_suite(tmp_path, capsys):
    code = main(["bench", "ot", "--suite", "moe", "--out", str(tmp_path)])
    assert code == 2
    assert "supported suites: clouds" in capsys.readouterr().err


def test_bench_ot_rejects_unknown_peer(tmp_path, capsys):
    code = main(["bench", "ot", "--peers", "emd,gurobi", "--out", str(tmp_path)])
    assert code == 2
    assert "pot-sparse-dual" in capsys.readouterr().err

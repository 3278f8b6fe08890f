"""``optkit bench nlp`` (spec nlp.md §5.6, §7.3): spec parsing, Dolan-More profiles, shifted
geometric means, paper regression verdicts, and end-to-end runs on tiny suites."""

import csv
import importlib.util
import json
import math

import numpy as np
import pytest

import optkit.cli as cli
from optkit.bench import nlp as bench

HAS_IPOPT = importlib.util.find_spec("cyipopt") is not None


@pytest.fixture
def run_cli(monkeypatch):
    # the bench is found by optkit.cli once "nlp" is in optkit.MODULES; register it for the tests
    monkeypatch.setitem(cli.BENCHMARKS, "nlp", "optkit.bench.nlp")

    def go(*argv):
        return cli.main(["bench", "nlp", *map(str, argv)])

    return go


# ------------------------------------------------------------------------------ spec parsing
@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-2", -2), ("1e-6", 1e-6), ("0.5", 0.5), ("true", True), ("False", False),
    ("yes", True), ("none", None), ("gaussian", "gaussian"), ("sketch-and-project", "sketch-and-project"),
])
def test_parse_value(text, value):
    got = bench.parse_value(text)
    assert got == value and type(got) is type(value)


def test_parse_solver_spec():
    s = bench.parse_solver_spec("sketched-al-newton:mode=paper:sketch=gaussian:tol=1e-6:max-iter=50")
    assert s.name == "sketched-al-newton" and s.ours
    assert s.label == "sketched-al-newton:mode=paper:sketch=gaussian:tol=1e-6:max-iter=50"
    assert s.options == {"mode": "paper", "sketch": "gaussian", "tol": 1e-6, "max_iter": 50}
    assert s.randomized and s.paper_sketch == "gv"
    assert bench.parse_solver_spec("sketched-al-newton:mode=paper:sketch=kaczmarz").paper_sketch == "rk"
    assert bench.parse_solver_spec("sketched-al-newton").paper_sketch is None
    # deterministic: reference inner solvers, a fixed rng, the baselines
    for text in ("sketched-al-newton:linear_solver=direct", "sketched-al-newton:linear_solver=minres",
                 "sketched-al-newton:rng=3", "ipopt", "trust-constr", "slsqp:ftol=1e-10"):
        assert not bench.parse_solver_spec(text).randomized, text
    assert bench.parse_solver_spec("adasketch-newton").randomized
    assert bench.parse_solver_spec("IPOPT:mu_strategy=adaptive").options == {"mu_strategy": "adaptive"}


@pytest.mark.parametrize("text", ["gurobi", "ipopt:tol", "ipopt:=3", "ipopt:tol=1:tol=2", ""])
def test_parse_solver_spec_rejects(text):
    from optkit import InvalidProblemError

    with pytest.raises(InvalidProblemError):
        bench.parse_solver_spec(text)


def test_parse_solvers_list_and_duplicates():
    from optkit import InvalidProblemError

    specs = bench.parse_solvers("sketched-al-newton, ipopt,slsqp")
    assert [s.label for s in specs] == ["sketched-al-newton", "ipopt", "slsqp"]
    with pytest.raises(InvalidProblemError, match="twice"):
        bench.parse_solvers("ipopt,ipopt")
    assert bench.short_label("sketched-al-newton:mode=paper:sketch=gaussian") == \
        "AL-Newton[mode=paper,sketch=gaussian]"
    assert bench.short_label("ipopt:tol=1e-6") == "ipopt:tol=1e-6"


# ------------------------------------------------------------------------------ profiles, SGM
def test_dolan_more_3x2():
    inf = math.inf
    costs = [[1.0, 2.0],   # A best
             [4.0, 2.0],   # B best, A twice as slow
             [inf, 3.0]]   # A fails
    r = bench.performance_ratios(costs)
    np.testing.assert_allclose(r, [[1, 2], [2, 1], [inf, 1]])
    taus = bench.profile_taus(r)
    np.testing.assert_allclose(taus, [1, 2, 4])
    rho = bench.performance_profile(r, [1, 1.5, 2, 100])
    np.testing.assert_allclose(rho[0], [1 / 3, 1 / 3, 2 / 3, 2 / 3])  # A never reaches 1
    np.testing.assert_allclose(rho[1], [2 / 3, 2 / 3, 1, 1])


def test_dolan_more_failures_and_floor():
    r = bench.performance_ratios([[np.inf, np.nan], [0.0, 2.0]], floor=1.0)
    assert np.all(np.isinf(r[0]))  # solved by nobody
    np.testing.assert_allclose(r[1], [1.0, 2.0])  # 0 raised to the floor 1
    with pytest.raises(ValueError):
        bench.performance_ratios([[0.0, 1.0]])
    assert bench.performance_profile(np.zeros((0, 2)), [1.0]).shape == (2, 1)


def test_shifted_geometric_mean():
    assert bench.shifted_geometric_mean([1.0, 3.0], 1.0) == pytest.approx(math.sqrt(2 * 4) - 1)
    assert bench.shifted_geometric_mean([10.0, 1000.0], 10.0) == pytest.approx(math.sqrt(20 * 1010) - 10)
    assert bench.shifted_geometric_mean([5.0, 5.0, 5.0], 10.0) == pytest.approx(5.0)
    assert bench.shifted_geometric_mean([0.0, 0.0], 10.0) == pytest.approx(0.0)
    assert bench.shifted_geometric_mean([], 10.0) is None
    with pytest.raises(ValueError):
        bench.shifted_geometric_mean([math.inf], 1.0)


def test_paper_match():
    row = {"name": "HS6", "gv": 9, "rk": 9, "rank": False}
    ok = {"nit": 9, "reason": "kkt_tol", "kkt_residual": 5e-5}
    assert bench.paper_match(row, "gv", [ok, ok]) == "exact"
    assert bench.paper_match(row, "gv", [ok, dict(ok, nit=10)]) == "no"
    assert bench.paper_match(row, "gv", [dict(ok, kkt_residual=2e-4)]) == "no"
    bt9 = {"name": "BT9", "gv": 12, "rk": 10, "rank": False}
    assert bench.paper_match(bt9, "rk", [dict(ok, nit=12), dict(ok, nit=9)]) == "within +-3"
    rank = {"name": "GOTTFR", "gv": None, "rk": None, "rank": True}
    assert bench.paper_match(rank, "gv", [{"nit": 3, "reason": "jacobian_rank_deficient"}]) == "exact"
    assert bench.paper_match(rank, "gv", [ok]) == "no"


def test_aggregate_seeds():
    base = {"status": "CONVERGED", "reason": "kkt_tol", "evaluations": 10, "elapsed": 0.1,
            "f_match": True, "n_inner": 5, "n_kprod": 20}
    recs = [dict(base, nit=4, solved=True), dict(base, nit=6, solved=True)]
    a = bench._aggregate(recs)
    assert a["solved"] and a["iterations"] == {"mean": 5.0, "min": 4, "max": 6}
    recs.append(dict(base, nit=50, solved=False, status="MAX_ITER", f_match=False))
    a = bench._aggregate(recs)
    assert not a["solved"] and a["n_solved"] == 2 and a["f_match"] is False
    assert a["statuses"] == ["CONVERGED", "MAX_ITER"]


# ------------------------------------------------------------------------------ end to end
def test_bench_nlp_pde_end_to_end(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    solvers = "sketched-al-newton:linear_solver=direct" + (",ipopt" if HAS_IPOPT else "")
    code = run_cli("--suite", "pde", "--pde-sizes", "3", "--solvers", solvers, "--seeds", "1",
                   "--out", tmp_path, "--plot", "--quiet")
    assert code == 0
    for name in ("records.jsonl", "table.md", "table.csv", "summary.json"):
        assert (tmp_path / name).exists(), name
    for metric in ("iterations", "evaluations", "time"):
        prof = json.loads((tmp_path / f"profiles_{metric}.json").read_text())
        assert prof["metric"] == metric and prof["problems"] == ["PDE3"]
        assert prof["tau"][0] == 1.0 and len(prof["log2_tau"]) == len(prof["tau"])
        assert (tmp_path / f"profiles_{metric}.png").stat().st_size > 0
    recs = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(recs) == (2 if HAS_IPOPT else 1)
    for r in recs:
        for key in ("name", "n", "m", "source", "status", "reason", "nit", "nfev", "ngev", "ncev",
                    "njev", "n_hvp", "n_inner", "n_kprod", "wall_time", "elapsed", "f", "f_star",
                    "c_inf", "stat_inf", "solved", "eta", "versions"):
            assert key in r, key
        assert r["name"] == "PDE3" and (r["n"], r["m"]) == (18, 9)
        assert r["seed"] is None and not r["randomized"]  # direct inner solver: one run
        if r["status"] != "ERROR":
            assert r["solved"] and r["f_match"], r
    if HAS_IPOPT:
        ip = next(r for r in recs if r["solver"] == "ipopt")
        assert ip["status"] == "CONVERGED" and ip["solved"] and ip["c_inf"] <= 1e-6
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["command"].startswith("optkit bench nlp --suite pde --solvers ")
    assert summary["config"]["time_limit"] == 60.0
    assert set(summary["solvers"]) == set(solvers.split(","))
    for d in summary["solvers"].values():
        assert set(d["sgm"]) == {f"{m}_{w}" for m in ("iterations", "evaluations", "time")
                                 for w in ("all", "solved_by_all")}
    assert "PDE3" in (tmp_path / "table.md").read_text()
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [r["problem"] for r in rows] == ["PDE3"]


def test_bench_nlp_seeds_hsbt(tmp_path, run_cli, capsys):
    code = run_cli("--suite", "hs-bt", "--names", "HS6,HS28", "--solvers", "sketched-al-newton,slsqp",
                   "--seeds", "2", "--time-limit", "30", "--out", tmp_path)
    assert code == 0
    recs = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    ours = [r for r in recs if r["solver"] == "sketched-al-newton"]
    assert sorted((r["name"], r["seed"]) for r in ours) == [("HS28", 0), ("HS28", 1), ("HS6", 0), ("HS6", 1)]
    assert len([r for r in recs if r["solver"] == "slsqp"]) == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["solvers"]["sketched-al-newton"]["seeds"] == 2
    assert summary["solvers"]["sketched-al-newton"]["runs"] == 4
    assert summary["threads"]["blas_threads"] in (1, "not pinned (threadpoolctl missing)")
    out = capsys.readouterr().out
    assert "| HS6 |" in out and "AL-Newton solved" in out


@pytest.mark.parametrize("argv, text", [
    (["--suite", "moe"], "unknown suite"),
    (["--suite", "pde", "--solvers", "gurobi"], "unknown solver"),
    (["--suite", "pde", "--solvers", "sketched-al-newton:sketch=bogus"], "sketch"),
    (["--suite", "pde", "--solvers", "sketched-al-newton:tolerance=1e-6"], "tolerance"),
    (["--suite", "pde", "--seeds", "0"], "--seeds"),
    (["--suite", "pde", "--names", "NOPE", "--solvers", "slsqp"], "no problems"),
])
def test_bench_nlp_bad_input(tmp_path, run_cli, capsys, argv, text):
    assert run_cli(*argv, "--out", tmp_path, "--quiet") == 2
    assert text in capsys.readouterr().err

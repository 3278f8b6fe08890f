"""``optkit milp formulate|solve|evaluate|train-tagger`` (spec milp 5): outputs, exit codes (0/1/2/4), the LLM
transport failure against a real local HTTP server, and a tiny tagger training run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from optkit import cli

pytest.importorskip("highspy")

_REPO_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "nl4opt")
DATA = os.environ.get("OPTKIT_NL4OPT_DIR") or _REPO_DATA
DEV = os.path.join(DATA, "generation_dev.jsonl")
NER_TRAIN = os.path.join(DATA, "ner_train.txt")
needs_data = pytest.mark.skipif(not os.path.isfile(DEV), reason=f"NL4Opt data not found at {DATA} "
                                                                "(set OPTKIT_NL4OPT_DIR)")

#: the elm chairs case (spec 6) in words; the offline tagger + rules recover it: MILP 224 (4, 1), LP 236.5
CHAIRS = ("A carpenter makes chairs and tables. Each chair takes 1.4 hours of carving and each table takes 1.1 hours "
          "of carving. At most 17 hours of carving are available. Each chair takes 2 hours of polishing and each "
          "table takes 3 hours of polishing. At most 11 hours of polishing are available. The profit per chair is "
          "$43 and the profit per table is $52. How many of each should be made to maximize profit?")
ELM = {"variables": [{"name": "b", "domain": "integer"}, {"name": "c", "domain": "integer"}],
       "objective": {"sense": "maximize", "terms": {"b": 43, "c": 52}},
       "constraints": [{"type": "linear", "terms": {"b": 1.4, "c": 1.1}, "operator": "LESS_OR_EQUAL", "limit": 17},
                       {"type": "linear", "terms": {"b": 2, "c": 3}, "operator": "LESS_OR_EQUAL", "limit": 11}]}
INFEASIBLE = {"variables": [{"name": "x", "domain": "integer"}, {"name": "y"}],
              "objective": {"sense": "maximize", "terms": {"x": 1, "y": 1}},
              "constraints": [{"type": "sum", "operator": "LESS_OR_EQUAL", "limit": 1},
                              {"type": "lowerbound", "var": "x", "operator": "GREATER_OR_EQUAL", "limit": 2}]}


def run(capsys, *argv):
    code = cli.main(["milp", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def elm_file(tmp_path):
    p = tmp_path / "elm.json"
    p.write_text(json.dumps(ELM))
    return p


# ------------------------------------------------------------------------------------------------- formulate
def test_formulate_summary_json_lp(capsys, tmp_path):
    code, out, err = run(capsys, "formulate", CHAIRS)
    assert code == 0 and "status: CONVERGED" in out and "objective: 224" in out
    assert "chairs = 4" in out and "tables = 1" in out

    code, out, _ = run(capsys, "formulate", CHAIRS, "--format", "json")
    assert code == 0
    res = json.loads(out)
    assert res["status"] == "CONVERGED" and res["fun"] == pytest.approx(224.0)
    assert res["values"] == {"chairs": pytest.approx(4.0), "tables": pytest.approx(1.0)}
    assert [v["name"] for v in res["model"]["variables"]] == ["chairs", "tables"]

    code, out, _ = run(capsys, "formulate", CHAIRS, "--format", "lp", "--integrality", "continuous")
    assert code == 0
    assert "Maximize" in out and "obj: 43 chairs + 52 tables" in out and "1.4 chairs + 1.1 tables <= 17" in out
    assert "General" not in out and out.rstrip().endswith("End")
    code, out, _ = run(capsys, "formulate", CHAIRS, "--format", "lp")
    assert "General\n chairs tables" in out

    text = tmp_path / "p.txt"
    text.write_text(CHAIRS)
    out_file = tmp_path / "model.json"
    code, out, _ = run(capsys, "formulate", "--file", str(text), "--no-solve", "--format", "json", "-o", str(out_file))
    assert code == 0 and out == ""
    saved = json.loads(out_file.read_text())
    assert saved["fun"] is None and saved["model"]["objective"]["sense"] == "maximize"
    # the formulate output feeds solve directly
    code, out, _ = run(capsys, "solve", str(out_file), "--json")
    assert code == 0 and json.loads(out)["fun"] == pytest.approx(224.0)


def test_formulate_bad_input_exit_2(capsys, tmp_path):
    for argv in (["formulate", ""], ["formulate", "   "], ["formulate", "--file", str(tmp_path / "none.txt")],
                 ["formulate"], ["formulate", "x", "--backend", "http"],
                 ["formulate", "Maximize profit of chairs and tables."]):
        code, out, err = run(capsys, *argv)
        assert code == cli.EXIT_INPUT, argv
        assert err.startswith("optkit milp: bad input:") and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------------- LLM transport
@pytest.fixture
def http_401(chat_server):
    seen = []

    def respond(path, headers, body):
        seen.append(headers)
        return 401, {}, '{"error": {"message": "invalid api key"}}'

    return chat_server(respond), seen


def test_llm_http_401_exit_4(capsys, http_401, monkeypatch):
    url, seen = http_401
    monkeypatch.setenv("OPTKIT_LLM_API_KEY", "sk-secret-123")
    code, out, err = run(capsys, "formulate", CHAIRS, "--backend", "http", "--base-url", url, "--model", "m")
    assert code == cli.EXIT_SERVICE
    assert "401" in err and err.count("\n") == 1 and "Traceback" not in err
    assert "sk-secret-123" not in err + out
    assert seen and seen[0].get("Authorization") == "Bearer sk-secret-123"  # the key is read from the env only


# ------------------------------------------------------------------------------------------------- solve
def test_solve_elm_chairs(capsys, elm_file):
    code, out, _ = run(capsys, "solve", str(elm_file), "--integrality", "all-integer")
    assert code == 0 and "status: CONVERGED" in out and "objective: 224" in out
    code, out, _ = run(capsys, "solve", str(elm_file), "--json", "--integrality", "both")
    res = json.loads(out)
    assert res["fun"] == pytest.approx(224.0) and res["lp_fun"] == pytest.approx(236.5)
    assert res["values"] == {"b": pytest.approx(4.0), "c": pytest.approx(1.0)}
    code, out, _ = run(capsys, "solve", str(elm_file), "--json", "--integrality", "continuous", "--strict")
    assert code == 0 and json.loads(out)["fun"] == pytest.approx(236.5)


def test_solve_strict_and_status_exit_codes(capsys, tmp_path):
    p = tmp_path / "inf.json"
    p.write_text(json.dumps(INFEASIBLE))
    code, out, _ = run(capsys, "solve", str(p))
    assert code == 0 and "INFEASIBLE" in out  # a solver status is not an error
    code, out, _ = run(capsys, "solve", str(p), "--strict", "--json")
    assert code == cli.EXIT_CHECK and json.loads(out)["status"] == "INFEASIBLE"


def test_solve_bad_input_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({**ELM, "objective": {"sense": "maximize", "terms": {"zz": 1}}}))
    for argv in (["solve", str(tmp_path / "missing.json")], ["solve", str(bad)], ["solve", str(unknown)]):
        code, _, err = run(capsys, *argv)
        assert code == cli.EXIT_INPUT, argv
        assert err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------------- evaluate
@needs_data
def test_evaluate_gold_five_records(capsys, tmp_path):
    data = tmp_path / "five.jsonl"
    with open(DEV, encoding="utf-8") as fh:
        data.write_text("".join(fh.readline() for _ in range(5)))
    report, records = tmp_path / "report.json", tmp_path / "records.jsonl"
    code, out, err = run(capsys, "evaluate", "--data", str(data), "--formulator", "gold", "--out", str(report),
                         "--records", str(records), "--integrality", "all-integer,either")
    assert code == 0 and err == ""  # no progress bar when stderr is not a terminal
    assert "5/5 100.0%" in out and "either" in out
    rep = json.loads(report.read_text())
    assert rep["n_docs"] == 5 and rep["execution"]["all-integer"]["strict"]["accuracy"] == 1.0
    assert rep["components"]["model_accuracy"] == 1.0 and rep["declaration"]["faithful"]["accuracy"] == 1.0
    assert len(records.read_text().splitlines()) == 5
    # references from a file: one excluded (non-numeric), one wrong
    ids = [json.loads(line)["id"] for line in records.read_text().splitlines()]
    funs = [json.loads(line)["execution"]["all-integer"]["fun"] for line in records.read_text().splitlines()]
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"id": i, "reference": f}) + "\n" for i, f in zip(ids[:3], funs[:3]))
                    + json.dumps({"id": ids[3], "reference": "n/a"}) + "\n"
                    + json.dumps({"id": ids[4], "reference": funs[4] + 1}) + "\n")
    code, out, _ = run(capsys, "evaluate", "--data", str(data), "--formulator", "gold", "--references", str(refs),
                       "--integrality", "all-integer", "--metrics", "execution", "--out", str(report))
    ex = json.loads(report.read_text())["execution"]["all-integer"]["strict"]
    assert code == 0 and ex["n"] == 4 and ex["n_correct"] == 3 and ex["n_excluded"] == 1


def test_evaluate_bad_input_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "evaluate", "--data", str(tmp_path / "none.jsonl"))
    assert code == cli.EXIT_INPUT and "--data" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    code, _, err = run(capsys, "evaluate", "--data", str(bad), "--formulator", "gold")
    assert code == cli.EXIT_INPUT and "bad.jsonl:1" in err
    with pytest.raises(SystemExit) as exc:  # argparse rejects an unknown policy with its own exit 2
        cli.main(["milp", "evaluate", "--data", str(bad), "--integrality", "sometimes"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------------------------- train-tagger
@pytest.mark.skipif(not os.path.isfile(NER_TRAIN), reason=f"NL4Opt NER data not found at {DATA}")
def test_train_tagger_tiny(capsys, tmp_path):
    from optkit.milp.extract.crf import load_tagger

    docs, cur = [], []
    with open(NER_TRAIN, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                if cur:
                    docs.append(cur)
                    cur = []
                if len(docs) == 20:
                    break
                continue
            cur.append(line)
    train = tmp_path / "train.txt"
    train.write_text("\n".join("".join(d) for d in docs[:16]) + "\n")
    dev = tmp_path / "dev.txt"
    dev.write_text("\n".join("".join(d) for d in docs[16:20]) + "\n")
    out = tmp_path / "tagger.npz"
    code, text, err = run(capsys, "train-tagger", "--train", str(train), "--dev", str(dev), "--out", str(out),
                          "--c2", "0.1", "--max-iter", "5")
    assert code == 0, err
    assert out.is_file() and "tagger written to" in text and "c2=0.1" in text
    tagger = load_tagger(out)
    words = docs[16][0].split("\t")[:1] + ["chairs", "and", "tables"]
    tags = tagger.tag(words)
    assert len(tags) == len(words) and all(isinstance(t, str) for t in tags)
    assert np.isfinite(tagger.W).all()

    code, _, err = run(capsys, "train-tagger", "--train", str(tmp_path / "none.txt"), "--out", str(out))
    assert code == cli.EXIT_INPUT and "--train" in err
    code, _, err = run(capsys, "train-tagger", "--train", str(train), "--out", str(out))  # c2 needs --dev
    assert code == cli.EXIT_INPUT and "dev" in err


# ------------------------------------------------------------------------------------------------- entry point
def test_python_dash_m_milp(elm_file):
    proc = subprocess.run([sys.executable, "-m", "optkit", "milp", "solve", str(elm_file), "--json"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fun"] == pytest.approx(224.0)
    proc = subprocess.run([sys.executable, "-m", "optkit", "milp", "formulate", ""], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1

import subprocess
import sys

from optkit import cli


def test_info_and_bench_list(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "optkit 0.1.0" in out and "numpy" in out and "modules: ot" in out
    assert cli.main(["bench", "--list"]) == 0
    assert "ot" in capsys.readouterr().out


def test_demo_runs_and_bad_module_exit_code(capsys):
    assert cli.main(["demo", "nosuchmodule"]) == cli.EXIT_INPUT
    assert cli.main(["demo", "ot"]) == 0
    out = capsys.readouterr().out
    assert "optkit.ot" in out and "CONVERGED" in out


def test_python_dash_m_and_no_command():
    proc = subprocess.run([sys.executable, "-m", "optkit", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "optkit" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "optkit"], capture_output=True, text=True)
    assert proc.returncode == cli.EXIT_INPUT

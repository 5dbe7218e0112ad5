"""docs/your-own-loss.md, run as written: its files are written and its shell blocks executed in
order in an empty folder, through the installed `seqbench` entry point with stdout as a pipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "your-own-loss.md"
BLOCK = re.compile(r"```(?P<lang>\w+)(?P<info>[^\n]*)\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str, str]]:
    return [(m["lang"], m["info"].strip(), m["body"]) for m in BLOCK.finditer(TUTORIAL.read_text())]


def test_the_tutorial_names_its_files_and_has_shell_steps() -> None:
    found = blocks()
    assert [info for lang, info, _ in found if lang == "python"] == ["file=focal.py"]
    assert sum(lang == "bash" for lang, _, _ in found) >= 3


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("SEQBENCH_PLUGINS", None)
    for lang, info, body in blocks():
        if lang == "python":
            (tmp_path / info.removeprefix("file=")).write_text(body)
        elif lang == "bash":
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", body], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"step failed:\n{body}\nstderr:\n{done.stderr[-3000:]}"
    grid = (tmp_path / "grid.txt").read_text()
    assert "focal-ce" in grid and "Verdicts" in grid and "3 seeds per cell" in grid
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["kind"] == "compare"
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["loss"] == "focal-ce" and run["status"] == "completed"
    assert "focal.py" in run["code"]["loss"] and "sha256:" in run["code"]["loss"] and run["code"]["model"].startswith("built-in")
    assert run["config"]["loss_params"] == {"gamma": 1}

"""Packaging facts other people rely on."""

import re
import subprocess

import tomllib
import yaml

from lozo_core.provenance import REPO_ROOT


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].lower()


def test_environment_yml_lists_the_pyproject_dependencies():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(map(_name, pip_section)) == sorted(map(_name, specs))
    pins = {_name(s): s for s in pip_section}
    assert pins["torch"] == "torch==2.13.0"
    project_specs = {_name(s): s for s in specs}
    for name, spec in pins.items():
        if name != "torch":
            assert spec == project_specs[name], (
                f"{name}: {spec} in environment.yml vs {project_specs[name]}"
            )


def test_makefile_pins_torch_overridably():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "TORCH_SPEC ?= torch==2.13.0" in makefile


def test_no_notebook_outputs_in_git():
    tracked = subprocess.run(
        ["git", "ls-files", "*.ipynb"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert tracked.stdout.strip() == ""


def test_a_result_from_uncommitted_code_names_its_commit_dirty(tmp_path, monkeypatch):
    from lozo_core import provenance

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
                       cwd=tmp_path, check=True, capture_output=True)  # fmt: skip

    (tmp_path / "lozo_core").mkdir()
    (tmp_path / "lozo_core" / "x.py").write_text("a = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    clean = provenance.git_commit()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "run.json").write_text("{}")
    assert provenance.git_commit() == clean and not clean.endswith("+dirty")
    (tmp_path / "lozo_core" / "x.py").write_text("a = 2\n")
    assert provenance.git_commit() == clean + "+dirty"

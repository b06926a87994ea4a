"""The publishing workflow is a valid GitHub workflow and does what the README says."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _validate(path: Path) -> subprocess.CompletedProcess:
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent)) or "check-jsonschema"
    return subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_the_workflow_matches_githubs_schema(tmp_path):
    done = _validate(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    # Negative control: the same file with a misspelt key is refused.
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:", 1))
    assert _validate(broken).returncode != 0


def test_the_workflow_tests_builds_and_publishes_main():
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow[True]  # YAML reads the key "on" as True
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    steps = flow["jobs"]["book"]["steps"]
    assert any(step.get("run") == "bash .ci/run" for step in steps), "the workflow must run the test command"
    assert any("_build/.jupyter_cache" in str(step.get("with", {}).get("path")) for step in steps)
    uploads = {step["with"]["name"] for step in steps if step.get("uses", "").startswith("actions/upload-artifact")}
    assert {"book-html", "reader-notebooks"} <= uploads
    for job in ("deploy", "reader-branch"):
        assert "refs/heads/main" in flow["jobs"][job]["if"] and flow["jobs"][job]["needs"] == "book"
    assert any("deploy-pages" in step.get("uses", "") for step in flow["jobs"]["deploy"]["steps"])
    push = "\n".join(step.get("run", "") for step in flow["jobs"]["reader-branch"]["steps"])
    assert "git push --force origin reader" in push


def _actionlint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "actionlint"), str(path)], capture_output=True, text=True,
                          timeout=300)


def test_actionlint_passes_the_workflow_and_fails_a_broken_one(tmp_path):
    done = _actionlint(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    # Negative control: a step output that no step defines, and an unknown runner label.
    broken = WORKFLOW.read_text().replace("${{ steps.deployment.outputs.page_url }}",
                                          "${{ steps.nowhere.outputs.page_url }}", 1)
    assert broken != WORKFLOW.read_text()
    (tmp_path / "book.yml").write_text(broken)
    done = _actionlint(tmp_path / "book.yml")
    assert done.returncode != 0 and "nowhere" in done.stdout, done.stdout + done.stderr
    (tmp_path / "runner.yml").write_text(WORKFLOW.read_text().replace("ubuntu-24.04", "ubuntu-2404"))
    done = _actionlint(tmp_path / "runner.yml")
    assert done.returncode != 0 and 'label "ubuntu-2404" is unknown' in done.stdout


def test_the_test_command_runs_actionlint_next_to_ruff():
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "ruff check ." in script and "scripts/actionlint" in script
    assert script.index("ruff check .") < script.index("scripts/actionlint") < script.index("pytest")

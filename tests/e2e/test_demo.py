"""`taskflow-jobs demo`: one pass on embedded defaults, a summary, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "taskflow-jobs")


def test_demo_passes_and_cleans_up(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "DATABASE_URL", "TASKFLOW_", "WEBHOOK_", "EMAIL_"))
    }
    # whatever the shell says, the demo runs on its own embedded defaults
    env.update(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", EMAIL_PROVIDER="smtp")
    done = subprocess.run(
        [CLI, "demo"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for step in ("signup → welcome email", "task assignment → email",
                 "webhook → notification email", "daily-stats through the worker"):  # fmt: skip
        assert f"[ok ] {step}" in output, output
    assert "demo passed" in output
    assert "new tasks" in output and "kept " not in output

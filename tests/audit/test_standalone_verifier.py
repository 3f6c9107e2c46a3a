"""The auditor's verifier: one downloaded file, a fresh venv with only `cryptography`.

Run from an empty directory outside the repository, with `python -I` (no
PYTHONPATH, no user site, no current directory on the path), in a virtual
environment that holds `cryptography` and its own dependencies and nothing
else: no Flask, no SQLAlchemy, no `console` package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from tests.audit.test_export_verify import fill

ROOT = Path(__file__).resolve().parents[2]
# cryptography and what its metadata requires on CPython: cffi, which requires pycparser.
ONLY = ("cryptography", "cffi", "_cffi_backend", "pycparser")


def fresh_venv(where: Path) -> Path:
    """A venv without pip whose site-packages holds only cryptography and its dependencies."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = Path(sysconfig.get_path("purelib"))
    for entry in ours.iterdir():
        if entry.name.split("-")[0].split(".")[0] in ONLY:
            target = Path(purelib) / entry.name
            if entry.is_dir():
                shutil.copytree(entry, target)
            else:
                shutil.copy2(entry, target)
    return python


def run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        check=False,
        timeout=120,
    )


@pytest.mark.slow
def test_downloaded_verifier_runs_alone_in_a_fresh_venv(app, auth, client, tmp_path_factory):
    auditor = tmp_path_factory.mktemp("auditor")
    assert not any(auditor.iterdir()) and ROOT not in auditor.parents
    fill(app, 40)
    auth.as_role("auditor")

    page = client.get("/audit/export").get_data(as_text=True)
    marker = "--fingerprint "
    pin = page[page.index(marker) + len(marker) :].split("<", 1)[0].strip()
    assert len(pin) == 64

    script = client.get("/audit/export/verify_bundle.py")
    assert script.status_code == 200
    assert script.data == (ROOT / "console" / "audit" / "verify.py").read_bytes()
    (auditor / "verify_bundle.py").write_bytes(script.data)
    archive = client.get("/audit/export/download?format=csv")
    assert archive.status_code == 200
    with tarfile.open(fileobj=BytesIO(archive.data), mode="r:gz") as tar:
        tar.extractall(auditor, filter="data")

    python = fresh_venv(tmp_path_factory.mktemp("venv") / "venv")
    for module in ("flask", "sqlalchemy", "console", "psycopg"):
        probe = run(python, auditor, "-c", f"import {module}")
        assert probe.returncode != 0, f"{module} is importable in the auditor's venv"
    assert run(python, auditor, "-c", "import cryptography").returncode == 0

    ok = run(python, auditor, "verify_bundle.py", "audit-export", "--fingerprint", pin)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("valid: ") and "chain verified" in ok.stdout

    unpinned = run(
        python,
        auditor,
        "verify_bundle.py",
        "audit-export",
        "--public-key",
        "audit-export/public_key.pem",
    )
    assert unpinned.returncode == 2 and "proves nothing on its own" in unpinned.stderr

    data = auditor / "audit-export" / "audit.csv"
    text = data.read_text(encoding="utf-8")
    data.write_text(text.replace("reason number 7 ", "reason number 77 ", 1), encoding="utf-8")
    bad = run(python, auditor, "verify_bundle.py", "audit-export", "--fingerprint", pin)
    assert bad.returncode == 1 and "INVALID: seq 8:" in bad.stdout, bad.stdout
    assert "reason column differs" in bad.stdout

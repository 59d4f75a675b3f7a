"""The README's examples, pasted as they are: the shell blocks marked
`<!-- readme-test: NAME -->` run with bash, in order, on a fresh copy of
the repository (its own var/), and every command in them must succeed.

They use the default ports 8000 and 8001: the run gets a network namespace
of its own (`unshare -n`, as root) so nothing else on the machine is in the
way; without one it runs only if those ports are free.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system.service import wait_for

ROOT = Path(__file__).resolve().parents[2]
MARKED = re.compile(r"<!-- readme-test: (\S+) -->\n```sh\n(.*?)```", re.S)


def marked_blocks(readme: str) -> dict[str, str]:
    return {name: body for name, body in MARKED.findall(readme)}


def test_the_readme_marks_its_pasteable_blocks() -> None:
    blocks = marked_blocks((ROOT / "README.md").read_text())
    assert list(blocks) == ["sale", "coupons", "coupon-rules", "codes", "paid"]
    assert "bin/serve &" in blocks["sale"] and "/readyz" in blocks["sale"]


def _fresh_copy(dest: Path) -> None:
    """The repository's files (no var/), with a .venv that is this one, already installed."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    venv = dest / ".venv"
    venv.mkdir()
    for part in ("bin", "lib", "include", "pyvenv.cfg"):
        if (Path(sys.prefix) / part).exists():
            (venv / part).symlink_to(Path(sys.prefix) / part)
    # bin/_venv.sh installs unless its stamp for these files is there: this venv has them.
    digest = hashlib.sha1((dest / "pyproject.toml").read_bytes()
                          + (dest / "constraints.txt").read_bytes()).hexdigest()[:12]
    (venv / f".installed-{digest}").touch()


def _own_network() -> list[str] | None:
    """A prefix that runs a command in a network namespace of its own, if we may."""
    if shutil.which("unshare") and shutil.which("ip"):
        probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                               capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
    return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_readme_examples_run_as_pasted(tmp_path: Path) -> None:
    if shutil.which("jq") is None or shutil.which("curl") is None:
        pytest.skip("the README's examples need curl and jq (bin/test installs jq)")
    prefix = _own_network()
    if prefix is None and not _ports_free(8000, 8001):
        pytest.skip("no network namespace to be had, and ports 8000/8001 are taken")
    repo = tmp_path / "stampede"
    _fresh_copy(repo)
    blocks = marked_blocks((repo / "README.md").read_text())
    script = tmp_path / "readme.sh"
    script.write_text("\n".join(blocks.values()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        # -e and pipefail: any command of the blocks that fails fails the run.
        proc = subprocess.Popen([*(prefix or []), "bash", "-euo", "pipefail", str(script)],
                                cwd=repo, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=180)
        finally:
            # The blocks leave bin/serve running, as for a reader: stop it (and its Valkey).
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(10)
            assert wait_for(lambda: not _group_alive(proc.pid), 30)
    output = out.read_text()
    assert code == 0, output
    assert '"status":"confirmed"' in output  # the sale's claim, confirmed
    assert '"discount":500' in output  # the coupon, redeemed
    assert '"coupons_extended":1' in output  # coupon rules: the lunch coupon's longer validity
    assert '"discount":282' in output  # coupon rules: the discount per line
    assert '{"status":"confirmed","amount":3900,"coupons":1}' in output  # a paid voucher
    assert '{"status":"refunded","refunded_amount":3900}' in output  # and its refund
    assert (repo / "var" / "admin.token").read_text().startswith("stpa_")

"""The clients follow the contract: the committed OpenAPI document, error codes and
SDK copies are what the code generates; api.d.ts is what openapi-typescript makes
of that document; and the SDK's declarations compile against it with `tsc`
(a check that fails when the contract breaks a client, as the last test shows)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from stampede.api import clientgen

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "clients" / "js"
BIN = JS / "node_modules" / ".bin"
needs_node = pytest.mark.skipif(
    not (BIN / "tsc").exists() or shutil.which("node") is None,
    reason="clients/js/node_modules is missing (bin/test runs `npm ci --prefix clients/js` "
           "when npm is installed)")


def test_the_committed_spec_codes_and_sdk_copies_are_current() -> None:
    stale = [str(rel) for rel, text in {**clientgen.generated(), **clientgen.copies(ROOT)}.items()
             if (ROOT / rel).read_text() != text]
    assert not stale, f"run `python -m stampede.api.clientgen` (and bin/gen-clients): {stale}"


def _tsc(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "tsc"), "-p", str(folder / "tsconfig.json")],
                          capture_output=True, text=True, timeout=120)


def _openapi_typescript(spec: Path, out: Path) -> None:
    subprocess.run([str(BIN / "openapi-typescript"), str(spec), "-o", str(out)],
                   check=True, capture_output=True, timeout=120)


@needs_node
def test_the_types_are_generated_from_the_spec_and_the_sdk_compiles(tmp_path: Path) -> None:
    _openapi_typescript(JS / "openapi.json", tmp_path / "api.d.ts")
    fresh = (tmp_path / "api.d.ts").read_text()
    assert (JS / "api.d.ts").read_text() == fresh, "api.d.ts is stale: run bin/gen-clients"
    assert (ROOT / clientgen.SDK / "api.d.ts").read_text() == fresh
    done = _tsc(JS)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_node
def test_a_contract_change_that_breaks_clients_fails_the_check(tmp_path: Path) -> None:
    for name in ("stampede.d.ts", "codes.d.ts", "check.ts", "tsconfig.json", "api.d.ts"):
        shutil.copy(JS / name, tmp_path / name)
    types = tmp_path / "api.d.ts"
    types.write_text(types.read_text().replace("claim_id: string;", "hold_id: string;"))
    done = _tsc(tmp_path)
    assert done.returncode != 0
    assert "claim_id" in done.stdout

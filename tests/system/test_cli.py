"""The `stampede` command as a user meets it: every mistake is one line on
stderr and exit code 2, never a traceback; recover asks before it fences a
live campaign; tokens carry the claims the service reads."""

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from stampede.errors import ConfigError
from stampede.settings import TOOL_NAMES, Settings
from tests.system.service import STAMPEDE, Service, http

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, data_dir: Path, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    full.update(STAMPEDE_DATA_DIR=str(data_dir), **(env or {}))
    return subprocess.run([STAMPEDE, *args], env=full, capture_output=True, text=True,
                          timeout=60, input=stdin)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("stampede: "), \
        result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_version(tmp_path: Path) -> None:
    result = run("--version", data_dir=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "stampede 0.1.0"


def test_bad_admin_tokens_stop_serve_in_one_line(tmp_path: Path) -> None:
    result = run("serve", "--port", "0", data_dir=tmp_path,
                 env={"STAMPEDE_ADMIN_TOKENS": "root:secret"})
    one_line_error(result, "configuration error", "STAMPEDE_ADMIN_TOKENS must be role:token")


def test_unknown_setting_suggests_the_known_one(tmp_path: Path) -> None:
    result = run("serve", data_dir=tmp_path, env={"STAMPEDE_ADMIN_TOKEN": "stpa_x"})
    one_line_error(result, "unknown setting STAMPEDE_ADMIN_TOKEN",
                   "did you mean STAMPEDE_ADMIN_TOKENS?")


@pytest.mark.parametrize(("name", "suggested"), [
    ("STAMPEDE_PERSIST_BACH", "STAMPEDE_PERSIST_BATCH"), ("STAMPEDE_JWT", "STAMPEDE_JWT_SECRET"),
    ("STAMPEDE_DATADIR", "STAMPEDE_DATA_DIR"), ("STAMPEDE_PG_PASS", "STAMPEDE_PG_PASSWORD"),
    ("STAMPEDE_QWXZ", None), ("STAMPEDE_WORKERS", None)])
def test_suggestions(name: str, suggested: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: "1"})
    message = str(caught.value)
    assert message.startswith(f"unknown setting {name}")
    if suggested is None:
        assert "did you mean" not in message
    else:
        assert f"(did you mean {suggested}?)" in message


def test_the_projects_own_names_are_accepted(tmp_path: Path) -> None:
    # docker-compose.yml's password and the throwaway PostgreSQL's binaries: not
    # settings of the service, and no reason for it to refuse to start.
    env = {"STAMPEDE_PG_PASSWORD": "pw", "STAMPEDE_PG_BIN": "/nowhere",
           "STAMPEDE_TEST_PG_URL": "postgresql://x", "STAMPEDE_TEST_REDIS_URL": "redis://x"}
    assert run("token", "bob", data_dir=tmp_path, env=env).returncode == 0


def test_every_stampede_name_in_the_repository_is_known() -> None:
    # A name a tool, the compose file or the docs use must be a setting or a tool's name.
    import re

    # (This file's typos are on purpose, and so is the README's example of a refusal.)
    lines = subprocess.run(["git", "grep", "-hE", r"STAMPEDE_[A-Z0-9_]*[A-Z0-9]", "--", ".",
                            ":!tests/system/test_cli.py"],
                           cwd=ROOT, capture_output=True, text=True).stdout
    lines = re.sub(r"unknown setting STAMPEDE_\w+", "", lines)
    names = re.findall(r"STAMPEDE_[A-Z0-9_]*[A-Z0-9]", lines)
    settings = {f"STAMPEDE_{n.upper()}" for n in Settings.__dataclass_fields__ if n != "extra"}
    tools = {f"STAMPEDE_{n}" for n in TOOL_NAMES}
    unknown = {n for n in names if n not in settings | tools and not re.fullmatch(
        r"STAMPEDE_[A-Z]+_?", n)}
    assert names and not unknown, unknown


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    one_line_error(run("recover", "--bogus", data_dir=tmp_path), "No such option: --bogus",
                   "stampede recover --help")
    one_line_error(run("token", data_dir=tmp_path), "Missing argument")
    one_line_error(run("nosuch", data_dir=tmp_path), "No such command")
    one_line_error(run("token", "not a user", data_dir=tmp_path), "not a valid user id")


def test_recover_without_redis_is_one_line(tmp_path: Path) -> None:
    one_line_error(run("recover", data_dir=tmp_path), "no Redis")


def test_a_bad_store_url_is_one_line(tmp_path: Path) -> None:
    one_line_error(run("audit", data_dir=tmp_path, env={"STAMPEDE_STORE_URL": "mysql://x"}),
                   "configuration error")


def test_token_mints_the_claims_the_service_reads(tmp_path: Path) -> None:
    result = run("token", "alice", "--created-at", "1700000000", "--idh", "h-123",
                 "--ttl-s", "60", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    secret = (tmp_path / "jwt.secret").read_text().strip()
    assert secret.startswith("stpj_")
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["created_at"] == 1700000000
    assert claims["idh"] == "h-123" and claims["exp"] - claims["iat"] == 60


def test_generated_secrets_carry_their_prefix_and_old_ones_still_work(tmp_path: Path) -> None:
    result = run("admin-token", data_dir=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("stpa_")
    old = tmp_path / "old"
    old.mkdir()
    (old / "admin.token").write_text("-tokenFromBeforeThePrefixes\n")  # kept as it is
    result = run("admin-token", data_dir=old)
    assert result.stdout.strip() == "-tokenFromBeforeThePrefixes"


# -- recover against a running service ----------------------------------------

@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("cli"))
    try:
        yield svc
    finally:
        svc.kill()


def _define(service: Service, cid: str, closes_in_s: float) -> None:
    now = datetime.now(UTC)
    spec = {"name": cid, "opens_at": (now - timedelta(minutes=1)).isoformat(),
            "closes_at": (now + timedelta(seconds=closes_in_s)).isoformat(),
            "skus": [{"sku": "tee", "price": 100,
                      "waves": [{"at": (now - timedelta(minutes=1)).isoformat(), "qty": 5}]}]}
    status, _ = http(f"{service.admin_url}/admin/v1/campaigns/{cid}",
                     {"Authorization": f"Bearer {service.admin_token()}"},
                     json.dumps(spec).encode(), "PUT")
    assert status == 201
    assert http(f"{service.url}/v1/campaigns/{cid}/claims", {"X-User-Id": "ann"},
                b'{"sku": "tee"}', "POST")[0] == 201


def test_recover_of_an_unknown_campaign_is_one_line(service: Service) -> None:
    one_line_error(run("recover", "nosuch", data_dir=service.data_dir),
                   "campaign 'nosuch' is not in the store")


def test_recover_asks_before_it_fences_a_live_campaign(service: Service) -> None:
    _define(service, "live", 3600)
    assert _wait_persisted(service, "live")
    # --dry-run: what would happen, nothing done.
    dry = run("recover", "live", "--dry-run", data_dir=service.data_dir)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert [(p["campaign_id"], p["live"]) for p in plan] == [("live", True)]
    # No terminal to ask on, no --yes: refused, and the campaign still sells.
    refused = run("recover", "live", data_dir=service.data_dir, stdin="y\n")
    one_line_error(refused, "refusing to rebuild live campaign(s) live", "--yes")
    assert http(f"{service.url}/v1/campaigns/live/claims", {"X-User-Id": "bea"},
                b'{"sku": "tee"}', "POST")[0] == 201  # not fenced: 503
    # --yes: rebuilt.
    done = run("recover", "live", "--yes", data_dir=service.data_dir)
    assert done.returncode == 0, done.stderr
    rebuilt = json.loads(done.stdout)
    assert [r["campaign_id"] for r in rebuilt] == ["live"] and rebuilt[0]["claims"] == 2


def test_recover_of_a_closed_campaign_needs_no_confirmation(service: Service) -> None:
    _define(service, "over", 2)
    assert _wait_persisted(service, "over")
    import time

    time.sleep(2.5)  # now closed
    done = run("recover", "over", data_dir=service.data_dir)
    assert done.returncode == 0, done.stderr
    assert [r["campaign_id"] for r in json.loads(done.stdout)] == ["over"]


def _wait_persisted(service: Service, cid: str) -> bool:
    from tests.system.service import wait_for

    def stored() -> bool:
        dry = run("recover", cid, "--dry-run", data_dir=service.data_dir)
        return dry.returncode == 0 and json.loads(dry.stdout)[0]["store_seq"] >= 2

    return wait_for(stored, 60)  # each look is a CLI process: slow on a loaded machine


def test_new_secrets_never_start_with_a_dash() -> None:
    from stampede.domain.admission import SECRET_PREFIXES, new_secret

    assert len(set(SECRET_PREFIXES.values())) == len(SECRET_PREFIXES)  # each kind its own
    for name, prefix in SECRET_PREFIXES.items():
        drawn = [new_secret(name) for _ in range(200)]  # unprefixed, ~3 would start with "-"
        assert all(s.startswith(prefix) and len(s) > 40 for s in drawn)


def test_recover_on_a_terminal_asks_and_takes_no_for_an_answer(service: Service) -> None:
    import shlex
    import shutil

    if shutil.which("script") is None:
        pytest.skip("needs util-linux `script` for a terminal")
    _define(service, "asked", 3600)
    assert _wait_persisted(service, "asked")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env["STAMPEDE_DATA_DIR"] = str(service.data_dir)
    # `script` gives the command a terminal; "n" answers its question.
    result = subprocess.run(["script", "-qec", shlex.join([STAMPEDE, "recover", "asked"]),
                             "/dev/null"], input="n\n", env=env, capture_output=True,
                            text=True, timeout=60)
    assert "Rebuild live campaign(s) asked?" in result.stdout, result.stdout
    assert "nothing rebuilt" in result.stdout and result.returncode == 1
    assert http(f"{service.url}/v1/campaigns/asked/claims", {"X-User-Id": "cid"},
                b'{"sku": "tee"}', "POST")[0] == 201  # never fenced

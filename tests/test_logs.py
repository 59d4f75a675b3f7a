"""Every line a Stampede process logs is one JSON object, and a repeating
error is written once per window with a count of what was suppressed.

Each case runs in a process of its own: logging's configuration is global.
"""

import json
import subprocess
import sys
import textwrap


def lines_of(code: str) -> list[dict[str, object]]:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = []
    for line in result.stderr.splitlines():
        out.append(json.loads(line))  # fails on any line that is not JSON
    return out


def test_standard_library_logs_and_their_tracebacks_are_json() -> None:
    lines = lines_of("""
        import logging
        from stampede import logs
        logs.configure()
        log = logging.getLogger("stampede.persister")
        log.warning("batch of %d failed; retrying entries one by one", 12)
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("persister round failed; retrying in %.1fs", 0.5)
        logs.log.info("listening", port=8000)
    """)
    assert [line["event"] for line in lines] == [
        "batch of 12 failed; retrying entries one by one",
        "persister round failed; retrying in 0.5s", "listening"]
    assert lines[0]["logger"] == "stampede.persister" and lines[0]["level"] == "warning"
    assert "ZeroDivisionError" in str(lines[1]["exception"])


def test_a_repeating_error_is_rate_limited_with_a_count() -> None:
    lines = lines_of("""
        import logging, time
        from stampede import logs
        logs.configure(window_s=0.3)
        log = logging.getLogger("stampede.periodic")
        for _ in range(50):
            try:
                raise ConnectionError("Redis is gone")
            except ConnectionError:
                log.exception("%s failed; retrying next tick", "sweeper")
            logs.log.warning("gateway limiter unavailable", error="ConnectionError")
        time.sleep(0.35)
        try:
            raise ConnectionError("Redis is gone")
        except ConnectionError:
            log.exception("%s failed; retrying next tick", "sweeper")
        logs.log.warning("gateway limiter unavailable", error="ConnectionError")
        try:
            raise TimeoutError("slow")  # another error: not a repeat
        except TimeoutError:
            log.exception("%s failed; retrying next tick", "sweeper")
        logs.log.info("listening")  # not an error: never limited
        logs.log.info("listening")
    """)
    events = [(line["event"], line.get("suppressed")) for line in lines]
    assert events == [
        ("sweeper failed; retrying next tick", None),
        ("gateway limiter unavailable", None),
        ("sweeper failed; retrying next tick", 49),
        ("gateway limiter unavailable", 49),
        ("sweeper failed; retrying next tick", None),
        ("listening", None), ("listening", None)]


def test_asyncio_errors_and_crashes_are_json() -> None:
    lines = lines_of("""
        import asyncio
        from stampede import logs
        logs.configure()

        async def main():
            asyncio.get_running_loop().set_exception_handler(logs.asyncio_exceptions)
            async def boom():
                raise ValueError("lost")
            task = asyncio.ensure_future(boom())
            await asyncio.sleep(0.01)
            del task  # never retrieved: the loop reports it when the task is collected
            import gc; gc.collect()
            await asyncio.sleep(0.01)

        asyncio.run(main())
        logs.log_crash(RuntimeError("the end"))
    """)
    assert lines[0]["event"].startswith("asyncio: Task exception was never retrieved")
    assert "ValueError: lost" in str(lines[0]["exception"])
    assert lines[1]["event"] == "crashed" and "RuntimeError: the end" in str(lines[1]["exception"])


def test_a_childs_plain_output_is_wrapped_in_json() -> None:
    lines = lines_of("""
        import io
        from stampede import logs
        logs.configure()
        child = io.BytesIO(b'{"event": "persisted", "level": "info"}\\n'
                           b'Traceback (most recent call last):\\n'
                           b'  File "x.py", line 1\\n\\n')
        logs.relay(child, "persister")
    """)
    assert lines[0] == {"event": "persisted", "level": "info"}
    assert [(line["event"], line["source"], line["line"]) for line in lines[1:]] == [
        ("child output", "persister", "Traceback (most recent call last):"),
        ("child output", "persister", '  File "x.py", line 1')]


def test_a_service_command_that_cannot_reach_its_store_says_so_in_one_line(
        tmp_path: object) -> None:
    # `stampede persist` (as serve's child) against a store it cannot open: one
    # line (serve wraps it in JSON with the rest of the child's output), exit 1.
    env = {"STAMPEDE_DATA_DIR": str(tmp_path), "STAMPEDE_REDIS_URL": "redis://127.0.0.1:1/0",
           "STAMPEDE_STORE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "stampede.runtime.cli", "persist", "--drain"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr.splitlines()[0]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

"""A Node script the tests run beside the service (Medplum's FHIR engine, the OpenID
provider): started, read until it prints its one ready line of JSON, and stopped."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from screening import PROJECT_ROOT


@contextmanager
def node_script(script: Path, args: list[str], workdir: Path, name: str) -> Iterator[Any]:
    """Run ``node script *args`` (its stderr in ``workdir/<name>.err``); yield the JSON it
    prints when ready; stop it on exit."""
    log_path = workdir / f"{name}.err"
    log = log_path.open("wb")
    process = subprocess.Popen(
        ["node", str(script), *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            raise AssertionError(f"{name} did not start: {log_path.read_text()}")
        yield json.loads(line)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        log.close()

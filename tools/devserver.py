"""``make run``: prepare a development instance and serve it on 127.0.0.1:8000.

Development only. Creates ``instance/`` (ignored by git), generates a portal and
a clinician API key once and keeps them in ``instance/dev-keys.json`` (mode
0600) so they survive restarts, applies the database migrations to the default
SQLite file in ``instance/``, prints the keys with a curl example, then starts
Flask's development server. Production runs gunicorn with real secrets (docs/operators.md).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

from screening import PROJECT_ROOT
from screening.services.keys import new_token
from screening.services.keys import token_digest

HOST, PORT = "127.0.0.1", 8000
INSTANCE = PROJECT_ROOT / "instance"
KEYS_FILE = INSTANCE / "dev-keys.json"


def _dev_secrets() -> dict[str, str]:
    """The development tokens and cookie secret, created on first use."""
    INSTANCE.mkdir(exist_ok=True)
    if KEYS_FILE.exists():
        return dict(json.loads(KEYS_FILE.read_text(encoding="utf-8")))
    data = {
        "dev-portal": new_token(),
        "dev-clinician": new_token(),
        "secret_key": secrets.token_hex(32),
    }
    KEYS_FILE.touch(mode=0o600)
    KEYS_FILE.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


def main() -> None:
    """Prepare the instance, print how to call it, and serve."""
    dev = _dev_secrets()
    env = dict(os.environ)
    env["SCREENING_API_KEYS"] = ",".join(
        f"{name}:{name.removeprefix('dev-')}:{token_digest(dev[name])}"
        for name in ("dev-portal", "dev-clinician")
    )
    env["SCREENING_SECRET_KEY"] = dev["secret_key"]
    env.setdefault("FLASK_DEBUG", "0")
    flask = [sys.executable, "-m", "flask", "--app", "screening"]
    subprocess.run([*flask, "db", "upgrade"], env=env, check=True)
    base = f"http://{HOST}:{PORT}"
    print(
        f"""
Development API keys (kept in {KEYS_FILE.relative_to(PROJECT_ROOT)}):
  portal     {dev["dev-portal"]}
  clinician  {dev["dev-clinician"]}

Try:
  curl {base}/v1/questionnaire
  curl -H 'Authorization: Bearer {dev["dev-clinician"]}' {base}/v1/screenings

Clinician review pages: {base}/review/ (sign in with the clinician token)

Serving on {base}  (Ctrl+C to stop)
""",
        flush=True,
    )
    os.execve(sys.executable, [*flask, "run", "--host", HOST, "--port", str(PORT)], env)


if __name__ == "__main__":
    main()

"""Cold start: wall time of a fresh ``python -c "import app"`` against the floor.

The floor is a fresh interpreter that imports chalice, pydantic and botocore and creates one
DynamoDB client: what any Chalice + DynamoDB function pays before running its own code. Runs
are interleaved (alternating order) so that machine noise hits both sides alike.

Run from the project root: ``.venv/bin/python bench/cold_start.py [--runs 15]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.3
FAKE = "testing"  # credentials never used: nothing here calls AWS
ENV = {
    "STAGE": "local",
    "TABLE_NAME": "ledger-local",
    "AWS_ACCESS_KEY_ID": FAKE,
    "AWS_SECRET_ACCESS_KEY": FAKE,
    "AWS_SESSION_TOKEN": FAKE,
    "AWS_DEFAULT_REGION": "us-east-1",
}
APP = "import app"
FLOOR = (
    "import chalice, pydantic, botocore.session; "
    "botocore.session.get_session().create_client('dynamodb', region_name='us-east-1')"
)
# What the first request adds: app.py defers PynamoDB/botocore until a route needs the table.
APP_READY = (
    "import app; from chalicelib.api.dependencies import get_bound_settings; get_bound_settings()"
)
BARE = "pass"
WATCHED = ("stripe", "boto3", "aws_xray_sdk", "pynamodb")
MODULES = f"import sys, json, app; print(json.dumps({{m: m in sys.modules for m in {WATCHED!r}}}))"


def run(code: str, root: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, *flags, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"`python -c {code!r}` failed in {root}:\n{done.stderr[-2000:]}")
    return done


def wall(code: str, root: Path) -> float:
    start = time.perf_counter()
    run(code, root)
    return time.perf_counter() - start


def top_imports(root: Path, count: int = 10) -> list[tuple[float, str]]:
    """The slowest imports by cumulative time, from ``-X importtime`` (microseconds -> ms)."""
    rows = []
    for line in run(APP, root, "-X", "importtime").stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(cumulative_us) / 1000, name.rstrip()))
    return sorted(rows, reverse=True)[:count]


def summary(label: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{label:<34} median {statistics.median(ms):7.1f} ms   "
        f"min {min(ms):7.1f}   max {max(ms):7.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs per side")
    parser.add_argument("--root", type=Path, default=ROOT, help="directory holding app.py")
    args = parser.parse_args()
    if not (args.root / "app.py").exists():
        sys.exit(f"no app.py in {args.root}")

    sides = {
        "import app": APP,
        "import app + bind models": APP_READY,
        "floor (chalice+pydantic+client)": FLOOR,
        "bare interpreter": BARE,
    }
    for code in sides.values():  # warm the pyc cache and the OS file cache
        run(code, args.root)
    times: dict[str, list[float]] = {label: [] for label in sides}
    for i in range(args.runs):
        order = list(sides.items())
        for label, code in order if i % 2 == 0 else reversed(order):
            times[label].append(wall(code, args.root))

    print(f"cold start over {args.runs} interleaved runs ({sys.executable}, cwd {args.root})")
    for label, seconds in times.items():
        print(summary(label, seconds))
    app_ms = statistics.median(times["import app"])
    floor_ms = statistics.median(times["floor (chalice+pydantic+client)"])
    ratio = app_ms / floor_ms
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"ratio import app / floor: {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}")
    ready = statistics.median(times["import app + bind models"]) / floor_ms
    print(f"ratio import app + bind models (first request's set-up) / floor: {ready:.2f}x")

    loaded = json.loads(run(MODULES, args.root).stdout.strip().splitlines()[-1])
    print("in sys.modules after import app:", ", ".join(f"{m}={v}" for m, v in loaded.items()))

    print("top 10 imports of app by cumulative time (python -X importtime):")
    for cumulative_ms, name in top_imports(args.root):
        print(f"  {cumulative_ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Coverage-guided fuzzing of bgpd's decoder and session machine with atheris (libFuzzer).

    python3 tests/fuzz/run.py --seconds 3600                 # both targets, an hour each
    python3 tests/fuzz/run.py --target session --seconds 60  # one target
    python3 tests/fuzz/run.py --replay                       # corpus + regressions, no atheris

Each target runs in its own process (libFuzzer exits when it stops), seeded from the committed
corpus (tests/fuzz/corpus, read only) and the regression inputs (tests/fuzz/regressions); new
interesting inputs go to --work (a temporary directory unless given). A crash leaves the input
as `crash-*` in --artifacts and makes the exit status non-zero: turn it into a regression by
copying it into tests/fuzz/regressions/ once fixed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
REGRESSIONS = HERE / "regressions"


def seed_files() -> list[Path]:
    return sorted(
        p for d in (CORPUS, REGRESSIONS) if d.is_dir() for p in d.iterdir() if p.is_file()
    )


def replay() -> int:
    """Run every seed through every target in this process (what CI always does)."""
    sys.path[:0] = [str(ROOT), str(HERE)]
    from targets import TARGETS

    count = 0
    for path in seed_files():
        data = path.read_bytes()
        for name, target in TARGETS.items():
            try:
                target(data)
            except Exception as exc:
                print(f"{name}: {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
            count += 1
    print(f"replayed {count} runs over {len(seed_files())} inputs")
    return 0


def fuzz_one(target: str, seconds: int, work: Path, artifacts: Path, jobs: int) -> int:
    """`target` under libFuzzer for `seconds`, in a child process."""
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        target,
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/{target}-",
        "-timeout=10",  # one input taking this long is a finding (a hang)
        "-rss_limit_mb=1024",
        "-max_len=70000",
        "-print_final_stats=1",
        str(work),  # libFuzzer writes new inputs into the first directory only
        *(str(d) for d in (CORPUS, REGRESSIONS) if d.is_dir()),
    ]
    if jobs > 1:
        args.insert(4, f"-fork={jobs}")
    print(f"fuzzing {target} for {seconds}s", flush=True)
    return subprocess.run(args, cwd=ROOT, check=False).returncode


def child(argv: list[str]) -> None:
    """Inside the fuzzing process: instrument bgpd, then hand control to libFuzzer."""
    import atheris

    target_name = argv[0]
    sys.path[:0] = [str(ROOT), str(HERE)]
    with atheris.instrument_imports(include=["bgpd", "targets"]):
        import targets
    target = targets.TARGETS[target_name]
    atheris.Setup([sys.argv[0], *argv[1:]], target)
    atheris.Fuzz()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=("decoder", "session", "all"), default="all")
    p.add_argument("--seconds", type=int, default=60, help="per target")
    p.add_argument("--jobs", type=int, default=1, help="libFuzzer -fork workers per target")
    p.add_argument("--work", type=Path, help="where new corpus inputs go (default: a temp dir)")
    p.add_argument("--artifacts", type=Path, default=Path(os.getcwd()) / "fuzz-artifacts")
    p.add_argument("--replay", action="store_true", help="only replay corpus and regressions")
    args = p.parse_args()
    if args.replay:
        return replay()
    names = ["decoder", "session"] if args.target == "all" else [args.target]
    status = 0
    with tempfile.TemporaryDirectory(prefix="pybgpd-fuzz-") as tmp:
        for name in names:
            work = (args.work or Path(tmp)) / name
            code = fuzz_one(name, args.seconds, work, args.artifacts, args.jobs)
            if code != 0:
                print(
                    f"{name}: libFuzzer exited with {code}; see {args.artifacts}", file=sys.stderr
                )
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

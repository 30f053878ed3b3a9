#!/usr/bin/env python3
"""Runs clang's thread-safety analysis over every hostd source of a configured
build directory (the thread-safety preset: clang, -Wthread-safety -Werror).

The analysis is part of clang's semantic checks, so each source is checked with
-fsyntax-only: no code is generated and nothing is linked, which makes this stage
a fraction of a full clang build. Generated sources (under the build directory)
are skipped; their headers must exist (the hostd_proto_gen target makes them).

Usage: scripts/thread_safety.py BUILD_DIR   (exit status 1 if any source fails)
"""
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys


def syntax_only(command: str) -> list[str]:
    """The compile command with its object output replaced by -fsyntax-only."""
    args, out, skip = shlex.split(command), [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c":
            out.append(a)
    return out + ["-fsyntax-only"]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    build = os.path.realpath(sys.argv[1])
    source = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
    db = os.path.join(build, "compile_commands.json")
    try:
        with open(db, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        print(f"thread_safety.py: cannot read {db}: {e}", file=sys.stderr)
        return 2
    entries = [e for e in entries
               if os.path.realpath(e["file"]).startswith(source + os.sep)
               and not os.path.realpath(e["file"]).startswith(build + os.sep)]

    def check(e):
        r = subprocess.run(syntax_only(e["command"]), cwd=e["directory"], capture_output=True, text=True)
        return e["file"], r.returncode, r.stdout + r.stderr

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for path, rc, text in pool.map(check, entries):
            if rc != 0:
                failed += 1
                print(f"FAILED {os.path.relpath(path, source)}\n{text}", flush=True)
    print(f"thread-safety analysis: {len(entries)} sources, {len(entries) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Runs clang's thread-safety analysis over every hostd source of a configured
build directory (the thread-safety preset: clang, -Wthread-safety -Werror).

The analysis is part of clang's semantic checks, so each source is checked with
-fsyntax-only: no code is generated and nothing is linked, which makes this stage
a fraction of a full clang build. The preset is a unity build, so each compile
command is a batch file that includes several sources and their headers are
parsed once per batch; every hostd source is in exactly one batch. Generated
sources (under the build directory) are skipped; their headers must exist (the
hostd_proto_gen target makes them).

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

    def ours(path: str) -> bool:
        path = os.path.realpath(path)
        return path.startswith(source + os.sep) and not path.startswith(build + os.sep)

    def sources_of(e) -> list[str]:
        """The hostd sources a compile command checks: the file, or those a unity
        batch includes (a batch of generated sources checks none)."""
        if not os.path.realpath(e["file"]).startswith(build + os.sep):
            return [e["file"]] if ours(e["file"]) else []
        with open(e["file"], encoding="utf-8") as f:
            included = [line.split('"')[1] for line in f if line.startswith('#include "')]
        return [p for p in included if ours(p)]

    entries = [(e, sources_of(e)) for e in entries]
    entries = [(e, srcs) for e, srcs in entries if srcs]
    total = sum(len(srcs) for _, srcs in entries)

    def check(entry):
        e, srcs = entry
        r = subprocess.run(syntax_only(e["command"]), cwd=e["directory"], capture_output=True, text=True)
        return srcs, r.returncode, r.stdout + r.stderr

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for srcs, rc, text in pool.map(check, entries):
            if rc != 0:
                failed += len(srcs)
                names = " ".join(os.path.relpath(p, source) for p in srcs)
                print(f"FAILED {names}\n{text}", flush=True)
    print(f"thread-safety analysis: {total} sources in {len(entries)} compile commands, "
          f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Functions in src/ longer than a limit (default 60 lines, signature to closing brace).

    python3 tools/long_functions.py [LIMIT]
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))? )?(?:const )?(?:async )?(?:unsafe )?fn (\w+)")


def long_functions(limit):
    out = []
    for path in sorted(SRC.rglob("*.rs")):
        lines = path.read_text().splitlines()
        in_tests = False
        for i, line in enumerate(lines):
            if line.startswith("#[cfg(test)]"):
                in_tests = True
            m = FN.match(line)
            if not m or in_tests:
                continue
            indent = m.group(1)
            for j in range(i, len(lines)):
                if lines[j] == f"{indent}}}" or (j == i and line.rstrip().endswith(";")):
                    break
            length = j - i + 1
            if length > limit:
                out.append((length, f"{path.relative_to(SRC)}::{m.group(2)}"))
    return sorted(out, reverse=True)


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    found = long_functions(limit)
    print(f"{len(found)} functions over {limit} lines")
    for length, name in found:
        print(f"  {length:4d}  {name}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""values.yaml is documented key by key, and README.md's values table says the same.

usage: docs.py [--write]

Every key of values.yaml carrying a value must have a "# --" comment on
itself or on a parent key. The README's table (after the values-table
marker) is generated from those comments; the check fails when it differs
from what values.yaml gives (--write regenerates it).
"""
import json
import os
import re
import sys

import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kipvs")
MARKER = "<!-- values-table: generated from values.yaml by charts/tests/docs.py --write -->"


def documented(text):
    """[(dotted key, description)] for each key with a "# --" comment."""
    stack, comment, rows = [], None, []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("# --"):
            comment = [s[4:].strip()]
            continue
        if s.startswith("#") and comment is not None:
            comment.append(s[1:].strip())
            continue
        m = re.match(r"^(\s*)([A-Za-z][\w]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if comment is not None:
            rows.append((".".join(k for _, k in stack), " ".join(comment)))
        comment = None
    return rows


def leaves(v, prefix=""):
    if isinstance(v, dict) and v:
        for k, sub in v.items():
            yield from leaves(sub, f"{prefix}{k}.")
    else:
        yield prefix[:-1]


def lookup(values, path):
    for k in path.split("."):
        values = values[k]
    return values


def main():
    text = open(os.path.join(CHART, "values.yaml")).read()
    values = yaml.safe_load(text)
    rows = documented(text)
    keys = {k for k, _ in rows}
    failed = False
    for leaf in leaves(values):
        parts = leaf.split(".")
        if not any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1)):
            print(f"FAIL: values.yaml: {leaf} has no '# --' comment (on itself or a parent)")
            failed = True
    for k, desc in rows:
        if "|" in desc:
            print(f"FAIL: the description of {k} contains '|', which breaks the table")
            failed = True
    table = "| Key | Default | Description |\n| --- | --- | --- |\n" + "".join(
        f"| `{k}` | `{json.dumps(lookup(values, k))}` | {d} |\n" for k, d in rows)
    readme_path = os.path.join(CHART, "README.md")
    readme = open(readme_path).read()
    if MARKER not in readme:
        sys.exit(f"FAIL: README.md lacks the marker {MARKER}")
    head = readme[:readme.index(MARKER) + len(MARKER)] + "\n"
    if len(sys.argv) > 1 and sys.argv[1] == "--write":
        open(readme_path, "w").write(head + table)
        print(f"wrote {len(rows)} rows")
        return
    if readme != head + table:
        print("FAIL: README.md's values table is not what values.yaml says; run charts/tests/docs.py --write")
        failed = True
    if failed:
        sys.exit(1)
    print(f"ok: {len(rows)} documented keys cover every value; README's table matches")


if __name__ == "__main__":
    main()

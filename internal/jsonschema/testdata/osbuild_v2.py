"""Answers, for forge's conformance test, how osbuild validates manifests.

Usage: python3 osbuild_v2.py OSBUILD_SOURCE_DIR < cases.json

cases.json is a JSON array of [key, path]. For each manifest at path, it
runs osbuild's own format-2 validation (osbuild.formats.v2.validate with
an osbuild.meta.Index over the source directory) and writes a JSON object
mapping key to {"errors": [[id, message], ...]} sorted by id then message,
or to {"exception": "..."} when osbuild raises instead.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])

import osbuild.formats.v2  # noqa: E402
import osbuild.meta  # noqa: E402

index = osbuild.meta.Index(sys.argv[1])
out = {}
for key, path in json.load(sys.stdin):
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    try:
        result = osbuild.formats.v2.validate(manifest, index)
    except Exception as e:  # pylint: disable=broad-except
        out[key] = {"exception": f"{type(e).__name__}: {e}"}
        continue
    errors = sorted([e.id, e.message] for e in result.errors)
    out[key] = {"errors": errors}
json.dump(out, sys.stdout, indent=1, sort_keys=True)
sys.stdout.write("\n")

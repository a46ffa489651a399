"""Answers, for forge's regex tests, what Python's re says.

Reads a JSON array of [pattern, [string, ...]] from stdin and writes a JSON
array with, per pattern, either {"error": message} when re.compile refuses
it, or {"match": [bool, ...]}, bool(re.search(pattern, string)) per string.
Strings arrive in JSON, so lone surrogates survive ("\\ud800").
"""
import json
import re
import sys
import warnings

warnings.simplefilter("ignore")
out = []
for pattern, strings in json.load(sys.stdin):
    try:
        rx = re.compile(pattern)
    except (re.error, OverflowError, ValueError) as e:
        out.append({"error": str(e)})
        continue
    out.append({"match": [bool(rx.search(s)) for s in strings]})
json.dump(out, sys.stdout)

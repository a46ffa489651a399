"""Answers, for forge's keyword tests, what python3-jsonschema says.

Reads a JSON array of [schema, instance] pairs, each a JSON text, from
stdin. For each it writes either {"schema_error": [path, message],
"schema_errors": [[path, message], ...]} when
Draft4Validator.check_schema refuses the schema (the error it raises, and
all the errors of the meta-schema), {"exception": text} when
validating raises, or {"errors": [[path, message], ...]}: the errors of
Draft4Validator(schema).iter_errors(instance), as a set sorted by path then
message, the path printed as osbuild prints a ValidationError's id.
"""
import json
import sys

import jsonschema


def path_id(path):
    if not path:
        return "."
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif " " in p:
            out += f".'{p}'"
        else:
            out += "." + p
    return out


META = jsonschema.Draft4Validator(
    jsonschema.Draft4Validator.META_SCHEMA,
    format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
out = []
for schema_text, instance_text in json.load(sys.stdin):
    schema = json.loads(schema_text)
    instance = json.loads(instance_text)
    try:
        jsonschema.Draft4Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        # All of check_schema's errors too: which one it raises can
        # depend on the order of a set, and so on PYTHONHASHSEED.
        every = {(path_id(err.absolute_path), err.message)
                 for err in META.iter_errors(schema)}
        out.append({"schema_error": [path_id(e.absolute_path), e.message],
                    "schema_errors": sorted(every)})
        continue
    except Exception as e:  # pylint: disable=broad-except
        out.append({"exception": f"{type(e).__name__}: {e}"})
        continue
    try:
        errors = {(path_id(e.absolute_path), e.message)
                  for e in jsonschema.Draft4Validator(schema).iter_errors(instance)}
    except BaseException as e:  # pylint: disable=broad-except
        # RecursionError, and the PanicException it becomes in
        # referencing's Rust parts, are not all Exceptions.
        if isinstance(e, KeyboardInterrupt):
            raise
        out.append({"exception": f"{type(e).__name__}: {e}"})
        continue
    out.append({"errors": sorted(errors)})
json.dump(out, sys.stdout)

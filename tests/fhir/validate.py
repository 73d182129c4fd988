#!/usr/bin/env python3
"""Validates FHIR resources against the R4B models of `fhir.resources`, an
independent implementation. Reads JSON documents (one per line: resources or
Bundles) on stdin; prints one line per error and `ok N` at the end; exits 1
on any error."""
import json
import sys

from fhir.resources.R4B import get_fhir_model_class


def validate(resource):
    model = get_fhir_model_class(resource["resourceType"])
    parse = getattr(model, "model_validate", None) or model.parse_obj
    parse(resource)


def main():
    count, errors = 0, 0
    for number, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        document = json.loads(line)
        todo = [document]
        if document.get("resourceType") == "Bundle":
            todo += [entry["resource"] for entry in document.get("entry", [])]
        for resource in todo:
            count += 1
            try:
                validate(resource)
            except Exception as error:  # noqa: BLE001 - report every failure
                errors += 1
                print(f"line {number}: {resource.get('resourceType')}/{resource.get('id')}: {error}")
    print(f"ok {count}" if errors == 0 else f"{errors} errors in {count} resources")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()

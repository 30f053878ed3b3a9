#!/usr/bin/python3
"""Parses a Prometheus text exposition with the Prometheus client's own parser.

Usage: parse_metrics.py FILE
Prints one JSON object: {"families": {name: type}, "samples": {key: value}}, where
key is the sample name followed by its labels sorted by name, as
name{a="x",b="y"} (just the name when it has none). Exits 1, saying why, when the
text does not parse. Used by tests/integration/operations_test.cc.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = {}
    samples = {}
    try:
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for s in family.samples:
                labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
                key = "%s{%s}" % (s.name, labels) if labels else s.name
                if key in samples:
                    raise ValueError("sample %s appears twice" % key)
                samples[key] = s.value
    except Exception as e:  # the parser raises ValueError and others on bad input
        print("metrics do not parse: %s" % e, file=sys.stderr)
        return 1
    json.dump({"families": families, "samples": samples}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

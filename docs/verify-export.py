#!/usr/bin/env python3
"""A second, independent verifier of `imx-event-log` v1 files, written from
docs/export-format.md alone (standard library only), to show that the format
is specified well enough. Usage: verify-export.py FILE [--expect-head HASH].
Exit 0 and "ok ..." when the file verifies; exit 1 and "run R seq S: ..." at
the first problem. Checks chains and order; it does not check the payload
schemas (use `imx replay verify` for those).

JCS caveats of this sketch: keys are sorted by code point (JCS: UTF-16 code
units; they differ only for keys mixing characters above U+FFFF with
U+E000..U+FFFF), and floats are written with Python's repr unless integral.
"""
import hashlib
import json
import re
import sys

GENESIS = "0" * 64
FIELDS = ["event_type", "payload", "position", "recorded_at", "run_id", "schema_version", "seq"]
HEX = re.compile(r"^[0-9a-f]{64}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def jcs(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        value = int(value)
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(jcs(k) + ":" + jcs(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def sha(*parts):
    return hashlib.sha256(b"".join(parts)).hexdigest()


def main(argv):
    path = argv[1]
    expect = argv[argv.index("--expect-head") + 1] if "--expect-head" in argv else None
    with open(path, encoding="utf-8") as lines:
        header = json.loads(next(lines))["header"]
        assert header["format"] == "imx-event-log" and header["format_version"] == 1
        run_scope = header["scope"]["run"] is not None
        since = header["scope"]["since"]
        position, log_hash = header["start"]["position"], header["start"]["log_hash"]
        runs, count, trailer = {}, 0, None

        def fail(e, what):
            print(f"run {e['run_id']} seq {e['seq']}: {what}")
            return 1

        for text in lines:
            obj = json.loads(text)
            if trailer is not None:
                print("a line follows the trailer")
                return 1
            if "trailer" in obj:
                trailer = obj["trailer"]
                continue
            e = obj
            if any(not HEX.match(e[k]) for k in ("prev_hash", "hash", "log_hash")) or not TIME.match(e["recorded_at"]):
                return fail(e, "malformed hash or recorded_at")
            last = runs.get(e["run_id"])
            if last is not None:
                if e["seq"] != last[0] + 1:
                    return fail(e, f"seq {e['seq']} after {last[0]}")
                prev = last[1]
            elif e["seq"] == 1:
                prev = GENESIS
            elif since > 0:
                prev = e["prev_hash"]
            else:
                return fail(e, "the run's first events are missing")
            if run_scope:
                if e["position"] <= position:
                    return fail(e, "position does not increase")
            elif e["position"] != position + 1:
                return fail(e, f"position {e['position']} where {position + 1} was expected")
            if e["prev_hash"] != prev:
                return fail(e, "prev_hash does not link")
            canonical = jcs({k: e[k] for k in FIELDS}).encode("utf-8")
            if sha(bytes.fromhex(e["prev_hash"]), canonical) != e["hash"]:
                return fail(e, "hash mismatch: the event was edited")
            if not run_scope and sha(bytes.fromhex(log_hash), bytes.fromhex(e["hash"])) != e["log_hash"]:
                return fail(e, "log_hash mismatch")
            runs[e["run_id"]] = (e["seq"], e["hash"])
            position, log_hash, count = e["position"], e["log_hash"], count + 1
        head = log_hash
        if run_scope:
            head = runs[header["scope"]["run"]][1] if header["scope"]["run"] in runs else GENESIS
        if trailer is None or (trailer["events"], trailer["head"], trailer["position"]) != (count, head, position):
            print("the trailer is missing or does not match: truncated or rewritten")
            return 1
        if expect is not None and expect != head:
            print(f"head {head}, expected {expect}: truncated or rewritten")
            return 1
        print(f"ok: {count} events in {len(runs)} runs, head {head}")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

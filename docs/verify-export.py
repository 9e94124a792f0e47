#!/usr/bin/env python3
"""A second, independent verifier of `imx-event-log` v1 files, written from
docs/export-format.md alone (standard library only), to show that the format
is specified well enough; and of signed checkpoints (docs/checkpoints.md,
Ed25519 with the PyPI package `cryptography`) and Merkle proofs
(docs/merkle.md).

Usage: verify-export.py FILE [--expect-head HASH] [--expect POSITION:HASH]...
                             [--trusted-keys KEYS --checkpoints FILE]
       verify-export.py --proof FILE [--root HASH]

Exit 0 and "ok ..." when the file verifies; exit 1 and "line N: ..." at the
first problem; with --trusted-keys, exit 3 when the chains verify but some
events are covered by no trusted checkpoint ("unprovable: ..."). Checks
every byte, line, key, chain and order rule of the document; it does not
check the payload schemas (use `imx replay verify`).
"""
import base64
import hashlib
import json
import math
import re
import sys

GENESIS = "0" * 64
LINE_BYTES_MAX = 3 * 1024 * 1024
FIELDS = ["event_type", "payload", "position", "recorded_at", "run_id", "schema_version", "seq"]
LINE_KEYS = set(FIELDS) | {"prev_hash", "hash", "log_hash"}
CHAIN = {
    "canonicalization": "rfc8785",
    "event_fields": FIELDS,
    "event_hash": "sha256(unhex(prev_hash) || jcs(event_fields))",
    "genesis": GENESIS,
    "hash": "sha-256",
    "log_hash": "sha256(unhex(prev_log_hash) || unhex(hash))",
    "recorded_at": "rfc3339, UTC, 6 fractional digits, Z",
}
HEX = re.compile(r"[0-9a-f]{64}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RECORDED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
EXPORTED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
INT_MAX = 2**53 - 1


class Refused(Exception):
    pass


def unique_object(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise Refused(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def parse_int(text):
    # "-0" is not an integer spelling of this format; as a float it is
    # refused where an integer is required and hashes as 0 in a payload.
    return -0.0 if text == "-0" else int(text)


def refuse_constant(name):
    raise Refused(f"{name} is not JSON")


def parse_line(raw):
    if b"\r" in raw:
        raise Refused("a carriage return (0x0D)")
    if len(raw) > LINE_BYTES_MAX:
        raise Refused(f"longer than {LINE_BYTES_MAX} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not UTF-8")
    try:
        return json.loads(text, object_pairs_hook=unique_object, parse_int=parse_int,
                          parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise Refused(f"not JSON: {error}")


def is_int(value, low=0):
    return type(value) is int and low <= value <= INT_MAX


def exact_keys(obj, keys, what):
    if not isinstance(obj, dict) or set(obj) != set(keys):
        raise Refused(f"{what} does not have exactly the keys {sorted(keys)}")


def es_number(value):
    """ECMAScript Number.prototype.toString, as RFC 8785 requires."""
    if type(value) is int:
        if abs(value) > INT_MAX:
            raise Refused(f"integer {value} beyond 2^53-1")
        return str(value)
    if not math.isfinite(value):
        raise Refused("a non-finite number")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    digits = mantissa.replace(".", "")
    point = (mantissa.index(".") if "." in mantissa else len(mantissa)) + int(exponent or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    exp = ("+" if e > 0 else "-") + str(abs(e))
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + exp


def jcs(value):
    if value is None or value is True or value is False:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return es_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
    return "{" + ",".join(jcs(k) + ":" + jcs(v) for k, v in items) + "}"


def sha(*parts):
    return hashlib.sha256(b"".join(parts)).hexdigest()


def check_header(obj):
    exact_keys(obj, ["header"], "the header line")
    header = obj["header"]
    exact_keys(header, ["format", "format_version", "chain", "scope", "start", "exported_at"], "header")
    if header["format"] != "imx-event-log" or header["format_version"] != 1 or type(header["format_version"]) is not int:
        raise Refused("not an imx-event-log v1 header")
    exact_keys(header["chain"], CHAIN, "chain")
    if header["chain"] != CHAIN:
        raise Refused("unknown chain parameters")
    scope, start = header["scope"], header["start"]
    exact_keys(scope, ["run", "since"], "scope")
    exact_keys(start, ["position", "log_hash"], "start")
    if scope["run"] is not None and not (isinstance(scope["run"], str) and UUID.fullmatch(scope["run"])):
        raise Refused("scope.run is not null or a lowercase UUID")
    if not is_int(scope["since"]) or not is_int(start["position"]):
        raise Refused("scope.since or start.position is not an integer")
    if not isinstance(start["log_hash"], str) or not HEX.fullmatch(start["log_hash"]):
        raise Refused("start.log_hash is not 64 lowercase hex digits")
    if start["position"] != scope["since"]:
        raise Refused("start.position is not scope.since")
    if start["position"] == 0 and start["log_hash"] != GENESIS:
        raise Refused("start at position 0 is not genesis")
    if not isinstance(header["exported_at"], str) or not EXPORTED_AT.fullmatch(header["exported_at"]):
        raise Refused("exported_at is not RFC 3339 UTC")
    return scope, start


class Verifier:
    def __init__(self, scope, start, expect, checkpoints=None):
        self.run_scope = scope["run"]
        self.since = scope["since"]
        self.position, self.log_hash = start["position"], start["log_hash"]
        self.runs, self.count = {}, 0
        self.expect = dict(expect)
        self.checked = []
        # Checkpoints: {tree_size: (log_hash, root, signers)}.
        self.checkpoints = dict(checkpoints or {})
        self.matched, self.first_unproven, self.line = [], None, 1
        self.leaves = [] if scope["run"] is None and scope["since"] == 0 else None
        self.expectation(self.position, self.log_hash)

    def expectation(self, position, found):
        expected = self.expect.pop(position, None)
        if expected is not None:
            if expected != found:
                raise Refused(f"the log hash at position {position} is {found}, --expect says {expected}")
            self.checked.append(position)
        checkpoint = self.checkpoints.pop(position, None)
        if checkpoint is not None and position > 0:
            log_hash, root, signers = checkpoint
            if log_hash != found:
                line, where = self.first_unproven or (self.line, "this event")
                raise Refused(
                    f"{where} is the first that may differ from the checkpoint of size {position} "
                    f"signed by {signers}: the log hash there is {found}, the checkpoint says {log_hash}",
                    line)
            if self.leaves is not None and merkle_root(self.leaves[:position]) != root:
                raise Refused(f"the Merkle root of the first {position} events is not the checkpoint's")
            self.matched.append(position)
            self.first_unproven = None

    def event(self, e):
        exact_keys(e, LINE_KEYS, "the event line")
        for key in ("run_id", "event_type", "recorded_at", "prev_hash", "hash", "log_hash"):
            if not isinstance(e[key], str):
                raise Refused(f"{key} is not a string")
        if not UUID.fullmatch(e["run_id"]):
            raise Refused("run_id is not a lowercase UUID")
        if not (is_int(e["seq"], 1) and is_int(e["position"], 1) and is_int(e["schema_version"])):
            raise Refused("seq, position or schema_version is not an integer in range")
        if any(not HEX.fullmatch(e[k]) for k in ("prev_hash", "hash", "log_hash")):
            raise Refused("a hash is not 64 lowercase hex digits")
        if not RECORDED_AT.fullmatch(e["recorded_at"]):
            raise Refused("recorded_at is not the canonical spelling")
        if e["schema_version"] != 1:
            raise Refused("schema_version is not 1")
        last = self.runs.get(e["run_id"])
        if last is not None:
            if e["seq"] != last[0] + 1:
                raise Refused(f"seq {e['seq']} after {last[0]}")
            prev = last[1]
        elif e["seq"] == 1:
            prev = GENESIS
        elif self.since > 0:
            prev = e["prev_hash"]
        else:
            raise Refused("the run's first events are missing")
        if self.run_scope is not None:
            if e["run_id"] != self.run_scope:
                raise Refused("an event of another run")
            if e["position"] <= self.position:
                raise Refused("position does not increase")
        elif e["position"] != self.position + 1:
            raise Refused(f"position {e['position']} where {self.position + 1} was expected")
        if e["prev_hash"] != prev:
            raise Refused("prev_hash does not link")
        canonical = jcs({k: e[k] for k in FIELDS}).encode("utf-8")
        if sha(bytes.fromhex(e["prev_hash"]), canonical) != e["hash"]:
            raise Refused("hash mismatch: the event was edited")
        if self.leaves is not None:
            self.leaves.append(bytes.fromhex(e["hash"]))
        linked = self.run_scope is None or e["position"] == self.position + 1
        if linked:
            if sha(bytes.fromhex(self.log_hash), bytes.fromhex(e["hash"])) != e["log_hash"]:
                raise Refused("log_hash mismatch")
            self.expectation(e["position"], e["log_hash"])
        self.runs[e["run_id"]] = (e["seq"], e["hash"])
        self.position, self.log_hash, self.count = e["position"], e["log_hash"], self.count + 1
        if self.first_unproven is None and (not self.matched or self.matched[-1] != e["position"]):
            self.first_unproven = (self.line, f"run {e['run_id']} seq {e['seq']} (position {e['position']})")

    def head(self):
        if self.run_scope is None:
            return self.log_hash
        return self.runs.get(self.run_scope, (0, GENESIS))[1]


def leaf_hash(event_hash):
    return hashlib.sha256(b"\x00" + event_hash).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 6962 MTH over leaf hashes."""
    if len(leaves) == 0:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def merkle_root(event_hashes):
    return mth([leaf_hash(h) for h in event_hashes])


ED25519 = 0x01


def key_id(name, public):
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public).digest()[:4]


def parse_keys(text):
    """Verifier keys `NAME+HASH+base64(0x01 || key)`, one per line."""
    keys = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, hash_, blob = line.split("+", 2)
        raw = base64.b64decode(blob, validate=True)
        if len(raw) != 33 or raw[0] != ED25519 or key_id(name, raw[1:]).hex() != hash_:
            raise SystemExit(f"not an Ed25519 verifier key: {line!r}")
        keys[(name, bytes.fromhex(hash_))] = raw[1:]
    return keys


CHECKPOINT_BODY = re.compile(
    r"([^\n]+)\n(0|[1-9][0-9]*)\n([A-Za-z0-9+/]{43}=)\nimx-log-hash ([0-9a-f]{64})\nimx-time-ms (-?[0-9]+)\n")


def verify_note(note, keys):
    """Returns (tree_size, log_hash, root, signers), or None without a
    trusted signature; raises SystemExit on a bad note or signature."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.exceptions import InvalidSignature
    body, sep, signatures = note.partition("\n\n")
    body += "\n"
    match = CHECKPOINT_BODY.fullmatch(body)
    if not sep or not match:
        raise SystemExit(f"not a checkpoint note: {note!r}")
    signers = []
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            raise SystemExit(f"not a signature line: {line!r}")
        name, blob = line[2:].split(" ", 1)
        raw = base64.b64decode(blob, validate=True)
        public = keys.get((name, raw[:4]))
        if public is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], body.encode())
        except InvalidSignature:
            raise SystemExit(f"the signature by {name}+{raw[:4].hex()} does not verify: forged")
        signers.append(f"{name}+{raw[:4].hex()}")
    if not signers:
        return None
    root = base64.b64decode(match.group(3))
    return int(match.group(2)), match.group(4), root, " ".join(signers)


def split_notes(text):
    """A checkpoints file: notes, each followed by one blank line."""
    notes, current, in_signatures = [], "", False
    for line in text.splitlines(keepends=True):
        if in_signatures and not line.startswith("\u2014"):
            notes.append(current)
            current, in_signatures = "", False
            if line == "\n":
                continue
        if line == "\n" and current and not in_signatures:
            in_signatures = True
        current += line
    if current.strip():
        notes.append(current)
    return notes


def read_checkpoints(keys_path, checkpoints_path):
    with open(keys_path, encoding="utf-8") as handle:
        keys = parse_keys(handle.read())
    with open(checkpoints_path, encoding="utf-8") as handle:
        notes = split_notes(handle.read())
    checkpoints, untrusted = {}, 0
    for note in notes:
        verified = verify_note(note, keys)
        if verified is None:
            untrusted += 1
            continue
        size, log_hash, root, signers = verified
        known = checkpoints.get(size)
        if known is not None and known[:2] != (log_hash, root):
            raise SystemExit(f"two trusted checkpoints of size {size} disagree: the signer showed two histories")
        checkpoints[size] = (log_hash, root, signers)
    return checkpoints, untrusted


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, path):
    """RFC 9162 section 2.1.4.2."""
    if first > second or first == 0:
        return False
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_root] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


PROOF_KEYS = {
    "inclusion": {"kind", "format", "format_version", "tree_size", "position", "run_id", "seq",
                  "event_hash", "root", "path"},
    "consistency": {"kind", "format", "format_version", "old_size", "new_size", "old_root",
                    "new_root", "path"},
}


def verify_proof(path, trusted_root=None):
    """Returns None when the proof verifies, else what is wrong."""
    with open(path, encoding="utf-8") as handle:
        proof = json.loads(handle.read(), object_pairs_hook=unique_object)
    kind = proof.get("kind")
    if kind not in PROOF_KEYS or set(proof) != PROOF_KEYS[kind] or proof["format"] != "imx-merkle-proof" \
            or proof["format_version"] != 1:
        return "not an imx-merkle-proof v1 file"
    unhex = bytes.fromhex
    path_hashes = [unhex(h) for h in proof["path"]]
    if kind == "inclusion":
        root = proof["root"]
        ok = verify_inclusion(proof["position"] - 1, proof["tree_size"],
                              leaf_hash(unhex(proof["event_hash"])), path_hashes, unhex(root))
    else:
        root = proof["new_root"]
        ok = verify_consistency(proof["old_size"], proof["new_size"], unhex(proof["old_root"]),
                                unhex(root), path_hashes)
    if not ok:
        return "the proof does not verify"
    if trusted_root is not None and trusted_root.lower() != root:
        return f"the proof's root {root} is not the trusted root {trusted_root}"
    return None


def verify(path, expect_head=None, expect=(), checkpoints=None):
    """Returns (summary, None) or (None, "line N: problem")."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        return None, "line 1: the file is empty"
    raws = data.split(b"\n")
    if raws[-1] != b"":
        return None, f"line {len(raws)}: the last line does not end with a line break"
    raws.pop()
    number = 0
    try:
        number = 1
        scope, start = check_header(parse_line(raws[0]))
        verifier = Verifier(scope, start, expect, checkpoints)
        trailer = None
        for number, raw in enumerate(raws[1:], start=2):
            verifier.line = number
            if trailer is not None:
                raise Refused("a line follows the trailer")
            obj = parse_line(raw)
            if isinstance(obj, dict) and "trailer" in obj:
                exact_keys(obj, ["trailer"], "the trailer line")
                trailer = obj["trailer"]
                exact_keys(trailer, ["events", "head", "position"], "trailer")
                found = (verifier.count, verifier.head(), verifier.position)
                if (trailer["events"], trailer["head"], trailer["position"]) != found or not all(
                        is_int(trailer[k]) for k in ("events", "position")):
                    raise Refused("the trailer does not match: truncated or rewritten")
                continue
            verifier.event(obj)
        if trailer is None:
            raise Refused("no trailer: the file was truncated")
        head = verifier.head()
        if expect_head is not None and expect_head.lower() != head:
            raise Refused(f"head {head}, expected {expect_head}: truncated or rewritten")
    except Refused as problem:
        line = problem.args[1] if len(problem.args) > 1 else number
        return None, f"line {line}: {problem.args[0]}"
    except UnicodeEncodeError:
        return None, f"line {number}: an escaped lone surrogate"
    except (KeyError, TypeError, AttributeError, IndexError) as problem:
        return None, f"line {number}: malformed: {problem!r}"
    return {"events": verifier.count, "runs": len(verifier.runs), "head": head,
            "position": verifier.position, "expect_checked": sorted(verifier.checked),
            "expect_not_covered": sorted(verifier.expect), "matched": verifier.matched,
            "unprovable": verifier.first_unproven}, None


def parse_expect(text):
    position, _, hash_ = text.partition(":")
    if not position.isdigit() or not HEX.fullmatch(hash_.lower()):
        raise SystemExit(f"--expect {text!r} is not POSITION:HASH")
    return int(position), hash_.lower()


def main(argv):
    args = argv[1:]
    path, expect_head, expect, keys, notes, proof, root = None, None, [], None, None, None, None
    while args:
        arg = args.pop(0)
        if arg == "--expect-head":
            expect_head = args.pop(0)
        elif arg == "--expect":
            expect.append(parse_expect(args.pop(0)))
        elif arg == "--trusted-keys":
            keys = args.pop(0)
        elif arg == "--checkpoints":
            notes = args.pop(0)
        elif arg == "--proof":
            proof = args.pop(0)
        elif arg == "--root":
            root = args.pop(0)
        else:
            path = arg
    if proof is not None:
        problem = verify_proof(proof, root)
        print(problem or "ok: the proof verifies")
        return 1 if problem else 0
    checkpoints = None
    if keys is not None:
        if notes is None:
            raise SystemExit("--trusted-keys needs --checkpoints FILE")
        checkpoints, untrusted = read_checkpoints(keys, notes)
        if untrusted:
            print(f"note: {untrusted} checkpoints are signed by no trusted key: not used")
    summary, problem = verify(path, expect_head, expect, checkpoints)
    if problem is not None:
        print(problem)
        return 1
    print(f"ok: {summary['events']} events in {summary['runs']} runs, head {summary['head']}")
    for position in summary["expect_not_covered"]:
        print(f"note: --expect {position}: not covered by this file, NOT checked")
    if checkpoints is not None:
        proven = summary["matched"][-1] if summary["matched"] else None
        print(f"checkpoints: {len(summary['matched'])} match; proven through position {proven}")
        if summary["unprovable"] is not None:
            print(f"unprovable: from line {summary['unprovable'][0]} to the end, covered by no trusted checkpoint")
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

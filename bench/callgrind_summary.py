#!/usr/bin/env python3
"""A callgrind dump as text, per request: instructions by category and the
top functions (exclusive cost). `callgrind_summary.py DUMP REQUESTS`
(bench/cost.sh writes these with PROFILES=DIR)."""
import re
import sys

dump, requests = sys.argv[1], int(sys.argv[2])


def exclusive_costs(path):
    """Exclusive instructions per (source file, function) from a callgrind
    dump: cost lines count for the function they are in, the line after
    `calls=` (a call's inclusive cost) does not. The file is where the code
    is (`fi=`/`fe=` for inlined code), so hyper code inlined into ours counts
    as hyper."""
    names = {"fl": {}, "fi": {}, "fn": {}}
    costs = {}
    fl = fi = fn = ""
    skip_next = False

    def name(kind, value):
        m = re.match(r"\((\d+)\)(?: (.*))?", value)
        if not m:
            return value
        table = names["fi" if kind in ("fi", "fe", "cfi", "cfl", "fl") else "fn"]
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    key = (fi or fl, fn)
                    costs[key] = costs.get(key, 0) + int(parts[1])
                continue
            k, _, v = line.partition("=")
            if k == "fl":
                fl = name("fl", v); fi = ""
            elif k in ("fi", "fe"):
                fi = name("fi", v)
            elif k == "fn":
                fn = name("fn", v); fi = ""
            elif k in ("cfl", "cfi", "cob"):
                name("fi", v) if k != "cob" else None
            elif k == "cfn":
                name("fn", v)
            elif k == "calls":
                skip_next = True
    return costs


costs = exclusive_costs(dump)
rows = sorted(((c, f"{fl}:{fn}") for (fl, fn), c in costs.items()), reverse=True)

# First match wins: the order matters (hyper's code inlined into ours is
# counted where its debug info says it is).
CATEGORIES = [
    ("allocator (malloc/free, mimalloc)", r"malloc|_int_free|free \[|arena\.c|__rdl_|__rust_alloc|__rust_dealloc|mimalloc|/mi_|mi_[a-z_]+|libmimalloc"),
    ("memcpy/memmove/memset", r"memmove|memcpy|memset|memcmp|bcmp"),
    ("hashing (SipHash, hashbrown)", r"hash/sip|hashbrown|foldhash|ahash|fxhash|/hash/"),
    ("tokio (scheduler, io, timers)", r"tokio-[0-9]"),
    ("hyper + hyper-util + httparse + http", r"hyper-[0-9]|hyper-util-|httparse-|/http-[0-9]|h2-[0-9]"),
    ("serde_json", r"serde_json-"),
    ("tower, tower-http, futures", r"tower-[0-9]|tower-http-|tower-service|futures-"),
    ("bytes", r"bytes-[0-9]"),
    ("metrics, tracing", r"metrics-|tracing-"),
    ("rpc-* crates (this workspace)", r"/work/|rpc-core|rpc-failover|rpc-cache|rpc-metrics|examples/proxy|/bench/src"),
    ("std/core/alloc (Rust runtime library)", r"/rustc/"),
    ("libc, kernel entry, other", r"."),
]
total = sum(r[0] for r in rows)
by = {name: 0 for name, _ in CATEGORIES}
for cost, where in rows:
    for name, pattern in CATEGORIES:
        if re.search(pattern, where):
            by[name] += cost
            break
print(f"# {dump.rsplit('/', 1)[-1]}: {total / requests / 1000:.1f} kinstr per request ({requests} requests)\n")
print("## By category (exclusive instructions per request)\n")
for name, _ in CATEGORIES:
    print(f"{by[name] / requests / 1000:8.2f} k  {name}")
print("\n## Top 40 functions (exclusive instructions per request)\n")
for cost, where in rows[:40]:
    where = re.sub(r"/root/\.cargo/registry/src/index\.crates\.io-[0-9a-f]+/|/rustc/[0-9a-f]+/", "", where)
    print(f"{cost / requests:8.0f}  {where[:160]}")

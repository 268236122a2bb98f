#!/usr/bin/env python3
"""Locked instructions a message, from a callgrind profile taken with --dump-instr=yes.

    callgrind-locked.py MESSAGES PROFILE

Every object file the profile names is disassembled with `objdump -d`, and the
instructions that lock the bus (a `lock` prefix, or `xchg` with a memory operand, which
locks without one) are matched to the profile's execution counts. Prints the total a
message and the functions that execute the most of them. scripts/callgrind-echo.sh --locked
calls it.
"""

import collections
import re
import subprocess
import sys

INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(.*)$")
DEFINITION = re.compile(r"^c?(?:ob|fn)=\((\d+)\)(?: (.*))?$")


def locked_addresses(path):
    """The addresses (as `objdump -d` gives them) of an object's bus-locking instructions."""
    try:
        listing = subprocess.run(["objdump", "-d", "-w", path],
                                 capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return set()
    found = set()
    for line in listing.splitlines():
        match = INSTRUCTION.match(line)
        if not match:
            continue
        text = match.group(2)
        if text.startswith("lock ") or (text.startswith("xchg") and "(" in text):
            found.add(int(match.group(1), 16))
    return found


def position(field, last):
    """A cost line's instruction address: absolute, relative (decimal) or `*` (the same)."""
    if field.startswith("0x"):
        return int(field, 16)
    if field == "*":
        return last
    if field[0] in "+-":
        return last + int(field)
    return int(field, 16)


def main():
    messages, profile = int(sys.argv[1]), sys.argv[2]
    # Callgrind writes an address inside a shared object or a position-independent
    # executable relative to where it was loaded, which is the address objdump prints.
    objects = {}
    names = {"ob": {}, "fn": {}}
    current = {"ob": None, "fn": None}
    address = 0
    skip_next = False
    per_function = collections.Counter()
    for line in open(profile):
        line = line.rstrip("\n")
        match = DEFINITION.match(line)
        if match:
            # Names are compressed: "(id) name" defines an id, "(id)" refers to it; a
            # call's "cob="/"cfn=" share the tables but do not change what is being read.
            kind = "ob" if "ob=" in line[:4] else "fn"
            if match.group(2):
                names[kind][match.group(1)] = match.group(2)
            if not line.startswith("c"):
                current[kind] = names[kind].get(match.group(1))
            continue
        if line.startswith("calls="):
            skip_next = True
            continue
        if not line[:1] or line[0] not in "0123456789+-*":
            continue
        fields = line.split()
        address = position(fields[0], address)
        if skip_next:
            skip_next = False
            continue
        path = current["ob"]
        if path not in objects:
            objects[path] = locked_addresses(path) if path and path.startswith("/") else set()
        if address in objects[path] and len(fields) > 2:
            per_function[current["fn"]] += int(fields[2])
    total = sum(per_function.values())
    print(f"locked instructions a message: {total / messages:.1f}")
    for name, count in per_function.most_common(12):
        print(f"  {count / messages:6.2f}  {name}")


if __name__ == "__main__":
    main()

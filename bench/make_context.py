#!/usr/bin/env python3
"""A large build context for the build benchmarks: N files of KB kilobytes each under DIR, in
200 subdirectories, every file different (its first four bytes are its number)."""
import os
import sys

d, n, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blob = os.urandom(kb * 1024)
for i in range(n):
    sub = os.path.join(d, "%03d" % (i % 200))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%05d" % i), "wb") as f:
        f.write(i.to_bytes(4, "little") + blob[4:])

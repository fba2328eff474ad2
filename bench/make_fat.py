#!/usr/bin/env python3
"""Writes fat.tar and fat2.tar (docker-save archives) from FIX/rootfs, like `docker build`
would for the peers' fat image: each layer a tar of changes, whiteouts for deletions."""
import hashlib, io, json, os, random, sys, tarfile

fix = sys.argv[1]
rootfs = os.path.join(fix, "rootfs")
rng = random.Random(42)

def layer_from_dir(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in sorted(os.listdir(path)):
            t.add(os.path.join(path, name), arcname=name, recursive=True)
    return buf.getvalue()

class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.t = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
    def dir(self, name):
        ti = tarfile.TarInfo(name); ti.type = tarfile.DIRTYPE; ti.mode = 0o755; ti.mtime = 1700000000
        self.t.addfile(ti)
    def file(self, name, data, mode=0o644):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = mode; ti.mtime = 1700000000
        self.t.addfile(ti, io.BytesIO(data))
    def done(self):
        self.t.close()
        return self.buf.getvalue()

print("layer 1: rootfs", flush=True)
l1 = layer_from_dir(rootfs)

print("layer 2: 50 MB random + 100 MB binary mix", flush=True)
l = Layer(); l.dir("data")
l.file("data/random.bin", rng.randbytes(50 << 20))
mix = bytearray()
for d in ["usr/bin", "usr/lib/x86_64-linux-gnu"]:
    for n in sorted(os.listdir(os.path.join(rootfs, d))):
        p = os.path.join(rootfs, d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            mix += open(p, "rb").read()
        if len(mix) >= 100 << 20: break
while len(mix) < 100 << 20: mix += bytes(mix)
l.file("data/binmix.bin", bytes(mix[:100 << 20]))
l2 = l.done()

print("layer 3: 2000 small files", flush=True)
l = Layer(); l.dir("data"); l.dir("data/small")
for d in range(1, 21):
    l.dir(f"data/small/d{d:02}")
    for f in range(1, 101):
        l.file(f"data/small/d{d:02}/f{f:03}.txt", rng.randbytes(((f % 4) + 1) * 768).hex().encode()[: ((f % 4) + 1) * 1024])
l3 = l.done()

print("layer 4: modified files", flush=True)
l = Layer(); l.dir("etc"); l.dir("usr"); l.dir("usr/lib"); l.dir("usr/lib/x86_64-linux-gnu")
l.file("etc/bash.bashrc", open(os.path.join(rootfs, "etc/bash.bashrc"), "rb").read() + b"# modified\n")
libc = os.path.join(rootfs, "usr/lib/x86_64-linux-gnu/libc.so.6")
l.file("usr/lib/x86_64-linux-gnu/libc.so.6", open(libc, "rb").read() + b"x\n", 0o755)
l4 = l.done()

print("layer 5: deletions", flush=True)
l = Layer(); l.dir("usr"); l.dir("usr/share"); l.dir("data"); l.dir("data/small"); l.dir("usr/bin")
l.file("usr/share/.wh.doc", b""); l.file("data/small/.wh.d01", b""); l.file("usr/bin/.wh.perl", b"")
l5 = l.done()

def write_image(path, layers, tag, cmd):
    diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(layers))],
    }, separators=(",", ":")).encode()
    cfg = hashlib.sha256(config).hexdigest() + ".json"
    with tarfile.open(path + ".tmp", "w") as t:
        names = []
        for d, data in zip(diff_ids, layers):
            n = d[7:] + "/layer.tar"; names.append(n)
            ti = tarfile.TarInfo(n); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo(cfg); ti.size = len(config); t.addfile(ti, io.BytesIO(config))
        m = json.dumps([{"Config": cfg, "RepoTags": [tag], "Layers": names}]).encode()
        ti = tarfile.TarInfo("manifest.json"); ti.size = len(m); t.addfile(ti, io.BytesIO(m))
    os.rename(path + ".tmp", path)

write_image(os.path.join(fix, "fat.tar"), [l1, l2, l3, l4, l5], "bench/fat:latest", ["/bin/bash"])
l = Layer(); l.dir("app"); l.file("app/data.bin", rng.randbytes(20 << 20))
write_image(os.path.join(fix, "fat2.tar"), [l1, l.done()], "bench/fat2:latest", ["/bin/sh"])
print("done", flush=True)

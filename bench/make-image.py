#!/usr/bin/env python3
"""Writes a docker-archive of a multi-layer image for the pull benchmark.

The layers hold real files of this machine (shared libraries, binaries,
data files, in sorted order, up to a byte budget per layer), so they
compress as real images do (about 2.5:1 with gzip). Usage:

    make-image.py OUT.tar [LAYERS] [MIB_PER_LAYER]
"""
import hashlib
import io
import json
import os
import sys
import tarfile

SOURCES = ["/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/share", "/usr/lib"]


def files():
    seen = set()
    for top in SOURCES:
        for root, dirs, names in os.walk(top):
            dirs.sort()
            for n in sorted(names):
                p = os.path.join(root, n)
                if p in seen or os.path.islink(p) or not os.path.isfile(p):
                    continue
                seen.add(p)
                yield p


def main():
    out = sys.argv[1]
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    budget = (int(sys.argv[3]) if len(sys.argv) > 3 else 66) << 20
    source = files()
    blobs, diff_ids = [], []
    for i in range(layers):
        buf = io.BytesIO()
        used = 0
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for p in source:
                try:
                    size = os.path.getsize(p)
                    if used + size > budget:
                        if used > budget * 0.95:
                            break
                        continue
                    t.add(p, arcname=f"layer{i}{p}", recursive=False)
                    used += size
                except OSError:
                    continue
        data = buf.getvalue()
        blobs.append(data)
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"layer {i}"} for i in range(layers)],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    with tarfile.open(out, "w") as t:
        def put(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        put(config_name, config)
        names = []
        for i, data in enumerate(blobs):
            name = f"{diff_ids[i][7:]}/layer.tar"
            put(name, data)
            names.append(name)
        put("manifest.json", json.dumps([{
            "Config": config_name,
            "RepoTags": ["bench/pull:1"],
            "Layers": names,
        }]).encode())
    total = sum(len(b) for b in blobs)
    print(f"{out}: {layers} layers, {total / 1e6:.0f} MB uncompressed")


if __name__ == "__main__":
    main()

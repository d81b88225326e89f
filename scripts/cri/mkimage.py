#!/usr/bin/env python3
"""Write a one-layer OCI image archive (OCI layout in a tar) that `ctr images import` accepts,
without a registry or any image tool. Standard library only.

  mkimage.py --name localhost/natra-test/pause:1 --out pause.tar --entrypoint /pause \
             --file ./pause:/pause [--file SRC:DEST ...]

Files are added with mode 0755 (executables) under root ownership; parent directories are created.
"""
import argparse, hashlib, io, json, os, tarfile, time


def blob(data: bytes):
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True, help="full image reference, e.g. localhost/x/pause:1")
    ap.add_argument("--out", required=True)
    ap.add_argument("--entrypoint", required=True, nargs="+")
    ap.add_argument("--file", action="append", default=[], help="SRC:DEST")
    a = ap.parse_args()

    # The layer: an uncompressed tar of the files (so diff_id == layer digest).
    lbuf = io.BytesIO()
    with tarfile.open(fileobj=lbuf, mode="w", format=tarfile.PAX_FORMAT) as lt:
        dirs = set()
        for spec in a.file:
            src, dest = spec.split(":", 1)
            dest = dest.lstrip("/")
            parts = dest.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
                    lt.addfile(ti)
            data = open(src, "rb").read()
            ti = tarfile.TarInfo(dest)
            ti.size, ti.mode, ti.mtime = len(data), 0o755, 0
            lt.addfile(ti, io.BytesIO(data))
    layer = lbuf.getvalue()
    ldig, lsize = blob(layer)

    config = json.dumps({
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": a.entrypoint, "WorkingDir": "/",
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [ldig]},
        "history": [{"created_by": "natra CRI tier (scripts/cri/mkimage.py)"}],
    }).encode()
    cdig, csize = blob(config)

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldig, "size": lsize}],
    }).encode()
    mdig, msize = blob(manifest)

    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
            "platform": {"architecture": "amd64", "os": "linux"},
            # ctr import names the image from io.containerd.image.name (full reference).
            "annotations": {"io.containerd.image.name": a.name,
                            "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[-1]},
        }],
    }).encode()

    with tarfile.open(a.out, "w") as out:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            out.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for d, data in ((ldig, layer), (cdig, config), (mdig, manifest)):
            add("blobs/sha256/" + d.split(":")[1], data)
    print(f"{a.name} {mdig} ({lsize} byte layer) -> {a.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write a small, deterministic OCI image layout for registry tests.

usage: mklayout.py OUTDIR [REVISION] [SOURCE]

OUTDIR gets an OCI layout (oci-layout, index.json, blobs/sha256/...) holding
  - tag "v1":    one linux/amd64 image;
  - tag "multi": an image index with a linux/amd64 and a linux/arm64 image.
Every image config carries the labels org.opencontainers.image.revision (REVISION, default a fixed
40-hex string) and org.opencontainers.image.source (SOURCE). Layers are gzip'd tars with zero
mtimes and JSON is written compactly with sorted keys, so the same arguments always give the same
digests. Prints {"v1": ..., "multi": ..., "amd64": ..., "arm64": ...} (manifest digests) as JSON.

Push with skopeo (keeps these digests):
  skopeo --insecure-policy copy --dest-tls-verify=false --preserve-digests \
      oci:OUTDIR:v1 docker://127.0.0.1:PORT/demo/hello:v1
  skopeo --insecure-policy copy --all --dest-tls-verify=false --preserve-digests \
      oci:OUTDIR:multi docker://127.0.0.1:PORT/demo/hello:multi
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def canonical(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class Layout:
    def __init__(self, root: str):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    def blob(self, data: bytes, media_type: str) -> dict:
        """Store DATA under its sha256 and return an OCI descriptor for it."""
        hexdigest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", hexdigest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + hexdigest, "size": len(data)}

    def layer(self, filename: str, content: str):
        """A one-file layer; returns (descriptor of the gzip blob, diff_id of the plain tar)."""
        tar_bytes = io.BytesIO()
        with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = content.encode()
            info = tarfile.TarInfo(filename)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        plain = tar_bytes.getvalue()
        desc = self.blob(gzip.compress(plain, mtime=0), OCI_LAYER_GZIP)
        return desc, "sha256:" + hashlib.sha256(plain).hexdigest()

    def image(self, arch: str, content: str, labels: dict) -> dict:
        """An image manifest for linux/ARCH; returns its descriptor with a platform."""
        layer, diff_id = self.layer("hello.txt", content)
        config = {
            "architecture": arch,
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.blob(canonical(config), OCI_CONFIG),
            "layers": [layer],
        }
        desc = self.blob(canonical(manifest), OCI_MANIFEST)
        desc["platform"] = {"architecture": arch, "os": "linux"}
        return desc


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    labels = {
        "org.opencontainers.image.revision": sys.argv[2] if len(sys.argv) > 2 else "0123456789abcdef0123456789abcdef01234567",
        "org.opencontainers.image.source": sys.argv[3] if len(sys.argv) > 3 else "https://github.com/example/hello",
    }
    layout = Layout(out)

    single = layout.image("amd64", "hello amd64\n", labels)
    tagged_single = {k: v for k, v in single.items() if k != "platform"}
    tagged_single["annotations"] = {REF_NAME: "v1"}

    amd64 = layout.image("amd64", "multi amd64\n", labels)
    arm64 = layout.image("arm64", "multi arm64\n", labels)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, arm64]}
    tagged_index = layout.blob(canonical(index), OCI_INDEX)
    tagged_index["annotations"] = {REF_NAME: "multi"}

    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX,
                   "manifests": [tagged_single, tagged_index]}, f)
    print(json.dumps({"v1": single["digest"], "multi": tagged_index["digest"],
                      "amd64": amd64["digest"], "arm64": arm64["digest"]}))


if __name__ == "__main__":
    main()

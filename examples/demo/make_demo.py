#!/usr/bin/env python3
"""Writes the demo's data: OCI images, a signed policy, signed evidence and AdmissionReviews.

usage: make_demo.py OUTDIR KEYDIR SOURCEDIR

Called by regenerate.sh, which makes the keys with openssl. KEYDIR holds policy.key.pem /
policy.pub.pem (signs the policy), build.key.pem / build.pub.pem (the build's functionary key)
and oidc.pub.pem (stands for the key of the OIDC issuer whose token the github attestor
verified; only its public half is recorded). SOURCEDIR holds the Rego modules. Uses only the Python standard library and the
`openssl` command (which does every signature), nothing of attestgate.

The story: a team's build pushes `demo/app` from main, with signed evidence that the docker
attestor names the pushed image; a feature branch pushes `demo/app:feature`, with signed
evidence that says so; someone pushes `demo/untested:v1` with no evidence at all.

Everything except the signatures is deterministic: the same inputs give the same images
(uncompressed layers, fixed times), the same statements and the same reviews. ECDSA
signatures are randomised, and new keys change the key ids, so signed files differ per run.
"""
import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

# The registry the bundled config and reviews name; scripts/demo.sh replaces it with the
# loopback registry it starts.
REGISTRY = "127.0.0.1:5000"
SOURCE = "https://github.com/example/attestgate-demo"
EXPIRES = "2036-01-01T00:00:00Z"
BUILT = "2026-12-01T10:00:00Z"

POLICY_TYPE = "https://witness.testifysec.com/policy/v0.1"
INTOTO_TYPE = "application/vnd.in-toto+json"
COLLECTION_TYPE = "https://witness.testifysec.com/attestation-collection/v0.1"
STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"
COMMAND_RUN = "https://witness.dev/attestations/command-run/v0.1"
GIT = "https://witness.dev/attestations/git/v0.1"
GITHUB = "https://witness.dev/attestations/github/v0.1"
DOCKER = "https://witness.dev/attestations/docker/v0.1"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"

# tag in the layout, repository:tag pushed, commit, git ref of the build, evidence or not.
IMAGES = [
    {
        "tag": "app-v1",
        "name": "demo/app:v1",
        "commit": "4f1c2d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
        "ref": "refs/heads/main",
        "evidence": "evidence/app-v1.json",
        "story": "built from main; signed evidence names this image",
    },
    {
        "tag": "app-feature",
        "name": "demo/app:feature",
        "commit": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
        "ref": "refs/heads/feature/new-checkout",
        "evidence": "evidence/app-feature.json",
        "story": "built from a feature branch; signed evidence says so",
    },
    {
        "tag": "untested-v1",
        "name": "demo/untested:v1",
        "commit": "27d3e0c5b1a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5",
        "ref": None,
        "evidence": None,
        "story": "pushed by hand; no evidence at all",
    },
]

# file, mode (the webhook path the API server would call), expected outcome, kind, namespace,
# name, image tag in the layout.
REVIEWS = [
    ("reviews/1-storefront.json", "enforce", "admitted", "Deployment", "shop", "storefront", "app-v1"),
    ("reviews/2-storefront-preview.json", "enforce", "denied", "Pod", "shop", "storefront-preview", "app-feature"),
    ("reviews/3-toolbox.json", "warn", "warned", "Deployment", "sandbox", "toolbox", "untested-v1"),
]


def canonical(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def pretty(value) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


class Key:
    """An openssl key pair on disk; witness's key id is the SHA-256 of the public PEM."""

    def __init__(self, private: str, public: str):
        self.private = private
        with open(public, "rb") as f:
            self.public_pem = f.read()
        self.keyid = hashlib.sha256(self.public_pem).hexdigest()

    def sign(self, message: bytes) -> bytes:
        """ECDSA P-256 over SHA-256, ASN.1 DER, as witness writes and reads it."""
        out = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.private],
            input=message, capture_output=True, check=True,
        )
        return out.stdout

    def jwk(self) -> dict:
        """The public key as a JWK (P-256: the last 64 bytes of the DER key are X and Y)."""
        der = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "DER"],
            input=self.public_pem, capture_output=True, check=True,
        ).stdout
        point = der[-64:]

        def b64url(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        return {"use": "sig", "kty": "EC", "kid": self.keyid[:16], "crv": "P-256",
                "alg": "ES256", "x": b64url(point[:32]), "y": b64url(point[32:])}

    def envelope(self, payload_type: str, payload: bytes) -> bytes:
        """A DSSE envelope: the signature is over the pre-authentication encoding."""
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)
        return pretty({
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"keyid": self.keyid, "sig": b64(self.sign(pae))}],
        })


# ---- images ---------------------------------------------------------------------------------

class Layout:
    """An OCI image layout: blobs by SHA-256, and index.json naming each image by a ref name."""

    def __init__(self, root: str):
        self.root = root
        self.tagged = []
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    def blob(self, data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        write(os.path.join(self.root, "blobs", "sha256", digest), data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def image(self, tag: str, text: str, labels: dict) -> str:
        """A linux/amd64 image with one file, `/demo.txt`; returns its manifest digest."""
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            data = text.encode()
            info = tarfile.TarInfo("demo.txt")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
        layer_desc = self.blob(layer.getvalue(), OCI_LAYER)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": BUILT,
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.blob(canonical(config), OCI_CONFIG),
            "layers": [layer_desc],
            "annotations": labels,
        }
        desc = self.blob(canonical(manifest), OCI_MANIFEST)
        self.tagged.append(dict(desc, annotations={REF_NAME: tag}))
        return desc["digest"]

    def finish(self) -> None:
        write(os.path.join(self.root, "oci-layout"), canonical({"imageLayoutVersion": "1.0.0"}) + b"\n")
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.tagged}
        write(os.path.join(self.root, "index.json"), pretty(index))


# ---- evidence -------------------------------------------------------------------------------

def collection(image: dict, digest_hex: str, oidc_jwk: dict) -> bytes:
    """The in-toto statement a witness/cilock run of step `build` leaves when it runs
    `docker buildx build --push --metadata-file …` with the git, github and docker attestors."""
    reference = f"{REGISTRY}/{image['name']}"
    commit, ref = image["commit"], image["ref"]
    run_url = f"{SOURCE}/actions/runs/1234567890"
    workflow = f"{SOURCE.removeprefix('https://github.com/')}/.github/workflows/build.yml@{ref}"
    claims = {
        "iss": "https://token.actions.githubusercontent.com",
        "aud": "witness",
        "sub": f"repo:{SOURCE.removeprefix('https://github.com/')}:ref:{ref}",
        "ref": ref,
        "ref_type": "branch",
        "sha": commit,
        "repository": SOURCE.removeprefix("https://github.com/"),
        "workflow_ref": workflow,
        "event_name": "push",
        "runner_environment": "github-hosted",
    }

    def sha256_of(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    subjects = [
        (f"{DOCKER}/imagedigest:{digest_hex}", {"sha256": digest_hex}),
        (f"{DOCKER}/imagereference:{reference}", {"sha256": sha256_of(reference)}),
        (f"{GIT}/commithash:{commit}", {"sha1": commit}),
        (f"{GITHUB}/pipelineurl:{run_url}", {"sha256": sha256_of(run_url)}),
        (f"{GITHUB}/projecturl:{SOURCE}", {"sha256": sha256_of(SOURCE)}),
    ]

    def entry(kind: str, attestation: dict) -> dict:
        return {"type": kind, "attestation": attestation, "starttime": BUILT, "endtime": BUILT}

    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": digest} for name, digest in subjects],
        "predicateType": COLLECTION_TYPE,
        "predicate": {
            "name": "build",
            "attestations": [
                entry(GIT, {
                    "commithash": commit,
                    "branch": ref.removeprefix("refs/heads/"),
                    "remotes": [SOURCE + ".git"],
                    "status": {},
                }),
                entry(GITHUB, {
                    "jwt": {"claims": claims, "verifiedBy": {
                        "jwksUrl": "https://token.actions.githubusercontent.com/.well-known/jwks",
                        "jwk": oidc_jwk,
                    }},
                    "ciconfigpath": ".github/workflows/build.yml",
                    "pipelineid": "1234567890",
                    "pipelinename": "build",
                    "pipelineurl": run_url,
                    "projecturl": SOURCE,
                    "cihost": "github-hosted",
                    "ciserverurl": "https://github.com",
                    "runnerarch": "X64",
                    "runneros": "Linux",
                }),
                entry(COMMAND_RUN, {
                    "cmd": ["docker", "buildx", "build", "--push", "--metadata-file",
                            "metadata.json", "-t", reference, "."],
                    "exitcode": 0,
                }),
                entry(DOCKER, {
                    "products": {digest_hex: {
                        "imagedigest": {"sha256": digest_hex},
                        "imagereferences": [reference],
                        "materials": {},
                    }},
                }),
            ],
        },
    }
    return canonical(statement)


# ---- policy ---------------------------------------------------------------------------------

def policy(build: Key, source_dir: str) -> bytes:
    def module(path: str) -> str:
        with open(path, "rb") as f:
            return b64(f.read())

    return pretty({
        "expires": EXPIRES,
        "publickeys": {build.keyid: {"keyid": build.keyid, "key": b64(build.public_pem)}},
        "steps": {
            "build": {
                "name": "build",
                "functionaries": [{"type": "publickey", "publickeyid": build.keyid}],
                "attestations": [
                    {"type": COMMAND_RUN, "regopolicies": [
                        {"name": "exit-code", "module": module(os.path.join(source_dir, "exit-code.rego"))},
                    ]},
                    {"type": GIT},
                    {"type": GITHUB, "regopolicies": [
                        {"name": "must-come-from-main", "module": module(
                            os.path.join(source_dir, "..", "tutorial", "must-come-from-main.rego"))},
                    ]},
                    {"type": DOCKER},
                ],
            },
        },
    })


# ---- admission reviews ----------------------------------------------------------------------

def review(uid: str, kind: str, namespace: str, name: str, image: str) -> bytes:
    container = {"name": name, "image": image}
    if kind == "Pod":
        obj = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"containers": [container]}}
        group, version, resource = "", "v1", "pods"
    else:
        labels = {"app": name}
        obj = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": namespace, "labels": labels},
               "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"containers": [container]}}}}
        group, version, resource = "apps", "v1", "deployments"
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": resource}
    return pretty({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "dev@example.test", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    })


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    out, keys, source_dir = sys.argv[1:]
    policy_key = Key(os.path.join(keys, "policy.key.pem"), os.path.join(keys, "policy.pub.pem"))
    build_key = Key(os.path.join(keys, "build.key.pem"), os.path.join(keys, "build.pub.pem"))
    oidc = Key(os.path.join(keys, "oidc.key.pem"), os.path.join(keys, "oidc.pub.pem"))

    layout = Layout(os.path.join(out, "images"))
    digests = {}
    for image in IMAGES:
        labels = {
            "org.opencontainers.image.revision": image["commit"],
            "org.opencontainers.image.source": SOURCE,
            "org.opencontainers.image.title": image["name"],
        }
        text = f"attestgate demo image {image['name']}: {image['story']}\n"
        digests[image["tag"]] = layout.image(image["tag"], text, labels)
    layout.finish()

    for image in IMAGES:
        if image["evidence"]:
            statement = collection(image, digests[image["tag"]].removeprefix("sha256:"), oidc.jwk())
            write(os.path.join(out, image["evidence"]), build_key.envelope(INTOTO_TYPE, statement))

    document = policy(build_key, source_dir)
    write(os.path.join(out, "policy.json"), document)
    write(os.path.join(out, "policy-signed.json"), policy_key.envelope(POLICY_TYPE, document))
    write(os.path.join(out, "policy-pubkey.pem"), policy_key.public_pem)
    write(os.path.join(out, "build-pubkey.pem"), build_key.public_pem)

    for i, (path, _, _, kind, namespace, name, tag) in enumerate(REVIEWS, start=1):
        image = next(im for im in IMAGES if im["tag"] == tag)
        uid = f"00000000-0000-4000-8000-00000000000{i}"
        write(os.path.join(out, path), review(uid, kind, namespace, name, f"{REGISTRY}/{image['name']}"))

    write(os.path.join(out, "demo.json"), pretty({
        "registry": REGISTRY,
        "policyExpires": EXPIRES,
        "policyKeyid": policy_key.keyid,
        "buildKeyid": build_key.keyid,
        "images": [
            {"layoutTag": im["tag"], "name": im["name"], "digest": digests[im["tag"]],
             "commit": im["commit"], "evidence": im["evidence"], "story": im["story"]}
            for im in IMAGES
        ],
        "reviews": [
            {"file": path, "mode": mode, "expect": expect, "object": f"{kind} {namespace}/{name}",
             "image": next(im["name"] for im in IMAGES if im["tag"] == tag)}
            for path, mode, expect, kind, namespace, name, tag in REVIEWS
        ],
    }))
    for image in IMAGES:
        print(f"  {image['name']:<18} {digests[image['tag']]}")


if __name__ == "__main__":
    main()

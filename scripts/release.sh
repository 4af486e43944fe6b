#!/usr/bin/env bash
# scripts/release.sh [--target TRIPLE] [--out DIR] [--binary FILE] [--dry-run]
#
# Builds the release tarball of the CLI for CI gates, the way the tutorial installs cilock:
#   OUT/attestgate-VERSION-TARGET.tar.gz         attestgate-VERSION-TARGET/{attestgate,README.md,BUILD-INFO}
#   OUT/attestgate-VERSION-TARGET.tar.gz.sha256  "HEX  attestgate-VERSION-TARGET.tar.gz" (sha256sum -c)
#
#   --target TRIPLE  default x86_64-unknown-linux-musl: a static binary that runs on any x86_64
#                    Linux. Needs `rustup target add x86_64-unknown-linux-musl` (tried once) and a
#                    musl C compiler for ring (Debian: apt-get install musl-tools). When either
#                    is missing and no --target was given, the script falls back to
#                    x86_64-unknown-linux-gnu (dynamically linked against glibc) and says so.
#   --out DIR        default target/dist
#   --binary FILE    package FILE instead of building (a binary built elsewhere for TRIPLE)
#   --dry-run        print what would be built and written, build nothing
#
# The tarball is reproducible for a given binary: sorted names, owner 0, mtimes of the last
# commit, gzip without a timestamp. VERSION is Cargo.toml's. The static musl binary is meant for
# the CI gate (`attestgate verify`); the webhook image (Dockerfile) is a glibc build, because
# musl's allocator is slow under the webhook's many threads.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

musl=x86_64-unknown-linux-musl
target=""
out=$repo/target/dist
binary=""
dry_run=0
while (($#)); do
  case $1 in
    --target) target=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "release.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# The version of the [package] section.
version=$(awk '/^\[/{section=$0} section=="[package]" && $1=="version" {gsub(/"/, "", $3); print $3; exit}' Cargo.toml)
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([.+-][0-9A-Za-z.+-]+)?$ ]] || die "cannot read the version from Cargo.toml (got '$version')"

musl_ready() {
  rustup target list --installed 2>/dev/null | grep -qx "$musl" ||
    { say "adding the Rust target $musl (rustup target add $musl)"; rustup target add "$musl" >&2; } ||
    return 1
  [[ -n "${CC_x86_64_unknown_linux_musl:-}" ]] || command -v musl-gcc >/dev/null ||
    { say "no musl C compiler for ring: apt-get install musl-tools, or set CC_x86_64_unknown_linux_musl"; return 1; }
}

if [[ -z "$target" ]]; then
  if [[ -n "$binary" ]]; then
    die "--binary needs --target (the triple the binary was built for)"
  elif ((dry_run)) || musl_ready; then
    target=$musl
  else
    target=x86_64-unknown-linux-gnu
    say "WARNING: falling back to $target: the binary is NOT static (it needs glibc $(ldd --version 2>/dev/null | head -n1 | awk '{print $NF}') or newer)"
  fi
elif [[ "$target" == "$musl" && -z "$binary" ]] && ((dry_run == 0)); then
  musl_ready || die "cannot build for $musl here"
fi

name=attestgate-$version-$target
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=""
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  dirty=" (with uncommitted changes)"
fi
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)

if ((dry_run)); then
  echo "version  $version"
  echo "target   $target"
  echo "commit   $commit$dirty"
  if [[ -n "$binary" ]]; then
    echo "binary   $binary (not built)"
  else
    echo "build    cargo build --release --locked --target $target --bin attestgate"
  fi
  echo "writes   $out/$name.tar.gz"
  echo "         $out/$name.tar.gz.sha256"
  exit 0
fi
[[ -n "$dirty" ]] && say "WARNING: the working tree has uncommitted changes; BUILD-INFO says so"

if [[ -z "$binary" ]]; then
  say "building $name"
  if [[ "$target" == "$musl" && -z "${CC_x86_64_unknown_linux_musl:-}" ]]; then
    export CC_x86_64_unknown_linux_musl=musl-gcc
  fi
  cargo build --release --locked --target "$target" --bin attestgate
  binary=${CARGO_TARGET_DIR:-target}/$target/release/attestgate
fi
[[ -x "$binary" ]] || die "$binary is not an executable file"
[[ "$(head -c4 "$binary" | od -An -c | tr -d ' ')" == 177ELF ]] || die "$binary is not an ELF executable"

linkage="unknown (readelf not installed)"
if command -v readelf >/dev/null; then
  if readelf -d "$binary" 2>/dev/null | grep -q '(NEEDED)'; then
    linkage="dynamic: $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd, -)"
  else
    linkage=static
  fi
fi
if [[ "$target" == *-musl && "$linkage" != static && "$linkage" != unknown* ]]; then
  die "$binary was built for $target but is $linkage"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name" "$out"
install -m 0755 "$binary" "$stage/$name/attestgate"
install -m 0644 README.md "$stage/$name/README.md"
{
  echo "attestgate $version"
  echo "target  $target"
  echo "linkage $linkage"
  echo "commit  $commit$dirty"
  echo "rustc   $(rustc --version 2>/dev/null || echo unknown)"
} >"$stage/$name/BUILD-INFO"
chmod 0644 "$stage/$name/BUILD-INFO"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")

# Check what a user will check, on the files as written.
(cd "$out" && sha256sum -c --quiet "$name.tar.gz.sha256")
mkdir "$stage/check"
tar -xzf "$out/$name.tar.gz" -C "$stage/check"
"$stage/check/$name/attestgate" --version >/dev/null || say "note: the packaged binary does not run on this machine"

say "wrote $out/$name.tar.gz ($linkage) and $name.tar.gz.sha256:"
cat "$out/$name.tar.gz.sha256"

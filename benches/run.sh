#!/usr/bin/env bash
# Runs the webhook load harness (benches/webhook_load) from one command: builds the release
# binaries (`cargo bench` builds `attestgate` and the harness with the release profile), starts
# the real Debian docker-registry and the real Archivista on loopback (tests/peers/start-*.sh;
# without Archivista the evidence goes to a directory), runs every scenario against
# `attestgate serve` and the floor server, and writes the Markdown report to
# target/webhook_load/report.md (also printed). Takes about 5 minutes on 2 cores once built.
#
#   benches/run.sh                 # every scenario, default sizes
#   benches/run.sh --quick         # small sizes, about a minute
#   benches/run.sh --only warm     # one scenario; --help lists every option
#
# Needs: docker-registry, python3, curl, openssl (.ci/peers-evidence.sh installs them and builds
# Archivista). Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench webhook_load -- "$@"

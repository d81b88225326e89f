#!/bin/sh
# Build the cnitool test helper offline (no module proxy needed):
#   tests/cnitool/build.sh OUTPUT_PATH
# GOPATH mode against Debian's golang-github-appc-cni-dev (libcni v1.1.2 in
# /usr/share/gocode). The source dir is symlinked into a temporary GOPATH.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUTPUT_PATH" >&2; exit 2; }
case "$1" in /*) out="$1" ;; *) out="$(pwd)/$1" ;; esac
src="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/gopath/src"
ln -s "$src" "$tmp/gopath/src/cnitool"
cd "$tmp/gopath/src/cnitool"
GO111MODULE=off GOFLAGS= GOPATH="$tmp/gopath:/usr/share/gocode" \
	GOCACHE="${GOCACHE:-$tmp/cache}" CGO_ENABLED=0 \
	go build -o "$out" cnitool

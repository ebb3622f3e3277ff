#!/usr/bin/env bash
# Builds the pinned real peers (Consul, Jaeger, SPIRE) into .tools/bin, each
# from its own Go module under tools/, only when missing. Built binaries are
# also cached outside the clone, in ${XDG_CACHE_HOME:-~/.cache}/outrider/tools,
# keyed by tool version and by the hash of its go.sum, so a fresh clone (CI)
# copies them instead of rebuilding.
#
# Usage: tools/build.sh consul|jaeger|spire ...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/outrider/tools"
mkdir -p "$bin"

# tool -> "version package... "
spec() {
  case "$1" in
    consul) echo "v1.15.4 github.com/hashicorp/consul" ;;
    jaeger) echo "v1.76.0 github.com/jaegertracing/jaeger/cmd/jaeger" ;;
    spire)  echo "v1.13.3 github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent" ;;
    *) echo "tools/build.sh: unknown tool $1 (want consul, jaeger or spire)" >&2; exit 2 ;;
  esac
}

# build_one tool: ensure every binary of the tool is in .tools/bin.
build_one() {
  local tool=$1 version pkgs
  read -r version pkgs <<<"$(spec "$tool")"
  local mod="$root/tools/$tool"
  local key="$tool-$version-$(sha256sum "$mod/go.sum" | cut -c1-12)"
  local cache="$cache_root/$key"
  local stamp="$bin/.$tool.stamp"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
    local ok=1
    for p in $pkgs; do [[ -x "$bin/$(basename "$p")" ]] || ok=0; done
    if [[ $ok == 1 ]]; then return 0; fi
  fi
  local missing=0
  for p in $pkgs; do [[ -x "$cache/$(basename "$p")" ]] || missing=1; done
  if [[ $missing == 1 ]]; then
    echo "tools: building $tool $version from the Go module proxy (first time only: about 3-10 minutes on 2 cores; cached in $cache)" >&2
    mkdir -p "$cache.tmp"
    local start=$SECONDS
    (
      cd "$mod"
      # Progress: print the number of packages compiled every 20 s.
      go build -v -o "$cache.tmp/" $pkgs 2>"$cache.tmp/build.log" &
      pid=$!
      while kill -0 "$pid" 2>/dev/null; do
        sleep 20
        kill -0 "$pid" 2>/dev/null && echo "tools: $tool: $((SECONDS - start))s, $(wc -l <"$cache.tmp/build.log") packages compiled..." >&2
      done
      wait "$pid" || { tail -n 30 "$cache.tmp/build.log" >&2; exit 1; }
    )
    rm -f "$cache.tmp/build.log"
    rm -rf "$cache"
    mv "$cache.tmp" "$cache"
    echo "tools: $tool $version built in $((SECONDS - start))s" >&2
  fi
  for p in $pkgs; do cp -f "$cache/$(basename "$p")" "$bin/"; done
  echo "$key" >"$stamp"
  echo "tools: $tool $version ready in .tools/bin" >&2
}

[[ $# -gt 0 ]] || set -- consul jaeger spire
for t in "$@"; do build_one "$t"; done

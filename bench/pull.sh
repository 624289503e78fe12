#!/usr/bin/env bash
# Benchmark: pull of a ~200 MB, 3-layer image (made offline from this
# machine's files by bench/make-image.py) from Debian's docker-registry on
# 127.0.0.1 into an empty store, against `skopeo copy docker://… oci:DIR`
# (downloads and verifies, does not unpack) and, when installed,
# `podman pull` (downloads and unpacks), in the same run. Then the parts
# of the work timed alone, to say where the time goes. Needs root,
# docker-registry, skopeo, hyperfine, python3 and a release build. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
berth=$PWD/target/release/berth
[ -x "$berth" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /var/tmp/berth-bench-pull-XXXXXX)
regpid=
cleanup() {
  [ -n "$regpid" ] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
regpid=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done

python3 bench/make-image.py "$work/image.tar"
image=127.0.0.1:$port/bench/pull:1
skopeo copy -q --dest-tls-verify=false "docker-archive:$work/image.tar" "docker://$image"
blobs=$work/registry/docker/registry/v2/blobs/sha256
compressed=$(skopeo inspect --raw --tls-verify=false "docker://$image" |
  python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
echo "image: $image, layers $((compressed / 1000000)) MB compressed"

cmds=(--prepare "rm -rf $work/berth" -n "berth pull"
        "$berth --root $work/berth pull -q $image"
      --prepare "rm -rf $work/oci" -n "skopeo copy (no unpack)"
        "skopeo copy -q --src-tls-verify=false docker://$image oci:$work/oci")
if command -v podman >/dev/null; then
  podman_store="--root $work/podman --runroot $work/podman-run --storage-driver overlay"
  cmds+=(--prepare "podman $podman_store rmi -af >/dev/null 2>&1 || true" -n "podman pull"
           "podman $podman_store pull -q --tls-verify=false $image")
fi
hyperfine --runs "$runs" --warmup 1 --export-json "$work/pull.json" "${cmds[@]}"

python3 - "$work/pull.json" "$compressed" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2]) / 1e6
median = {r["command"]: r["median"] for r in results}
berth = median["berth pull"]
for name, t in median.items():
    print(f"{name:26} median {t:6.3f} s  {size / t:6.1f} MB/s (compressed)  {t / berth:5.2f}x berth")
PY

# Where the time goes: each part of berth's pipeline alone, on one core.
echo "parts, summed over the layers (one core each):"
layers=$(skopeo inspect --raw --tls-verify=false "docker://$image" |
  python3 -c 'import json,sys; print(" ".join(l["digest"][7:] for l in json.load(sys.stdin)["layers"]))')
part() { local label=$1; shift; local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); printf '  %-34s %6.3f s\n' "$label" "$(echo "$t1 - $t0" | bc)"; }
fetch_all() { for l in $layers; do curl -s "http://127.0.0.1:$port/v2/bench/pull/blobs/sha256:$l" -o /dev/null; done; }
sha_compressed() { for l in $layers; do sha256sum "$blobs/${l:0:2}/$l/data" >/dev/null; done; }
gunzip_all() { for l in $layers; do gzip -dc "$blobs/${l:0:2}/$l/data" >/dev/null; done; }
sha_uncompressed() { for l in $layers; do gzip -dc "$blobs/${l:0:2}/$l/data" | sha256sum >/dev/null; done; }
untar() { mkdir -p "$work/untar"; for l in $layers; do gzip -dc "$blobs/${l:0:2}/$l/data" | tar -C "$work/untar" -xf -; done; }
part "network (curl of every blob)" fetch_all
part "sha256 of the compressed blobs" sha_compressed
part "gunzip" gunzip_all
part "gunzip + sha256 of the tar" sha_uncompressed
part "gunzip + tar -x (page cache)" untar
part "sync of what tar wrote" sync

#!/usr/bin/env bash
# Benchmark: containers that outlive the command, on a busybox image
# imported offline, against Debian's podman (with runc: crun refuses this
# machine's hybrid cgroups) in the same run:
#   - `run -d IMAGE sleep` until the command returns (container running);
#   - `ps -a` with N running containers (N=200 by default);
#   - the resident memory of berth's monitor against podman's conmon.
# Needs root, busybox-static, hyperfine and a release build. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${CONTAINERS:-200}
runs=${RUNS:-20}
berth=$PWD/target/release/berth
[ -x "$berth" ] && [ -x "$PWD/target/release/berth-monitor" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /tmp/berth-bench-containers-XXXXXX)
B="$berth --root $work/store"
P="podman --root $work/podman --runroot $work/podman-run --runtime runc"
have_podman=
cleanup() {
  $B ps -aq --no-trunc 2>/dev/null | xargs -r $B rm -f >/dev/null 2>&1 || true
  [ -n "$have_podman" ] && $P rm -af -t 0 >/dev/null 2>&1 || true
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done || true
  # podman's own cleanup of its containers may still be writing its store.
  rm -rf "$work" 2>/dev/null || { sleep 2; rm -rf "$work"; }
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
for a in sh sleep true; do ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
$B import "$work/rootfs.tar" bench/busybox >/dev/null

cmds=(-n "berth run -d" "$B run -d bench/busybox sleep 600")
if command -v podman >/dev/null; then
  printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' > "$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
  $B save -o "$work/image.tar" bench/busybox
  $P load -q -i "$work/image.tar" >/dev/null
  image=$($P images --format '{{.Repository}}' | head -1)
  if $P run -d --network none "$image" sleep 600 >/dev/null 2>"$work/podman.err"; then
    have_podman=1
    cmds+=(-n "podman run -d (runc)" "$P run -d --network none $image sleep 600")
  else
    echo "# podman cannot run containers here: $(tail -1 "$work/podman.err")" >&2
  fi
fi

echo "== run -d, until the command returns ($runs runs each)"
hyperfine -N --warmup 2 --runs "$runs" --export-json "$work/rund.json" "${cmds[@]}" >/dev/null
python3 - "$work/rund.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["median"]
for x in r:
    print(f"  {x['command']:<24} median {x['median']*1000:7.1f} ms  {x['median']/base:5.2f}x berth")
PY

echo "== memory per running container"
rss() { ps -C "$1" -o rss= | awk '{s+=$1; n++} END {if (n) printf "%d processes, %.0f KiB RSS each on average\n", n, s/n; else print "none running"}'; }
echo "  berth-monitor: $(rss berth-monitor)"
[ -n "$have_podman" ] && echo "  conmon:        $(rss conmon)"

echo "== ps -a with $n running containers"
have=$($B ps -q | wc -l)
for _ in $(seq "$have" $((n - 1))); do $B run -d bench/busybox sleep 600 >/dev/null; done
pcmds=(-n "berth ps -a" "$B ps -a")
if [ -n "$have_podman" ]; then
  have=$($P ps -q | wc -l)
  for _ in $(seq "$have" $((n - 1))); do $P run -d --network none "$image" sleep 600 >/dev/null; done
  pcmds+=(-n "podman ps -a" "$P ps -a")
fi
echo "  berth: $($B ps -q | wc -l) running; podman: $([ -n "$have_podman" ] && $P ps -q | wc -l)"
hyperfine -N --warmup 2 --runs "$runs" --export-json "$work/ps.json" "${pcmds[@]}" >/dev/null
python3 - "$work/ps.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["median"]
for x in r:
    print(f"  {x['command']:<24} median {x['median']*1000:7.1f} ms  {x['median']/base:5.2f}x berth")
PY
echo "  berth-monitor: $(rss berth-monitor)"
[ -n "$have_podman" ] && echo "  conmon:        $(rss conmon)"

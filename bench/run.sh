#!/usr/bin/env bash
# Benchmark: `berth run --rm IMAGE true` end to end (CLI start to exit) on
# a busybox image imported offline, against the bare `berth-runtime run`,
# `runc run` and `crun run` of a bundle with the same rootfs and, when
# installed, `podman run --rm` (with runc: crun refuses this machine's
# hybrid cgroups). Medians from
# hyperfine, in one run. Needs root, busybox-static, hyperfine and a
# release build. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-50}
berth=$PWD/target/release/berth
runtime=$PWD/target/release/berth-runtime
[ -x "$berth" ] && [ -x "$runtime" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /tmp/berth-bench-XXXXXX)
cleanup() {
  # podman's overlay driver leaves its store mounted.
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev"
cp /bin/busybox "$work/rootfs/bin/"
ln -s busybox "$work/rootfs/bin/true"
ln -s busybox "$work/rootfs/bin/sh"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$berth" --root "$work/store" import "$work/rootfs.tar" bench/busybox >/dev/null

# The bare runtimes' bundle: the same files as a plain directory (runc
# refuses a symlinked rootfs), the spec's defaults, OCI 1.0.2 (crun 1.8
# knows no later one).
mkdir -p "$work/bundle"
cp -a "$work/rootfs" "$work/bundle/rootfs"
(cd "$work/bundle" && "$runtime" spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["ociVersion"] = "1.0.2"
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
c["linux"]["cgroupsPath"] = "berth/bench-bundle"
json.dump(c, open(p, "w"))
PY

cmds=(-n "berth run --rm" "$berth --root $work/store run --rm bench/busybox true"
      -n "berth-runtime run" "$runtime --root $work/state run --bundle $work/bundle bench")
# The bare peers, when they can run containers on this machine (crun 1.8
# refuses a hybrid cgroup layout whose cgroup2 holds a controller).
for peer in runc crun; do
  command -v "$peer" >/dev/null || { echo "# $peer: not installed" >&2; continue; }
  if "$peer" --root "$work/$peer-state" run --bundle "$work/bundle" "bench-$peer" >/dev/null 2>"$work/$peer.err"; then
    cmds+=(-n "$peer run" "$peer --root $work/$peer-state run --bundle $work/bundle bench-$peer")
  else
    echo "# $peer cannot run containers here: $(tail -1 "$work/$peer.err")" >&2
  fi
done
if command -v podman >/dev/null; then
  # podman asks for nofile above this machine's hard limit unless told
  # otherwise, and then cannot start anything.
  printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' > "$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
  "$berth" --root "$work/store" save -o "$work/image.tar" bench/busybox
  podman --root "$work/podman" --runroot "$work/podman-run" load -q -i "$work/image.tar" >/dev/null
  if podman --root "$work/podman" --runroot "$work/podman-run" --runtime runc run --rm --network none localhost/bench/busybox true >/dev/null 2>"$work/podman.err" \
     || podman --root "$work/podman" --runroot "$work/podman-run" --runtime runc run --rm --network none docker.io/bench/busybox true >/dev/null 2>>"$work/podman.err"; then
    name=$(podman --root "$work/podman" --runroot "$work/podman-run" images --format '{{.Repository}}' | head -1)
    cmds+=(-n "podman run --rm (runc)" "podman --root $work/podman --runroot $work/podman-run --runtime runc run --rm --network none $name true")
  else
    echo "# podman cannot run containers here: $(tail -1 "$work/podman.err")" >&2
  fi
else
  echo "# podman: not installed" >&2
fi

hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/result.json" "${cmds[@]}" >/dev/null
python3 - "$work/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]["median"]
print(f"{'command':<26} {'median':>9} {'mean':>9}  ratio to berth run")
for x in r:
    print(f"{x['command']:<26} {x['median']*1000:8.2f}ms {x['mean']*1000:8.2f}ms  {x['median']/base:.2f}x")
PY

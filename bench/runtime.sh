#!/usr/bin/env bash
# Benchmark: `berth-runtime run` of a busybox bundle running `true`, against
# runc and crun on the same bundle, in the same run (hyperfine; medians).
# Needs root, busybox-static, hyperfine, runc and crun (apt), and a release
# build (cargo build --release). Prints a table and the ratios. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-100}
berth=target/release/berth-runtime
[ -x "$berth" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /tmp/berth-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/dev" "$work/bundle/rootfs/sys"
cp /bin/busybox "$work/bundle/rootfs/bin/"
ln -s busybox "$work/bundle/rootfs/bin/true"
(cd "$work/bundle" && "$OLDPWD/$berth" spec)
# ociVersion 1.0.2: crun 1.8 refuses newer ones. Each runtime gets its own
# cgroup under berth/.
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["ociVersion"] = "1.0.2"
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
c["linux"]["cgroupsPath"] = "berth/bench"
json.dump(c, open(p, "w"))
PY

cmds=(-n berth-runtime "$berth --root $work/berth run --bundle $work/bundle bench")
for peer in runc crun; do
  command -v "$peer" >/dev/null || { echo "# $peer: not installed" >&2; continue; }
  if "$peer" --root "$work/$peer" run --bundle "$work/bundle" probe >/dev/null 2>"$work/$peer.err"; then
    cmds+=(-n "$peer" "$peer --root $work/$peer run --bundle $work/bundle bench")
  else
    echo "# $peer cannot run containers here: $(tail -1 "$work/$peer.err")" >&2
    "$peer" --root "$work/$peer" delete -f probe >/dev/null 2>&1 || true
  fi
done

hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/result.json" "${cmds[@]}" >/dev/null
python3 - "$work/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = next(x for x in r if x["command"] == "berth-runtime")["median"]
print(f"{'runtime':<14} {'median':>9} {'mean':>9} {'stddev':>8}  ratio to berth-runtime")
for x in r:
    print(f"{x['command']:<14} {x['median']*1000:8.2f}ms {x['mean']*1000:8.2f}ms {x['stddev']*1000:7.2f}ms  {x['median']/base:.2f}x")
PY

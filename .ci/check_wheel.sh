#!/usr/bin/env bash
# pipevisor as users install it: build the sdist and the wheel, check what they carry, install the
# wheel into a fresh virtualenv outside the checkout and, from a folder outside it (nothing is
# imported from the source tree), build the C library and a native program from the installed
# sources, then run the demo registry with a C extension and that native program beside it:
# every pipeline must run and send, and the supervisor must stop cleanly.
#
#   .ci/check_wheel.sh            (make wheelcheck; PY= the Python that has `build`, default .venv)
#
# Needs: the project's virtualenv with the test extras (`build`), gcc, make, pkg-config and the
# C library's packages (make sysdeps), and the package index pip uses for the dependencies.
# Every socket is on 127.0.0.1, on ports free when the check starts.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
case $PY in /*) ;; *) PY=$ROOT/$PY ;; esac
DEADLINE=${DEADLINE:-60} # seconds for the pipelines to run and send
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pipevisor-wheelcheck.XXXXXX")
SERVER=

cleanup() {
    local rc=$?
    if [[ -n $SERVER ]] && kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    if ((rc != 0)) && [[ -f $WORK/serve.log ]]; then
        echo "--- the supervisor's log (last 60 lines)" >&2
        tail -n 60 "$WORK/serve.log" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$SECONDS
step() { printf '[wheelcheck %3ds] %s\n' $((SECONDS - START)) "$*"; }
fail() { echo "wheelcheck: $*" >&2; exit 1; }

# Our variables of the user's environment would steer the installed CLI and the supervisor.
unset PYTHONPATH PIPEVISOR_URL PIPEVISOR_TOKEN
export PIPEVISOR_CACHE_DIR=$WORK/cache # compiled kernels and extensions: built afresh here

step "python -m build: the sdist, and the wheel from it"
"$PY" -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log" >&2; fail "python -m build failed"; }
SDIST=$(echo "$WORK"/dist/pipevisor-*.tar.gz)
WHEEL=$(echo "$WORK"/dist/pipevisor-*.whl)
[[ -f $SDIST && -f $WHEEL ]] || fail "no sdist or wheel in $WORK/dist"

step "both carry every data file of the packages, and no build output"
git -C "$ROOT" ls-files -- supervisor runners builtin_pipelines cluster examples/registry \
    >"$WORK/tracked"
"$PY" - "$SDIST" "$WHEEL" "$WORK/tracked" <<'EOF'
import sys, tarfile, zipfile
sdist, wheel, tracked = sys.argv[1:]
with tarfile.open(sdist) as tar:
    in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
with zipfile.ZipFile(wheel) as z:
    in_wheel = set(z.namelist())
files = open(tracked).read().split()
data = [f for f in files if not f.endswith(".py") and not f.startswith("examples/")]
problems = [f"sdist lacks {f}" for f in files if f not in in_sdist]
problems += [f"wheel lacks {f}" for f in data if f not in in_wheel]
for name in sorted(in_sdist | in_wheel):
    if "runners/c/build/" in name or "__pycache__" in name or name.endswith((".o", ".a", ".so", ".pyc")):
        problems.append(f"build output shipped: {name}")
for must in ("runners/c/pipevisor_ext.h", "runners/c/src/internal.h", "runners/c/Makefile"):
    if must not in in_wheel:
        problems.append(f"wheel lacks {must}")
if problems:
    sys.exit("\n".join(problems))
print(f"  sdist {len(in_sdist)} entries, wheel {len(in_wheel)} files")
EOF

step "a fresh virtualenv outside the checkout, with the wheel and its dependencies"
"$PY" -m venv --without-pip "$WORK/venv"
VPY=$WORK/venv/bin/python
"$PY" -m pip --python "$VPY" install --quiet --no-compile "$WHEEL" >"$WORK/pip.log" 2>&1 ||
    { cat "$WORK/pip.log" >&2; fail "pip install of the wheel failed"; }
"$PY" -m pip --python "$VPY" check
cd "$WORK"
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$VPY" - "$SITE" <<'EOF'
import sys
import builtin_pipelines, cluster, runners, supervisor
for package in (supervisor, runners, builtin_pipelines, cluster):
    if not package.__file__.startswith(sys.argv[1]):
        sys.exit(f"{package.__name__} imported from {package.__file__}, not the virtualenv")
EOF
CDIR=$("$VPY" -m runners.c)
[[ $CDIR == "$SITE"/* && -f $CDIR/pipevisor.h ]] || fail "python -m runners.c said $CDIR"

step "the C library and its tests, from the installed sources, built outside site-packages"
make -s -j2 -C "$CDIR" B="$WORK/cbuild" all >"$WORK/make.log" 2>&1 ||
    { cat "$WORK/make.log" >&2; fail "make -C $CDIR failed"; }
[[ ! -e $CDIR/build ]] || fail "make wrote into $CDIR"
"$WORK/cbuild/test_bsread" >/dev/null 2>&1 || fail "the C library's test_bsread failed"
"$WORK/cbuild/test_contract" >/dev/null 2>&1 || fail "the C library's test_contract failed"

step "the demo registry, a C extension and a native program built as the README says"
cp -r "$ROOT/examples/registry" "$WORK/registry"
cp "$CDIR/projections_ext.c" "$WORK/registry/projections_ext.c"
# shellcheck disable=SC2046 # pkg-config's words are separate flags
gcc -std=c11 -O2 "$CDIR/passthrough.c" $("$VPY" -m runners.c --cflags) \
    "$WORK/cbuild/libpipevisor.a" $(pkg-config --cflags --libs libzmq jansson libmd) -lm \
    -o "$WORK/registry/passthrough"
read -r API CAM BEAM PROJ PASS < <("$VPY" -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
"$VPY" - "$WORK/registry" "$CAM" "$BEAM" "$PROJ" "$PASS" <<'EOF'
import json, sys
from pathlib import Path
registry = Path(sys.argv[1])
cam, beam, proj, passthrough = map(int, sys.argv[2:])
for name, port in (("simcam", cam), ("beam", beam)):  # the demo's own ports may be taken
    path = registry / f"{name}.json"
    spec = json.loads(path.read_text())
    spec["output"]["port"] = port
    path.write_text(json.dumps(spec))
for name, program, port in (("projections", "projections_ext.c", proj),
                            ("passthrough_cam", "passthrough", passthrough)):
    spec = {"program": program, "input": {"camera": "simcam"},
            "output": {"mode": "PUB", "port": port}, "restart": {"mode": "always"},
            "permanent": True}
    (registry / f"{name}.json").write_text(json.dumps(spec))
EOF

step "pipevisor serve on 127.0.0.1:$API"
URL=http://127.0.0.1:$API
"$WORK/venv/bin/pipevisor" serve --registry "$WORK/registry" --host 127.0.0.1 --port "$API" \
    --stream-host 127.0.0.1 --state-dir "$WORK/state" --backgrounds "$WORK/backgrounds" \
    >"$WORK/serve.log" 2>&1 &
SERVER=$!
"$VPY" - "$URL" "$DEADLINE" "$SERVER" <<'EOF'
import json, os, sys, time, urllib.request
url, deadline, server = sys.argv[1], time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
want = {"simcam", "beam", "projections", "passthrough_cam"}
states = {}
while time.monotonic() < deadline:
    try:
        os.kill(server, 0)
    except ProcessLookupError:
        sys.exit("the supervisor exited")
    try:
        with urllib.request.urlopen(f"{url}/api/v1/instances", timeout=5) as response:
            states = {i["name"]: (i["state"], i["reason"]) for i in json.load(response)}
    except OSError:
        pass
    if all(states.get(name, ("",))[0] == "running" for name in want):
        break
    time.sleep(0.3)
else:
    sys.exit(f"not all running after the deadline: {states}")
EOF
for stream in beam projections passthrough_cam; do
    channel=$(case $stream in beam) echo x_center_of_mass ;; projections) echo x_profile ;;
        *) echo image ;; esac)
    "$WORK/venv/bin/pipevisor" --url "$URL" receive "$stream" -n 1 --timeout "$DEADLINE" \
        --channels "$channel" >"$WORK/receive.txt" 2>&1 ||
        { cat "$WORK/receive.txt" >&2; fail "no message from $stream"; }
    grep -q "$channel" "$WORK/receive.txt" || { cat "$WORK/receive.txt" >&2; fail "$stream: no $channel"; }
    echo "  $stream: $(grep "$channel" "$WORK/receive.txt" | head -n 1 | tr -s ' ')"
done
ls -d "$PIPEVISOR_CACHE_DIR"/beam_metrics-* "$PIPEVISOR_CACHE_DIR"/extensions/projections_ext-* \
    >/dev/null || fail "the kernels or the extension were not compiled into $PIPEVISOR_CACHE_DIR"
PIDS=$("$VPY" -c '
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v1/instances", timeout=5) as response:
    print(*(i["pid"] for i in json.load(response) if i["pid"]))
' "$URL")

step "SIGTERM: the supervisor stops its pipelines and exits 0"
kill -TERM "$SERVER"
for _ in $(seq 300); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SERVER" 2>/dev/null && fail "the supervisor still runs 30 s after SIGTERM"
rc=0
wait "$SERVER" || rc=$?
SERVER=
((rc == 0)) || fail "the supervisor exited with $rc"
for pid in $PIDS; do
    ! kill -0 "$pid" 2>/dev/null || fail "pipeline process $pid outlived the supervisor"
done
step "passed"

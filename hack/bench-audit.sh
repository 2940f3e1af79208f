#!/usr/bin/env bash
# Times, side by side in one run, reading one generated Metadata-level audit
# log (1,000,000 events by default):
#
#   kubectl-snoop coverage --audit-log FILE -o json      (and FILE.gz)
#   APISnoop's mapper: find_operation_id of apps/snoopdb/postgres/snoopUtils.py
#     on every ResponseComplete event, with the release's swagger.json
#   grep -c '"stage":"ResponseComplete"' FILE
#   zcat FILE.gz
#
# Each is run ROUNDS times (3), interleaved round by round, and the median
# wall time is reported with the ratios the project aims at: APISnoop's
# mapper at least 10x slower than kubectl-snoop, kubectl-snoop within 4x of
# grep -c, and .gz input no slower than zcat.
#
# APISnoop's code is not part of this repository: APISNOOP_DIR names a
# checkout of kubernetes-sigs/apisnoop (a work tree, or a bare repository,
# whose HEAD is used). SWAGGER is the release's swagger.json; by default the
# one of k8s.io/kubernetes v1.37.2 (go mod download, like hack/gen-catalog).
# The mapper runs on Debian's python3 with python3-requests and python3-bs4,
# installed with apt-get when missing.
#
# Usage: APISNOOP_DIR=/path/to/apisnoop hack/bench-audit.sh
# Environment: EVENTS (1000000), ROUNDS (3), WORK (a temporary directory,
# removed at the end unless given), SWAGGER, KUBERNETES_VERSION (v1.37.2),
# PYTHON (/usr/bin/python3), MAPPER (1; 0 leaves APISnoop's slow mapper out
# while iterating - the figures to report are a run with it).
set -euo pipefail

: "${APISNOOP_DIR:?set APISNOOP_DIR to a checkout of kubernetes-sigs/apisnoop}"
MAPPER=${MAPPER:-1}
EVENTS=${EVENTS:-1000000}
ROUNDS=${ROUNDS:-3}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
PYTHON=${PYTHON:-/usr/bin/python3}
root=$(cd "$(dirname "$0")/.." && pwd)

if [[ -z "${WORK:-}" ]]; then
  WORK=$(mktemp -d -t bench-audit.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"

say() { printf '==> %s\n' "$*" >&2; }

# APISnoop's snoopUtils.py, from a work tree or a bare repository.
utils=apps/snoopdb/postgres/snoopUtils.py
mkdir -p "$WORK/apisnoop"
if [[ -f "$APISNOOP_DIR/$utils" ]]; then
  cp "$APISNOOP_DIR/$utils" "$WORK/apisnoop/snoopUtils.py"
  apisnoop_rev=$(git -C "$APISNOOP_DIR" rev-parse --short HEAD 2>/dev/null || echo "work tree")
else
  gitdir=$APISNOOP_DIR
  [[ -d "$gitdir/repo" ]] && gitdir=$gitdir/repo
  git --git-dir="$gitdir" show "HEAD:$utils" >"$WORK/apisnoop/snoopUtils.py"
  apisnoop_rev=$(git --git-dir="$gitdir" rev-parse --short HEAD)
fi

if ! "$PYTHON" -c 'import requests, bs4' 2>/dev/null; then
  say "installing python3-requests and python3-bs4"
  apt-get install -y -qq python3-requests python3-bs4 >/dev/null || {
    apt-get update -qq && apt-get install -y -qq python3-requests python3-bs4 >/dev/null
  }
fi

if [[ -z "${SWAGGER:-}" ]]; then
  dir=$(cd "$WORK" && GOFLAGS=-mod=mod GOWORK=off go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  SWAGGER=$dir/api/openapi-spec/swagger.json
fi
[[ -f "$SWAGGER" ]] || { echo "no swagger.json at $SWAGGER" >&2; exit 1; }

say "building kubectl-snoop"
(cd "$root" && go build -o "$WORK/kubectl-snoop" ./cmd/kubectl-snoop)

log=$WORK/audit.log
say "generating $EVENTS events"
(cd "$root" && go run ./hack/bench-audit "$log" "$EVENTS")
gzip -c "$log" >"$log.gz"

# The mapper's driver: APISnoop's own load_openapi_spec and
# find_operation_id, the swagger.json read from disk instead of GitHub.
cat >"$WORK/apisnoop/driver.py" <<'EOF'
import json, sys, time
sys.path.insert(0, sys.argv[1])
import snoopUtils

class Local:
    def __init__(self, path): self.path = path
    def json(self):
        with open(self.path) as f:
            return json.load(f)

snoopUtils.requests.get = lambda url, **kw: Local(url)
start = time.time()
spec = snoopUtils.load_openapi_spec(sys.argv[2])
loaded = time.time() - start
mapped = unmapped = 0
with open(sys.argv[3]) as log:
    for line in log:
        event = json.loads(line)
        if event['stage'] != 'ResponseComplete':
            continue
        op, err = snoopUtils.find_operation_id(spec, event)
        if op:
            mapped += 1
        else:
            unmapped += 1
print(json.dumps({'mapped': mapped, 'unmapped': unmapped, 'specLoadSeconds': round(loaded, 2)}))
EOF

cat /proc/cpuinfo | grep -m1 'model name' | sed 's/.*: /cpu: /' >&2
echo "cores: $(nproc), load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "log: $EVENTS events, $(stat -c %s "$log") bytes; gzip $(stat -c %s "$log.gz") bytes" >&2
echo "APISnoop: $apisnoop_rev; swagger: $SWAGGER" >&2

names=(kubectl-snoop kubectl-snoop-gz apisnoop-mapper grep-c zcat)
if [[ $MAPPER == 0 ]]; then
  names=(kubectl-snoop kubectl-snoop-gz grep-c zcat)
  echo '{"skipped": "MAPPER=0"}' >"$WORK/out.mapper.json"
fi
run() {
  case $1 in
  kubectl-snoop) "$WORK/kubectl-snoop" coverage --audit-log "$log" -o json >"$WORK/out.plain.json" ;;
  kubectl-snoop-gz) "$WORK/kubectl-snoop" coverage --audit-log "$log.gz" -o json >"$WORK/out.gz.json" ;;
  apisnoop-mapper) "$PYTHON" "$WORK/apisnoop/driver.py" "$WORK/apisnoop" "$SWAGGER" "$log" >"$WORK/out.mapper.json" ;;
  grep-c) grep -c '"stage":"ResponseComplete"' "$log" >"$WORK/out.grep" ;; # not /dev/null: grep stops early there
  zcat) zcat "$log.gz" >/dev/null ;;
  esac
}

declare -A times
for round in $(seq "$ROUNDS"); do
  for name in "${names[@]}"; do
    start=$(date +%s%N)
    run "$name"
    end=$(date +%s%N)
    t=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')
    times[$name]+="$t "
    printf 'round %d  %-17s %7ss\n' "$round" "$name" "$t" >&2
  done
done

cmp -s "$WORK/out.plain.json" "$WORK/out.gz.json" || { echo "plain and .gz coverage differ" >&2; exit 1; }
requests=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["summary"]["requests"])' "$WORK/out.plain.json")

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
declare -A med
echo
printf '%-17s %9s   %s\n' tool median "runs (s)"
for name in "${names[@]}"; do
  med[$name]=$(median "${times[$name]}")
  printf '%-17s %8ss   %s\n' "$name" "${med[$name]}" "${times[$name]}"
done
echo
echo "kubectl-snoop counted $requests requests; grep -c: $(cat "$WORK/out.grep") ResponseComplete lines; APISnoop's mapper: $(cat "$WORK/out.mapper.json")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
if [[ -n "${med[apisnoop-mapper]:-}" ]]; then
  echo "APISnoop's mapper / kubectl-snoop: $(ratio "${med[apisnoop-mapper]}" "${med[kubectl-snoop]}")x (target >= 10)"
fi
echo "kubectl-snoop / grep -c:           $(ratio "${med[kubectl-snoop]}" "${med[grep-c]}")x (target <= 4)"
echo "kubectl-snoop .gz / zcat:          $(ratio "${med[kubectl-snoop-gz]}" "${med[zcat]}")x (target <= 1)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

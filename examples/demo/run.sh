#!/usr/bin/env bash
# The Outrider demo: a dev Consul agent, a `frontend` service calling an
# HTTP `api` service (instances at versions v1 and v2, with a 90/10 canary
# split) and a gRPC `inventory` service, each instance with an Outrider
# sidecar. It sends traffic through the mesh, flips an intention to deny and
# back, prints what happened and where to look, then waits for Ctrl-C.
#
# Run it with `make demo` (which builds bin/outrider and .tools/bin/consul).
# DEMO_ONESHOT=1 exits after the traffic instead of waiting (used by tests).
# Ports: Consul HTTP on $CONSUL_PORT (default 8500, UI at /ui); sidecar
# admin endpoints on $ADMIN_BASE+1..+6 (19001-19006); frontend on
# 127.0.0.1:$FRONTEND_PORT (8080).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
OUTRIDER=${OUTRIDER_BIN:-$root/bin/outrider}
CONSUL=${CONSUL_BIN:-$root/.tools/bin/consul}
JAEGER=${JAEGER_BIN:-$root/.tools/bin/jaeger} # optional: traces when present (make tools-jaeger)
CONSUL_PORT=${CONSUL_PORT:-8500}
FRONTEND_PORT=${FRONTEND_PORT:-8080}
ADMIN_BASE=${ADMIN_BASE:-19000}
for b in "$OUTRIDER" "$CONSUL"; do
  [[ -x $b ]] || { echo "demo: $b not found; run 'make demo' (it builds everything)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/outrider-demo.XXXXXX")
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping ${#pids[@]} processes..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
  echo "demo: stopped, temporary files removed."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port picks a free loopback port below the kernel's ephemeral range
# (a port from ":0" can be taken by any outgoing connection before the
# process that needs it binds it) and claims it the way the Go tests do
# ($TMPDIR/outrider-test-ports/<port>, 30 minutes), so parallel runs do
# not pick the same one.
free_port() {
  python3 - <<'PY'
import os, random, socket, time
lo, hi = 10000, 32768
try:
    hi = min(hi, int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0]))
except (OSError, ValueError, IndexError):
    pass
claims = os.path.join(os.environ.get("TMPDIR") or "/tmp", "outrider-test-ports")
os.makedirs(claims, exist_ok=True)
for _ in range(10000):
    p = random.randrange(lo, hi)
    name = os.path.join(claims, str(p))
    try:
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        try:
            if time.time() - os.stat(name).st_mtime >= 30 * 60:
                os.remove(name)  # a finished run's stale claim
        except OSError:
            pass
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    raise SystemExit("demo: no free port")
PY
}
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if in_use "$CONSUL_PORT"; then
  echo "demo: port $CONSUL_PORT is busy (another Consul or demo?); set CONSUL_PORT to another port" >&2; exit 1
fi
bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

bold "1. Building the demo service"
go build -o "$work/demoapp" "$root/examples/demo/demoapp"

bold "2. Starting a dev Consul agent on 127.0.0.1:$CONSUL_PORT"
export CONSUL_HTTP_ADDR="127.0.0.1:$CONSUL_PORT"
"$CONSUL" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node outrider-demo \
  -http-port "$CONSUL_PORT" -dns-port "$(free_port)" -grpc-port "$(free_port)" \
  -serf-lan-port "$(free_port)" -serf-wan-port "$(free_port)" -server-port "$(free_port)" \
  -hcl 'ports { grpc_tls = -1 }' >"$work/consul.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [[ -n $(curl -sf "http://$CONSUL_HTTP_ADDR/v1/status/leader" 2>/dev/null | tr -d '"') ]] && break
  sleep 0.2
done
curl -sf "http://$CONSUL_HTTP_ADDR/v1/agent/connect/ca/roots" >/dev/null || { echo "demo: Consul did not start; log: $work/consul.log" >&2; tail "$work/consul.log"; exit 1; }

# register NAME ID APP_PORT SIDECAR_PORT META_JSON [UPSTREAMS_JSON]
register() {
  curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/agent/service/register" -d @- <<JSON
{"Name":"$1","ID":"$2","Port":$3,"Address":"127.0.0.1","Meta":$5,
 "Connect":{"SidecarService":{"Port":$4,"Address":"127.0.0.1",
   "Checks":[{"Name":"sidecar listening","TCP":"127.0.0.1:$4","Interval":"1s"}],
   "Proxy":{"Upstreams":${6:-[]}}}}}
JSON
}
config() { curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/config" -d "$1" >/dev/null; }

bold "3. Config entries, as for Envoy: protocols, api versions as subsets, a 90/10 canary split"
config '{"Kind":"service-defaults","Name":"frontend","Protocol":"http"}'
config '{"Kind":"service-defaults","Name":"api","Protocol":"http"}'
config '{"Kind":"service-defaults","Name":"inventory","Protocol":"grpc"}'
config '{"Kind":"service-resolver","Name":"api","DefaultSubset":"v1","Subsets":{
  "v1":{"Filter":"Service.Meta.version == v1"},"v2":{"Filter":"Service.Meta.version == v2"}}}'
config '{"Kind":"service-splitter","Name":"api","Splits":[{"Weight":90,"ServiceSubset":"v1"},{"Weight":10,"ServiceSubset":"v2"}]}'
echo "   service-defaults: frontend and api http, inventory grpc"
echo "   service-resolver api: subsets v1, v2 by Service.Meta.version    service-splitter api: 90% v1, 10% v2"

otel=()
if [[ -x $JAEGER ]]; then
  jg=$(free_port); jq=$(free_port); jqg=$(free_port); jh=$(free_port)
  # The configuration the tests use (in-memory storage, loopback ports).
  sed -e "s/@OTLP_GRPC@/127.0.0.1:$jg/" -e "s/@OTLP_HTTP@/127.0.0.1:$jh/" -e "s/@QUERY_HTTP@/127.0.0.1:$jq/" \
    -e "s/@QUERY_GRPC@/127.0.0.1:$jqg/" "$root/internal/testutil/jaegertest/local.yaml" >"$work/jaeger.yaml"
  "$JAEGER" --config "$work/jaeger.yaml" >"$work/jaeger.log" 2>&1 &
  pids+=($!)
  otel=(env "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$jg")
  echo "   Jaeger all-in-one started: the sidecars export traces to it (OTLP on :$jg)"
fi

bold "4. Registering services (the usual Consul service definitions, nothing Outrider-specific)"
ids=(api-1 api-2 api-3 inventory-1 inventory-2 frontend-1)
declare -A app side
for id in "${ids[@]}"; do app[$id]=$(free_port); side[$id]=$(free_port); done
app[frontend-1]=$FRONTEND_PORT
up_api=$(free_port); up_inv=$(free_port)
register api api-1 "${app[api-1]}" "${side[api-1]}" '{"version":"v1"}'
register api api-2 "${app[api-2]}" "${side[api-2]}" '{"version":"v1"}'
register api api-3 "${app[api-3]}" "${side[api-3]}" '{"version":"v2"}'
register inventory inventory-1 "${app[inventory-1]}" "${side[inventory-1]}" '{}'
register inventory inventory-2 "${app[inventory-2]}" "${side[inventory-2]}" '{}'
register frontend frontend-1 "$FRONTEND_PORT" "${side[frontend-1]}" '{}' \
  "[{\"DestinationName\":\"api\",\"LocalBindPort\":$up_api},{\"DestinationName\":\"inventory\",\"LocalBindPort\":$up_inv}]"
echo "   api-1, api-2 (version v1), api-3 (version v2): HTTP;  inventory-1, inventory-2: gRPC"
echo "   frontend-1 (app :$FRONTEND_PORT): upstreams api on 127.0.0.1:$up_api, inventory on 127.0.0.1:$up_inv"

bold "5. Starting the applications and one Outrider sidecar per instance"
for id in api-1 api-2; do "$work/demoapp" -name "$id" -version v1 -listen "127.0.0.1:${app[$id]}" >"$work/$id.log" 2>&1 & pids+=($!); done
"$work/demoapp" -name api-3 -version v2 -listen "127.0.0.1:${app[api-3]}" >"$work/api-3.log" 2>&1 & pids+=($!)
for id in inventory-1 inventory-2; do "$work/demoapp" -name "$id" -grpc -listen "127.0.0.1:${app[$id]}" >"$work/$id.log" 2>&1 & pids+=($!); done
"$work/demoapp" -name frontend -listen "127.0.0.1:$FRONTEND_PORT" -upstream "http://127.0.0.1:$up_api/" \
  -grpc-upstream "127.0.0.1:$up_inv" >"$work/frontend.log" 2>&1 & pids+=($!)
declare -A admin
i=0
for id in "${ids[@]}"; do
  i=$((i + 1)); admin[$id]=$((ADMIN_BASE + i))
  ${otel[@]+"${otel[@]}"} "$OUTRIDER" run -sidecar-for "$id" -admin-bind "127.0.0.1:${admin[$id]}" >"$work/outrider-$id.log" 2>&1 &
  pids+=($!)
done
for id in "${ids[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${admin[$id]}/ready" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:${admin[$id]}/ready" >/dev/null || { echo "demo: sidecar of $id not ready; logs in $work" >&2; tail "$work"/outrider-*.log; exit 1; }
done
echo "   all ${#ids[@]} sidecars ready; waiting for Consul to mark the instances healthy..."
passing() { curl -sf "http://$CONSUL_HTTP_ADDR/v1/health/connect/$1?passing" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
for _ in $(seq 100); do
  [[ $(passing api) == 3 && $(passing inventory) == 2 ]] && break
  sleep 0.2
done

bold "6. Traffic: the frontend calls api (HTTP, canary split) and inventory (gRPC) through its sidecar"
ok=0
for _ in $(seq 30); do curl -sf "http://127.0.0.1:$FRONTEND_PORT/" | grep -q SERVING && { ok=1; break; }; sleep 0.3; done
[[ $ok == 1 ]] || { echo "demo: traffic did not flow; logs in $work" >&2; tail -n 5 "$work"/*.log; exit 1; }
for _ in 1 2 3 4; do printf '   $ curl 127.0.0.1:%s  ->  %s\n' "$FRONTEND_PORT" "$(curl -s "http://127.0.0.1:$FRONTEND_PORT/")"; done
declare -A seen=([api-1]=0 [api-2]=0 [api-3]=0 [inventory-1]=0 [inventory-2]=0)
for _ in $(seq 100); do
  answer=$(curl -s "http://127.0.0.1:$FRONTEND_PORT/")
  for id in "${!seen[@]}"; do [[ $answer == *"$id "* ]] && seen[$id]=$((seen[$id] + 1)); done
done
echo "   100 more requests: api v1 answered $((seen[api-1] + seen[api-2])) (api-1 ${seen[api-1]}, api-2 ${seen[api-2]}), api v2 $((seen[api-3])) (api-3): the 90/10 split"
echo "   gRPC calls balanced per call: inventory-1 ${seen[inventory-1]}, inventory-2 ${seen[inventory-2]}"

bold "7. Deny frontend -> api with an intention; the api sidecars refuse each request (403)"
curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/config" -d '{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"frontend","Action":"deny"}]}' >/dev/null
denied=0
for _ in $(seq 50); do
  curl -s "http://127.0.0.1:$FRONTEND_PORT/" | grep -q "denied" && { denied=1; break; }
  sleep 0.2
done
[[ $denied == 1 ]] || { echo "demo: the deny intention was not enforced" >&2; exit 1; }
printf '   $ curl 127.0.0.1:%s  ->  %s' "$FRONTEND_PORT" "$(curl -s "http://127.0.0.1:$FRONTEND_PORT/")"; echo
echo "   why (api sidecar log):"
grep -h 'msg="request denied"' "$work"/outrider-api-*.log | tail -n 1 | sed -E 's/.*rule="?([^"]*)"? reason="([^"]*)".*/     denied by \1: \2/'

bold "8. Allow it again, at L7: frontend may GET anything on api but /admin (an intention with Permissions)"
curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/config" -d '{"Kind":"service-intentions","Name":"api","Sources":[{"Name":"frontend","Permissions":[
  {"Action":"deny","HTTP":{"PathPrefix":"/admin"}},{"Action":"allow","HTTP":{"PathPrefix":"/","Methods":["GET","HEAD"]}}]}]}' >/dev/null
for _ in $(seq 50); do curl -s "http://127.0.0.1:$FRONTEND_PORT/" | grep -q "denied" || break; sleep 0.2; done
printf '   $ curl 127.0.0.1:%s  ->  %s' "$FRONTEND_PORT" "$(curl -s "http://127.0.0.1:$FRONTEND_PORT/")"; echo
explain="http://127.0.0.1:${admin[api-1]}/authz/explain?source=frontend&method=GET&path=/x/../admin/users"
echo "   would frontend be allowed GET /x/../admin/users? (api-1's sidecar, no traffic sent)"
echo "   \$ curl '$explain'"
curl -s "$explain" | grep -E '"(normalized_path|status|rule)"' | head -n 3 | sed 's/^ */     /'

bold "9. What the frontend's sidecar measured (Prometheus metrics on its admin port)"
curl -s "http://127.0.0.1:${admin[frontend-1]}/metrics" | grep '^outrider_http_requests_total' | sed 's/^/   /'

bold "Where to look"
echo "   Consul UI:            http://$CONSUL_HTTP_ADDR/ui/dc1/services"
echo "   frontend:             http://127.0.0.1:$FRONTEND_PORT/"
for id in "${ids[@]}"; do
  printf '   %-11s sidecar:   http://127.0.0.1:%s/ready  /config_dump  /clusters  /metrics\n' "$id" "${admin[$id]}"
done
if [[ -x $JAEGER ]]; then
  echo "   traces (Jaeger UI):   http://127.0.0.1:$jq/search?service=frontend"
  tid=""
  for _ in $(seq 30); do
    tid=$(curl -sf "http://127.0.0.1:$jq/api/traces?service=frontend&limit=1" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(d[0]["traceID"] if d else "")' 2>/dev/null || true)
    [[ -n $tid ]] && break
    sleep 0.5
  done
  [[ -n $tid ]] && echo "   one request's trace:  http://127.0.0.1:$jq/trace/$tid (the frontend sidecar's client span, then the callee sidecar's server span)"
else
  echo "   traces:               run 'make tools-jaeger' once, and the demo starts Jaeger and exports traces to it"
fi
echo "   logs:                 $work"
echo "demo: OK"
if [[ -n ${DEMO_ONESHOT:-} ]]; then exit 0; fi
bold "Running. Press Ctrl-C to stop everything."
while true; do sleep 3600; done

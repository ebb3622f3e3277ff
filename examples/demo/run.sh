#!/usr/bin/env bash
# The Outrider demo: a dev Consul agent, a `frontend` service calling a
# `backend` service with two instances, each instance with an Outrider
# sidecar. It sends traffic through the mesh, flips an intention to deny and
# back, prints what happened and where to look, then waits for Ctrl-C.
#
# Run it with `make demo` (which builds bin/outrider and .tools/bin/consul).
# DEMO_ONESHOT=1 exits after the traffic instead of waiting (used by tests).
# Ports: Consul HTTP on $CONSUL_PORT (default 8500, UI at /ui); sidecar
# admin endpoints on 19001-19003; frontend on 127.0.0.1:$FRONTEND_PORT (8080).
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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

# register NAME ID APP_PORT SIDECAR_PORT [UPSTREAM LOCAL_PORT]
register() {
  local upstreams='[]'
  [[ $# -ge 6 ]] && upstreams="[{\"DestinationName\":\"$5\",\"LocalBindPort\":$6}]"
  curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/agent/service/register" -d @- <<JSON
{"Name":"$1","ID":"$2","Port":$3,"Address":"127.0.0.1",
 "Connect":{"SidecarService":{"Port":$4,"Address":"127.0.0.1",
   "Checks":[{"Name":"sidecar listening","TCP":"127.0.0.1:$4","Interval":"1s"}],
   "Proxy":{"Upstreams":$upstreams}}}}
JSON
}

bold "3. Declaring backend an HTTP service, balanced round robin (Consul config entries, as for Envoy)"
curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/config" -d '{"Kind":"service-defaults","Name":"backend","Protocol":"http"}' >/dev/null
curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/config" -d '{"Kind":"service-resolver","Name":"backend","LoadBalancer":{"Policy":"round_robin"}}' >/dev/null
echo "   service-defaults backend: Protocol = http    service-resolver backend: LoadBalancer.Policy = round_robin"

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
b1=$(free_port); b2=$(free_port); s1=$(free_port); s2=$(free_port); s3=$(free_port); up=$(free_port)
register backend backend-1 "$b1" "$s1"
register backend backend-2 "$b2" "$s2"
register frontend frontend-1 "$FRONTEND_PORT" "$s3" backend "$up"
echo "   backend-1 (app :$b1, sidecar :$s1), backend-2 (app :$b2, sidecar :$s2)"
echo "   frontend-1 (app :$FRONTEND_PORT, sidecar :$s3, upstream backend on 127.0.0.1:$up)"

bold "5. Starting the applications and one Outrider sidecar per instance"
"$work/demoapp" -name backend-1 -listen "127.0.0.1:$b1" >"$work/backend-1.log" 2>&1 & pids+=($!)
"$work/demoapp" -name backend-2 -listen "127.0.0.1:$b2" >"$work/backend-2.log" 2>&1 & pids+=($!)
"$work/demoapp" -name frontend -listen "127.0.0.1:$FRONTEND_PORT" -upstream "http://127.0.0.1:$up/" >"$work/frontend.log" 2>&1 & pids+=($!)
i=0
for id in backend-1 backend-2 frontend-1; do
  i=$((i + 1))
  ${otel[@]+"${otel[@]}"} "$OUTRIDER" run -sidecar-for "$id" -admin-bind "127.0.0.1:$((ADMIN_BASE + i))" >"$work/outrider-$id.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((ADMIN_BASE + i))/ready" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$((ADMIN_BASE + i))/ready" >/dev/null || { echo "demo: sidecar $i not ready; logs in $work" >&2; tail "$work"/outrider-*.log; exit 1; }
done
echo "   all sidecars ready; waiting for Consul to mark the backends healthy..."
for _ in $(seq 100); do
  n=$(curl -sf "http://$CONSUL_HTTP_ADDR/v1/health/connect/backend?passing" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [[ $n == 2 ]] && break
  sleep 0.2
done

bold "6. Traffic: curl the frontend; it calls backend through its sidecar (mTLS, per request, round robin)"
ok=0
for _ in $(seq 30); do curl -sf "http://127.0.0.1:$FRONTEND_PORT/" >/dev/null && { ok=1; break; }; sleep 0.3; done
[[ $ok == 1 ]] || { echo "demo: traffic did not flow; logs in $work" >&2; tail -n 5 "$work"/*.log; exit 1; }
for _ in 1 2 3 4; do printf '   $ curl 127.0.0.1:%s  ->  %s' "$FRONTEND_PORT" "$(curl -s "http://127.0.0.1:$FRONTEND_PORT/")"; echo; done

bold "7. Deny frontend -> backend with an intention; the backend sidecars refuse each request (403)"
curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/config" -d '{"Kind":"service-intentions","Name":"backend","Sources":[{"Name":"frontend","Action":"deny"}]}' >/dev/null
denied=0
for _ in $(seq 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FRONTEND_PORT/")
  [[ $code != 200 ]] && { denied=1; break; }
  sleep 0.2
done
[[ $denied == 1 ]] || { echo "demo: the deny intention was not enforced" >&2; exit 1; }
printf '   $ curl 127.0.0.1:%s  ->  %s' "$FRONTEND_PORT" "$(curl -s "http://127.0.0.1:$FRONTEND_PORT/")"; echo
echo "   why (backend sidecar log):"
grep -h 'msg="request denied"' "$work"/outrider-backend-*.log | tail -n 1 | sed -E 's/.*rule="?([^"]*)"? reason="([^"]*)".*/     denied by \1: \2/'

bold "8. Allow it again, at L7: frontend may GET anything but /admin (an intention with Permissions)"
curl -sf -X PUT "http://$CONSUL_HTTP_ADDR/v1/config" -d '{"Kind":"service-intentions","Name":"backend","Sources":[{"Name":"frontend","Permissions":[
  {"Action":"deny","HTTP":{"PathPrefix":"/admin"}},{"Action":"allow","HTTP":{"PathPrefix":"/","Methods":["GET","HEAD"]}}]}]}' >/dev/null
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$FRONTEND_PORT/" >/dev/null && break; sleep 0.2; done
printf '   $ curl 127.0.0.1:%s  ->  %s' "$FRONTEND_PORT" "$(curl -s "http://127.0.0.1:$FRONTEND_PORT/")"; echo
explain="http://127.0.0.1:$((ADMIN_BASE + 1))/authz/explain?source=frontend&method=GET&path=/x/../admin/users"
echo "   would frontend be allowed GET /x/../admin/users? (backend-1's sidecar, no traffic sent)"
echo "   \$ curl '$explain'"
curl -s "$explain" | grep -E '"(normalized_path|status|rule)"' | head -n 3 | sed 's/^ */     /'

bold "9. What the frontend's sidecar measured (Prometheus metrics on its admin port)"
curl -s "http://127.0.0.1:$((ADMIN_BASE + 3))/metrics" | grep '^outrider_http_requests_total' | sed 's/^/   /'

bold "Where to look"
echo "   Consul UI:            http://$CONSUL_HTTP_ADDR/ui/dc1/services"
echo "   frontend:             http://127.0.0.1:$FRONTEND_PORT/"
i=0
for id in backend-1 backend-2 frontend-1; do
  i=$((i + 1))
  printf '   %-10s sidecar:    http://127.0.0.1:%s/ready  http://127.0.0.1:%s/config_dump\n' "$id" "$((ADMIN_BASE + i))" "$((ADMIN_BASE + i))"
done
if [[ -x $JAEGER ]]; then
  echo "   traces (Jaeger UI):   http://127.0.0.1:$jq/search?service=frontend"
else
  echo "   traces:               run 'make tools-jaeger' once, and the demo starts Jaeger and exports traces to it"
fi
echo "   metrics:              http://127.0.0.1:$((ADMIN_BASE + 3))/metrics (backends: :$((ADMIN_BASE + 1)), :$((ADMIN_BASE + 2)))"
echo "   logs:                 $work"
echo "demo: OK"
if [[ -n ${DEMO_ONESHOT:-} ]]; then exit 0; fi
bold "Running. Press Ctrl-C to stop everything."
while true; do sleep 3600; done

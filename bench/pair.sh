#!/usr/bin/env bash
# bench/pair.sh: the sidecar-pair benchmark (see bench/README.md).
#
#   wrk -> outbound sidecar (plaintext upstream listener) -> mTLS (Consul Connect CA leaves)
#       -> inbound sidecar (public listener) -> nginx backend (1 worker, 19-byte body)
#
# Pairs run side by side in one run, interleaved per round (A B C A B C ...), medians over rounds.
#
# Environment:
#   PAIRS         pairs to run, in order (default: "direct builtin outrider", plus "nginx haproxy"
#                 when those binaries are installed). Known pairs:
#                   direct               wrk straight to the backend
#                   builtin              consul connect proxy -sidecar-for, both sides
#                   outrider             bin/outrider run -sidecar-for, both sides (env: OUTRIDER_ENV)
#                   outrider-gomaxprocsN as outrider, with GOMAXPROCS=N added to OUTRIDER_ENV
#                   outrider-goroutines  as outrider, relaying with two goroutines per connection
#                                        instead of the event loop (OUTRIDER_DATA_PATH=goroutines)
#                   outrider-l7          as outrider, with service-defaults protocol "http": both
#                                        sidecars proxy per request (L7), like the nginx/haproxy pairs
#                   outrider-l7-gomaxprocsN  outrider-l7 with GOMAXPROCS=N
#                   outrider-l7-route10  outrider-l7 with a 10-route service-router on web: the outbound
#                                        sidecar tries every route, the last (a catch-all adding a header,
#                                        with a retry policy and a timeout) matches
#                   outrider-l7-gateway  outrider-l7 with a gateway (Proxy.Config.gateway) on web's sidecar
#                                        whose one route matches nothing: the cost of the net/http path
#                                        a gateway listener serves on
#                   outrider-l7-cachehit outrider-l7 with a response cache on web's sidecar; wrk asks for
#                                        /cacheable (public, max-age=3600), so every request but the
#                                        first is a hit served by web's sidecar without the backend
#                   outrider-l7-policy20 outrider-l7 with a 20-rule local policy (-policy) on the
#                                        inbound sidecar: every rule is evaluated, the last allows
#                   outrider-l7-trace1, outrider-l7-trace100
#                                        outrider-l7 exporting OTLP traces (gRPC), sampling 1% / 100%,
#                                        to the collector COLLECTOR names
#                   nginx, haproxy       the anchor pairs configured as in /work/shared/ANCHORS.md
#   COLLECTOR     sink (default): bench/otlpsink, which discards exports without decoding them, so the
#                 pairs' CPU is not inflated by a collector competing for the same cores; or jaeger:
#                 a Jaeger all-in-one (.tools/bin/jaeger, `make tools-jaeger`) storing every span
#   ANCHORS=0     leave nginx and haproxy out of the default PAIRS
#   ROUNDS        rounds per mode (default 5)
#   DURATION      wrk duration per round (default 5s)
#   THREADS, CONNS  wrk -t / -c (default 1 / 32)
#   MODES         "keepalive close" (default): keep-alive, and a new connection per request
#   OUTRIDER_ENV  extra environment for every Outrider process, e.g. "GOMAXPROCS=1 GOGC=200"
#   OUTRIDER_FLAGS  extra flags for every Outrider process, e.g. "-enable-pprof"
#   OUTRIDER_BIN  default bin/outrider;  CONSUL_BIN  default .tools/bin/consul
#   RESULTS_DIR   default bench/results (raw per-round figures and the tables go there)
#   KEEP_TMP=1    keep the temp dir (configs, logs) after exit
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
MODES=${MODES:-keepalive close}
OUTRIDER_ENV=${OUTRIDER_ENV:-}
OUTRIDER_FLAGS=${OUTRIDER_FLAGS:-}
COLLECTOR=${COLLECTOR:-sink}
OUTRIDER_BIN=${OUTRIDER_BIN:-$ROOT/bin/outrider}
CONSUL_BIN=${CONSUL_BIN:-$ROOT/.tools/bin/consul}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}

die() { echo "pair.sh: $*" >&2; exit 1; }
log() { echo "pair.sh: $*" >&2; }

# ---- required binaries -------------------------------------------------------------------------
[[ -x $OUTRIDER_BIN ]] || die "missing $OUTRIDER_BIN: run 'make build tools-consul' first (or 'make bench')"
[[ -x $CONSUL_BIN ]] || die "missing $CONSUL_BIN: run 'make build tools-consul' first (or 'make bench')"
for b in nginx wrk curl python3 getconf; do
	command -v "$b" >/dev/null || die "missing '$b' in PATH (Debian: apt-get install nginx wrk curl python3)"
done
NGINX_BIN=$(command -v nginx)
HAPROXY_BIN=$(command -v haproxy || true)

if [[ -z ${PAIRS:-} ]]; then
	PAIRS="direct builtin outrider"
	if [[ ${ANCHORS:-1} != 0 ]]; then
		PAIRS+=" nginx"
		[[ -n $HAPROXY_BIN ]] && PAIRS+=" haproxy"
	fi
fi
read -r -a PAIR_LIST <<<"$PAIRS"
((${#PAIR_LIST[@]} > 0)) || die "PAIRS is empty"
for p in "${PAIR_LIST[@]}"; do
	case $p in
	direct | builtin | outrider | nginx) ;;
	outrider-gomaxprocs[0-9]*) [[ ${p#outrider-gomaxprocs} =~ ^[1-9][0-9]*$ ]] || die "bad pair $p" ;;
	outrider-goroutines | outrider-l7 | outrider-l7-policy20 | outrider-l7-route10 | outrider-l7-gateway | outrider-l7-cachehit) ;;
	outrider-l7-trace1 | outrider-l7-trace100)
		case $COLLECTOR in
		sink) ;;
		jaeger) [[ -x ${JAEGER_BIN:=$ROOT/.tools/bin/jaeger} ]] || die "pair $p needs $JAEGER_BIN: run 'make tools-jaeger'" ;;
		*) die "COLLECTOR=$COLLECTOR: want sink or jaeger" ;;
		esac ;;
	outrider-l7-gomaxprocs[0-9]*) [[ ${p#outrider-l7-gomaxprocs} =~ ^[1-9][0-9]*$ ]] || die "bad pair $p" ;;
	haproxy) [[ -n $HAPROXY_BIN ]] || die "pair haproxy: haproxy is not installed" ;;
	*) die "unknown pair '$p' (known: direct builtin outrider outrider-gomaxprocsN outrider-goroutines outrider-l7 outrider-l7-gomaxprocsN outrider-l7-policy20 outrider-l7-route10 outrider-l7-gateway outrider-l7-cachehit outrider-l7-trace1 outrider-l7-trace100 nginx haproxy)" ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
for m in $MODES; do [[ $m == keepalive || $m == close ]] || die "unknown mode '$m' (keepalive, close)"; done

CLK_TCK=$(getconf CLK_TCK)

# ---- process and temp-dir bookkeeping ----------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/outrider-bench.XXXXXX")
PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for _ in $(seq 50); do
		local alive=0
		for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ ${KEEP_TMP:-0} == 1 ]]; then log "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run in the background with output in $TMP/NAME.log; sets STARTED_PID.
start() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
}

# N free TCP ports on 127.0.0.1, all distinct.
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_for DESC SECONDS CMD...: retry CMD every 0.2 s.
wait_for() {
	local desc=$1 secs=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || return 1
		sleep 0.2
	done
}

# ---- backend: nginx, one worker, 19-byte body --------------------------------------------------
read -r BACKEND_PORT < <(free_ports 1)
mkdir -p "$TMP/backend"
cat >"$TMP/backend/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/backend/body;
    proxy_temp_path $TMP/backend/proxy;
    fastcgi_temp_path $TMP/backend/fastcgi;
    uwsgi_temp_path $TMP/backend/uwsgi;
    scgi_temp_path $TMP/backend/scgi;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / { default_type text/plain; return 200 "hello from backend\n"; }
        location = /cacheable { default_type text/plain; add_header Cache-Control "public, max-age=3600"; return 200 "hello from backend\n"; }
    }
}
EOF
start backend "$NGINX_BIN" -p "$TMP/backend" -c "$TMP/backend/nginx.conf" -e "$TMP/backend/error.log"
BACKEND_PID=$STARTED_PID
BACKEND_URL="http://127.0.0.1:$BACKEND_PORT/"
wait_for backend 10 curl -fsS "$BACKEND_URL" || die "backend nginx did not answer; $(cat "$TMP/backend.log" "$TMP/backend/error.log" 2>/dev/null)"
body_len=$(curl -fsS "$BACKEND_URL" | wc -c)
[[ $body_len == 19 ]] || die "backend body is $body_len bytes, want 19"

# ---- Consul dev agent --------------------------------------------------------------------------
read -r C_HTTP C_DNS C_GRPC C_SERFL C_SERFW C_SERVER < <(free_ports 6)
CONSUL_ADDR=127.0.0.1:$C_HTTP
start consul "$CONSUL_BIN" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node bench \
	-http-port "$C_HTTP" -dns-port "$C_DNS" -grpc-port "$C_GRPC" -serf-lan-port "$C_SERFL" \
	-serf-wan-port "$C_SERFW" -server-port "$C_SERVER" -hcl 'ports { grpc_tls = -1 }'
CONSUL_PID=$STARTED_PID
leader_ok() { [[ $(curl -fsS "http://$CONSUL_ADDR/v1/status/leader") == *:* ]]; }
wait_for consul 30 leader_ok || die "consul dev agent did not elect a leader; log tail:
$(tail -20 "$TMP/consul.log")"
# The Connect CA is ready once the roots answer with a root.
ca_ok() { [[ $(curl -fsS "http://$CONSUL_ADDR/v1/agent/connect/ca/roots") == *RootCert* ]]; }
wait_for consul-ca 30 ca_ok || die "consul Connect CA not ready"
export CONSUL_HTTP_ADDR=$CONSUL_ADDR

# ---- pairs -------------------------------------------------------------------------------------
declare -A URL SIDECAR_PIDS LOGS

register() { # register NAME WEB_SIDECAR_PORT CLIENT_SIDECAR_PORT UPSTREAM_PORT CLIENT_APP_PORT
	local name=$1 wsp=$2 csp=$3 up=$4 cap=$5
	if [[ $name == outrider-l7* ]]; then
		# The L7 pairs: web-NAME speaks HTTP, declared as Consul users do.
		curl -fsS -X PUT "http://$CONSUL_ADDR/v1/config" -d "{\"Kind\": \"service-defaults\", \"Name\": \"web-$name\", \"Protocol\": \"http\"}" >/dev/null
	fi
	if [[ $name == outrider-l7-route10 ]]; then
		write_router10 "web-$name"
	fi
	local webcfg='{}'
	case $name in
	outrider-l7-gateway) webcfg='{"gateway": {"routes": [{"name": "none", "match": {"path_prefix": "/nomatch/"}}]}}' ;;
	outrider-l7-cachehit) webcfg='{"gateway": {"cache_size": "16MiB", "routes": [{"name": "all", "cache": {"enabled": true}}]}}' ;;
	esac
	curl -fsS -X PUT "http://$CONSUL_ADDR/v1/agent/service/register" -d @- <<EOF
{"ID": "web-$name", "Name": "web-$name", "Address": "127.0.0.1", "Port": $BACKEND_PORT,
 "Connect": {"SidecarService": {"Address": "127.0.0.1", "Port": $wsp,
   "Checks": [{"TCP": "127.0.0.1:$wsp", "Interval": "1s"}], "Proxy": {"Config": $webcfg}}}}
EOF
	curl -fsS -X PUT "http://$CONSUL_ADDR/v1/agent/service/register" -d @- <<EOF
{"ID": "client-$name", "Name": "client-$name", "Address": "127.0.0.1", "Port": $cap,
 "Connect": {"SidecarService": {"Address": "127.0.0.1", "Port": $csp,
   "Checks": [{"TCP": "127.0.0.1:$csp", "Interval": "1s"}],
   "Proxy": {"Upstreams": [{"DestinationName": "web-$name", "LocalBindPort": $up}]}}}}
EOF
}

healthy() { # healthy SERVICE: the connect endpoint lists a passing instance
	local out
	out=$(curl -fsS "http://$CONSUL_ADDR/v1/health/connect/$1?passing") && [[ $out == *'"ServiceID"'* ]]
}

leaf() { # leaf SERVICE DIR: DIR/SERVICE.crt, .key, .pem (cert+key) and DIR/root.crt
	local svc=$1 dir=$2
	curl -fsS "http://$CONSUL_ADDR/v1/agent/connect/ca/leaf/$svc" | python3 -c '
import json, sys
d = json.load(sys.stdin); base = sys.argv[1]
open(base + ".crt", "w").write(d["CertPEM"])
open(base + ".key", "w").write(d["PrivateKeyPEM"])
open(base + ".pem", "w").write(d["CertPEM"].rstrip("\n") + "\n" + d["PrivateKeyPEM"])' "$dir/$svc"
	curl -fsS "http://$CONSUL_ADDR/v1/agent/connect/ca/roots" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("".join(r["RootCert"].rstrip("\n") + "\n" + "".join(i.rstrip("\n") + "\n" for i in (r.get("IntermediateCerts") or [])) for r in d["Roots"]), end="")' >"$dir/root.crt"
}

write_router10() { # write_router10 SERVICE: a service-router of 10 routes; only the last matches the benchmark's GET /
	python3 - "$1" <<'PY' | curl -fsS -X PUT "http://$CONSUL_ADDR/v1/config" -d @- >/dev/null
import json, sys
svc = sys.argv[1]
routes = []
for i in range(4):
    routes.append({"Match": {"HTTP": {"PathPrefix": f"/api/v{i}/"}}, "Destination": {"PrefixRewrite": "/"}})
for i in range(3):
    routes.append({"Match": {"HTTP": {"Header": [{"Name": "x-api-version", "Exact": str(i)}]}}})
routes.append({"Match": {"HTTP": {"PathRegex": "/items/[0-9]+"}}})
routes.append({"Match": {"HTTP": {"Methods": ["POST", "PUT"], "QueryParam": [{"Name": "debug", "Present": True}]}}})
routes.append({"Match": {"HTTP": {"PathPrefix": "/"}},
               "Destination": {"NumRetries": 2, "RetryOn": ["5xx"], "RequestTimeout": "10s",
                               "RequestHeaders": {"Add": {"x-route": "catch-all"}}}})
print(json.dumps({"Kind": "service-router", "Name": svc, "Routes": routes}))
PY
}

write_policy20() { # write_policy20 FILE CLIENT_SERVICE: 20 rules, a realistic mix; only the last allows the benchmark's GET /
	local td
	td=$(curl -fsS "http://$CONSUL_ADDR/v1/agent/connect/ca/roots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["TrustDomain"])')
	{
		echo "default: deny"
		echo "rules:"
		local i
		for i in $(seq 1 8); do
			echo "  - deny: {http: {path_prefix: /admin-$i/}}"
		done
		echo "  - deny: {http: {methods: [DELETE, TRACE]}}"
		echo "  - deny: {http: {headers: [{name: x-debug, present: true}]}}"
		for i in $(seq 1 9); do
			echo "  - allow: {spiffe_id: spiffe://$td/ns/default/dc/dc1/svc/svc-$i, http: {path_prefix: /svc-$i/}}"
		done
		echo "  - allow: {spiffe_id_pattern: 'spiffe://$td/ns/default/dc/*/svc/$2', http: {methods: [GET, HEAD]}}"
	} >"$1"
}

setup_consul_pair() { # setup_consul_pair NAME KIND(builtin|outrider) [ENV...]
	local name=$1 kind=$2
	shift 2
	local wsp csp up cap wadm cadm
	read -r wsp csp up cap wadm cadm < <(free_ports 6)
	register "$name" "$wsp" "$csp" "$up" "$cap"
	local pids=()
	local side
	for side in web client; do
		local adm=$wadm
		[[ $side == client ]] && adm=$cadm
		if [[ $kind == builtin ]]; then
			start "$name-$side" "$CONSUL_BIN" connect proxy -sidecar-for "$side-$name" -http-addr "$CONSUL_ADDR"
		else
			local extra=()
			if [[ $name == outrider-l7-policy20 && $side == web ]]; then
				write_policy20 "$TMP/policy20.yaml" "client-$name"
				extra=(-policy "$TMP/policy20.yaml")
			fi
			start "$name-$side" env "$@" "$OUTRIDER_BIN" run -sidecar-for "$side-$name" \
				-admin-bind "127.0.0.1:$adm" -http-addr "$CONSUL_ADDR" -log-level warn $OUTRIDER_FLAGS ${extra[@]+"${extra[@]}"}
			# env execs outrider: the PID is Outrider's own.
		fi
		pids+=("$STARTED_PID")
		LOGS[$name]+="$TMP/$name-$side.log "
	done
	SIDECAR_PIDS[$name]="${pids[*]}"
	URL[$name]="http://127.0.0.1:$up/"
	[[ $name == outrider-l7-cachehit ]] && URL[$name]="http://127.0.0.1:$up/cacheable"
	if [[ $kind == outrider ]]; then
		local a
		for a in "$wadm" "$cadm"; do
			wait_for "$name ready" 30 curl -fsS "http://127.0.0.1:$a/ready" ||
				pair_failed "$name" "sidecar on admin port $a not ready: $(curl -sS "http://127.0.0.1:$a/ready" 2>&1)"
		done
	fi
	wait_for "$name health" 30 healthy "web-$name" || pair_failed "$name" "web-$name never passing in /v1/health/connect"
	wait_for "$name health" 30 healthy "client-$name" || pair_failed "$name" "client-$name never passing in /v1/health/connect"
}

setup_nginx_pair() {
	local dir=$TMP/nginx-pair in out
	mkdir -p "$dir"
	read -r in out < <(free_ports 2)
	leaf web-nginx "$dir"
	leaf client-nginx "$dir"
	# The two server blocks are the configuration of ANCHORS.md; the rest is boilerplate.
	cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream app  { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
    upstream peer { server 127.0.0.1:$in; keepalive 64; }
    server { listen 127.0.0.1:$in ssl; ssl_certificate $dir/web-nginx.crt; ssl_certificate_key $dir/web-nginx.key;
             ssl_client_certificate $dir/root.crt; ssl_verify_client on;
             location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
    server { listen 127.0.0.1:$out;
             location / { proxy_pass https://peer; proxy_http_version 1.1; proxy_set_header Connection "";
                          proxy_ssl_certificate $dir/client-nginx.crt; proxy_ssl_certificate_key $dir/client-nginx.key;
                          proxy_ssl_verify off; proxy_ssl_session_reuse on; } }
}
EOF
	start nginx-pair "$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
	SIDECAR_PIDS[nginx]=$STARTED_PID # its worker is found as a child at measurement time
	LOGS[nginx]="$TMP/nginx-pair.log $dir/error.log"
	URL[nginx]="http://127.0.0.1:$out/"
}

setup_haproxy_pair() {
	local dir=$TMP/haproxy-pair in out
	mkdir -p "$dir"
	read -r in out < <(free_ports 2)
	leaf web-haproxy "$dir"
	leaf client-haproxy "$dir"
	cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend inbound
    bind 127.0.0.1:$in ssl crt $dir/web-haproxy.pem ca-file $dir/root.crt verify required
    default_backend app
backend app
    http-reuse always
    server app1 127.0.0.1:$BACKEND_PORT
frontend outbound
    bind 127.0.0.1:$out
    default_backend peer
backend peer
    http-reuse always
    server web1 127.0.0.1:$in ssl crt $dir/client-haproxy.pem ca-file $dir/root.crt verify required
EOF
	"$HAPROXY_BIN" -c -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1 || die "haproxy config rejected: $(cat "$dir/check.log")"
	start haproxy-pair "$HAPROXY_BIN" -db -f "$dir/haproxy.cfg"
	SIDECAR_PIDS[haproxy]=$STARTED_PID
	LOGS[haproxy]="$TMP/haproxy-pair.log"
	URL[haproxy]="http://127.0.0.1:$out/"
}

# start_collector: the tracing pairs' collector (COLLECTOR), started once; sets COLLECTOR_OTLP
# (its OTLP/gRPC address).
start_collector() {
	[[ -n ${COLLECTOR_OTLP:-} ]] && return 0
	if [[ $COLLECTOR == sink ]]; then
		local g h
		read -r g h < <(free_ports 2)
		go build -o "$TMP/otlpsink" ./bench/otlpsink || die "cannot build bench/otlpsink"
		start otlpsink "$TMP/otlpsink" -grpc "127.0.0.1:$g" -http "127.0.0.1:$h"
		COLLECTOR_OTLP=127.0.0.1:$g
		wait_for otlpsink 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$h" || die "otlpsink did not start: $(cat "$TMP/otlpsink.log")"
		return 0
	fi
	local g h q qg
	read -r g h q qg < <(free_ports 4)
	# The configuration the tests use (in-memory storage, loopback ports).
	sed -e "s/@OTLP_GRPC@/127.0.0.1:$g/" -e "s/@OTLP_HTTP@/127.0.0.1:$h/" -e "s/@QUERY_HTTP@/127.0.0.1:$q/" \
		-e "s/@QUERY_GRPC@/127.0.0.1:$qg/" "$ROOT/internal/testutil/jaegertest/local.yaml" >"$TMP/jaeger.yaml"
	start jaeger "$JAEGER_BIN" --config "$TMP/jaeger.yaml"
	COLLECTOR_OTLP=127.0.0.1:$g
	wait_for jaeger 30 curl -fsS "http://127.0.0.1:$q/api/services" || die "jaeger did not start: $(tail -20 "$TMP/jaeger.log")"
}

pair_failed() { # pair_failed PAIR MESSAGE: print the pair's logs and stop
	local pair=$1 f
	echo "pair.sh: pair $pair failed: $2" >&2
	for f in ${LOGS[$pair]:-}; do
		echo "---- $f (last 30 lines)" >&2
		tail -30 "$f" >&2 || true
	done
	exit 1
}

for p in "${PAIR_LIST[@]}"; do
	log "setting up pair $p"
	case $p in
	direct) URL[direct]=$BACKEND_URL SIDECAR_PIDS[direct]="" ;;
	builtin) setup_consul_pair builtin builtin ;;
	outrider) setup_consul_pair outrider outrider $OUTRIDER_ENV ;;
	outrider-gomaxprocs*) setup_consul_pair "$p" outrider $OUTRIDER_ENV "GOMAXPROCS=${p#outrider-gomaxprocs}" ;;
	outrider-goroutines) setup_consul_pair "$p" outrider $OUTRIDER_ENV "OUTRIDER_DATA_PATH=goroutines" ;;
	outrider-l7 | outrider-l7-policy20 | outrider-l7-route10 | outrider-l7-gateway | outrider-l7-cachehit) setup_consul_pair "$p" outrider $OUTRIDER_ENV ;;
	outrider-l7-trace1) start_collector && setup_consul_pair "$p" outrider $OUTRIDER_ENV "OTEL_EXPORTER_OTLP_ENDPOINT=http://$COLLECTOR_OTLP" \
		OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 ;;
	outrider-l7-trace100) start_collector && setup_consul_pair "$p" outrider $OUTRIDER_ENV "OTEL_EXPORTER_OTLP_ENDPOINT=http://$COLLECTOR_OTLP" \
		OTEL_TRACES_SAMPLER=always_on ;;
	outrider-l7-gomaxprocs*) setup_consul_pair "$p" outrider $OUTRIDER_ENV "GOMAXPROCS=${p#outrider-l7-gomaxprocs}" ;;
	nginx) setup_nginx_pair ;;
	haproxy) setup_haproxy_pair ;;
	esac
done

# Warm-up: every pair answers 200 with the 19-byte body.
for p in "${PAIR_LIST[@]}"; do
	ok() { [[ $(curl -fsS -m 2 "${URL[$p]}" | wc -c) == 19 ]]; }
	wait_for "$p warm-up" 30 ok || pair_failed "$p" "no 200 with the backend's body through ${URL[$p]}: $(curl -sS -m 2 -o /dev/null -w '%{http_code}' "${URL[$p]}" 2>&1)"
done
log "all pairs answer; warming up with wrk"

# ---- measurement -------------------------------------------------------------------------------
# All PIDs of a pair: its sidecars and their children (nginx's worker).
pair_pids() {
	local pid
	for pid in ${SIDECAR_PIDS[$1]}; do
		echo "$pid"
		ps -o pid= --ppid "$pid" 2>/dev/null | tr -d " " || true
	done
}

# Sum of utime+stime, in clock ticks, of the given PIDs.
cpu_ticks() {
	local total=0 pid rest
	for pid in "$@"; do
		rest=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
		set -- $rest
		total=$((total + ${12} + ${13}))
	done
	echo "$total"
}

check_alive() {
	local pid
	for pid in ${SIDECAR_PIDS[$1]}; do
		kill -0 "$pid" 2>/dev/null || pair_failed "$1" "process $pid exited"
	done
	kill -0 "$BACKEND_PID" 2>/dev/null || die "backend nginx exited"
	kill -0 "$CONSUL_PID" 2>/dev/null || die "consul agent exited"
}

# run_wrk PAIR MODE DURATION: prints
# "rps p99_ms requests cpu_ticks cpu_us_per_req socket_errors non2xx agent_us_per_req"
run_wrk() {
	local pair=$1 mode=$2 dur=$3 pids out
	local hdr=()
	[[ $mode == close ]] && hdr=(-H 'Connection: close')
	mapfile -t pids < <(pair_pids "$pair")
	local t0 t1 a0 a1
	a0=$(cpu_ticks "$CONSUL_PID")
	t0=$(cpu_ticks "${pids[@]}")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency "${hdr[@]}" "${URL[$pair]}" 2>&1) || true
	t1=$(cpu_ticks "${pids[@]}")
	a1=$(cpu_ticks "$CONSUL_PID")
	echo "$out" >>"$TMP/wrk-$pair-$mode.log"
	WRK_OUT=$out python3 - "$t0" "$t1" "$CLK_TCK" "${SIDECAR_PIDS[$pair]}" "$a0" "$a1" <<'EOF'
import os, re, sys
out = os.environ["WRK_OUT"]
def num(pat, default="nan"):
    m = re.search(pat, out)
    return m.group(1) if m else default
rps = num(r"Requests/sec:\s+([0-9.]+)")
reqs = num(r"(\d+) requests in")
p99 = "nan"
m = re.search(r"^\s*99%\s+([0-9.]+)(us|ms|s)\b", out, re.M)
if m:
    p99 = "%.3f" % (float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)])
se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
errs = sum(int(x) for x in se.groups()) if se else 0
non2xx = num(r"Non-2xx or 3xx responses: (\d+)", "0")
ticks = int(sys.argv[2]) - int(sys.argv[1])
cpu = "%.1f" % (ticks * 1e6 / int(sys.argv[3]) / int(reqs)) if (sys.argv[4].strip() and reqs != "nan" and int(reqs) > 0) else "-"
agent = "%.1f" % ((int(sys.argv[6]) - int(sys.argv[5])) * 1e6 / int(sys.argv[3]) / int(reqs)) if (reqs != "nan" and int(reqs) > 0) else "-"
print(rps, p99, reqs, ticks, cpu, errs, non2xx, agent)
EOF
}

for mode in $MODES; do
	for p in "${PAIR_LIST[@]}"; do run_wrk "$p" "$mode" 1s >/dev/null; check_alive "$p"; done
done

mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$RESULTS_DIR/$STAMP.txt
{
	echo "# outrider sidecar-pair benchmark $STAMP"
	echo "# git: $(git describe --tags --always --dirty 2>/dev/null || echo unknown)  outrider: $("$OUTRIDER_BIN" version 2>/dev/null || echo '?')"
	echo "# consul: $("$CONSUL_BIN" version | head -1)  nginx: $("$NGINX_BIN" -v 2>&1 | sed 's/.*\///')  haproxy: ${HAPROXY_BIN:+$("$HAPROXY_BIN" -v | head -1 | awk '{print $3}')}"
	echo "# host: $(nproc) cpus, $(uname -r), loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# pairs: ${PAIR_LIST[*]}  rounds: $ROUNDS  duration: $DURATION  wrk -t$THREADS -c$CONNS  OUTRIDER_ENV='$OUTRIDER_ENV'  COLLECTOR=$COLLECTOR  CLK_TCK=$CLK_TCK"
	echo "# mode round pair rps p99_ms requests cpu_ticks cpu_us_per_req socket_errors non2xx agent_us_per_req"
} >"$RAW"

for mode in $MODES; do
	for ((r = 1; r <= ROUNDS; r++)); do
		for p in "${PAIR_LIST[@]}"; do
			line=$(run_wrk "$p" "$mode" "$DURATION")
			check_alive "$p"
			echo "$mode $r $p $line" >>"$RAW"
			log "$mode round $r/$ROUNDS $p: $line"
		done
	done
done
echo "# loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RAW"

# ---- tables ------------------------------------------------------------------------------------
python3 - "$RAW" "$CONNS" <<'EOF' | tee -a "$RAW"
import math, statistics, sys
raw, conns = sys.argv[1], sys.argv[2]
rows, order = {}, []
for line in open(raw):
    if line.startswith("#") or not line.strip():
        continue
    mode, rnd, pair, rps, p99, reqs, ticks, cpu, errs, non2xx, agent = line.split()
    if pair not in order:
        order.append(pair)
    cpu = float(cpu) if cpu != "-" else float("nan")
    agent = float(agent) if agent != "-" else float("nan")
    rows.setdefault(mode, {}).setdefault(pair, []).append(
        dict(rps=float(rps), p99=float(p99), cpu=cpu, agent=agent, errs=int(errs), non2xx=int(non2xx)))

def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")

def fmt(x, spec):
    return "-" if math.isnan(x) else format(x, spec)

titles = {"keepalive": f"Keep-alive client connections (wrk -c{conns})",
          "close": "A new client connection for every request (wrk -H 'Connection: close')"}
for mode, pairs in rows.items():
    m = {p: {k: med([r[k] for r in rs]) for k in ("rps", "p99", "cpu", "agent")} for p, rs in pairs.items()}
    for p, rs in pairs.items():
        m[p]["errs"] = sum(r["errs"] for r in rs)
        m[p]["non2xx"] = sum(r["non2xx"] for r in rs)
    direct = m.get("direct", {}).get("rps", float("nan"))
    print(f"\n{titles[mode]}, medians of {len(next(iter(pairs.values())))} rounds:\n")
    print("| pair | req/s | vs direct | p99 ms | CPU us/req | Consul agent us/req | errors |")
    print("|---|---|---|---|---|---|---|")
    for p in order:
        if p not in m:
            continue
        x = m[p]
        err = f"{x['errs']} sock, {x['non2xx']} non-2xx" if (x["errs"] or x["non2xx"]) else "0"
        print(f"| {p} | {fmt(x['rps'], ',.0f')} | {fmt(x['rps'] / direct if direct else float('nan'), '.3f')} "
              f"| {fmt(x['p99'], '.2f')} | {fmt(x['cpu'], '.1f')} | {fmt(x['agent'], '.1f')} | {err} |")
    if "builtin" in m:
        b = m["builtin"]
        for p in order:
            if p in m and p.startswith("outrider"):
                o = m[p]
                rr, cr = o["rps"] / b["rps"], o["cpu"] / b["cpu"]
                if mode == "keepalive":
                    target = f"target CPU/req <= 0.85x: {'met' if cr <= 0.85 else 'NOT met'}"
                else:
                    target = f"target req/s >= 2x: {'met' if rr >= 2 else 'NOT met'}"
                print(f"\n{p} / builtin: req/s {rr:.2f}x, p99 {o['p99'] / b['p99']:.2f}x, CPU/req {cr:.2f}x ({target})")
EOF
log "raw figures: $RAW"

# Starts the servers the tests and benchmarks need, unless the caller gave
# their URLs. Source this file, then call `start_services`; everything it
# starts is stopped and removed when the sourcing shell exits.
#
#   BACKPLANE_POSTGRES_URL  use this PostgreSQL instead of starting one
#   BACKPLANE_REDIS_URL     use this Redis instead of starting one
#   BACKPLANE_REDIS_CLUSTER_URL
#                           use this Redis Cluster (comma-separated node
#                           URLs) instead of starting three local masters
#
# Servers listen on 127.0.0.1 only, on free ports, with their data in a
# private temporary directory. PostgreSQL refuses to run as root, so when
# this runs as root the server runs as the `postgres` system user.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SERVICES_PASSWORD=backplane-test-secret
SERVICES_PIDS=()
SERVICES_DIR=""

log() { printf '[services] %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The prefix that runs a command as the postgres user when we are root.
# setpriv execs the command in place, so a background job's pid is the
# server's own and stopping it stops the server.
if [ "$(id -u)" = 0 ]; then
    AS_PG_USER=(setpriv --reuid=postgres --regid=postgres --init-groups --)
else
    AS_PG_USER=()
fi

stop_services() {
    local pid
    for pid in "${SERVICES_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVICES_PIDS[@]}"; do
        # PostgreSQL's fast shutdown takes a moment; do not leave it behind.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    SERVICES_PIDS=()
    if [ -n "$SERVICES_DIR" ]; then rm -rf "$SERVICES_DIR"; fi
}

start_postgres() {
    if [ -n "${BACKPLANE_POSTGRES_URL:-}" ]; then
        log "using PostgreSQL from BACKPLANE_POSTGRES_URL"
        return
    fi
    if [ ! -x "$PG_BIN/postgres" ]; then
        log "PostgreSQL server binaries not found in $PG_BIN"
        return 1
    fi
    local dir=$SERVICES_DIR/postgres port
    port=$(free_port)
    mkdir -p "$dir"
    printf '%s\n' "$SERVICES_PASSWORD" > "$dir/pwfile"
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; fi

    "${AS_PG_USER[@]}" "$PG_BIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync \
        > "$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
    "${AS_PG_USER[@]}" "$PG_BIN/postgres" -D "$dir/data" -p "$port" -k "$dir" \
        -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off \
        > "$dir/server.log" 2>&1 &
    SERVICES_PIDS+=($!)

    for _ in $(seq 100); do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            export BACKPLANE_POSTGRES_URL="postgres://postgres:$SERVICES_PASSWORD@127.0.0.1:$port/postgres"
            export BACKPLANE_POSTGRES_LOG="$dir/server.log"
            log "PostgreSQL 15 on 127.0.0.1:$port (data in $dir)"
            return
        fi
        sleep 0.1
    done
    cat "$dir/server.log" >&2
    return 1
}

ensure_redis_installed() {
    if command -v redis-server > /dev/null; then return; fi
    log "installing redis-server with apt-get"
    if [ "$(id -u)" != 0 ]; then
        log "redis-server is missing and we are not root: install it or set BACKPLANE_REDIS_URL"
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server > /dev/null
}

# Starts one redis-server and sets REDIS_PORT to its port. Extra arguments
# go to the server. Set SPAWN_REDIS_PORT to choose the port; it is used
# once and cleared.
spawn_redis() {
    local dir=$1; shift
    local port=${SPAWN_REDIS_PORT:-}
    SPAWN_REDIS_PORT=""
    if [ -z "$port" ]; then port=$(free_port); fi
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" \
        --appendonly no --requirepass "$SERVICES_PASSWORD" "$@" \
        > "$dir/server.log" 2>&1 &
    SERVICES_PIDS+=($!)
    for _ in $(seq 100); do
        if redis-cli -p "$port" -a "$SERVICES_PASSWORD" --no-auth-warning ping 2>/dev/null | grep -q PONG; then
            REDIS_PORT=$port
            return
        fi
        sleep 0.1
    done
    cat "$dir/server.log" >&2
    return 1
}

start_redis() {
    if [ -n "${BACKPLANE_REDIS_URL:-}" ]; then
        log "using Redis from BACKPLANE_REDIS_URL"
        return
    fi
    ensure_redis_installed
    spawn_redis "$SERVICES_DIR/redis"
    export BACKPLANE_REDIS_URL="redis://:$SERVICES_PASSWORD@127.0.0.1:$REDIS_PORT/"
    log "Redis on 127.0.0.1:$REDIS_PORT"
}

# A free port whose cluster bus port (port + 10000) is free too.
free_cluster_port() {
    python3 -c '
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); port = a.getsockname()[1]
    if port + 10000 >= 65536: a.close(); continue
    b = socket.socket()
    try: b.bind(("127.0.0.1", port + 10000))
    except OSError: a.close(); b.close(); continue
    a.close(); b.close(); print(port); break
'
}

# Starts three cluster-enabled masters on loopback and joins them into one
# Redis Cluster (no replicas), unless BACKPLANE_REDIS_CLUSTER_URL is set.
start_redis_cluster() {
    if [ -n "${BACKPLANE_REDIS_CLUSTER_URL:-}" ]; then
        log "using Redis Cluster from BACKPLANE_REDIS_CLUSTER_URL"
        return
    fi
    ensure_redis_installed
    local i ports=() nodes=() urls=()
    for i in 1 2 3; do
        SPAWN_REDIS_PORT=$(free_cluster_port)
        spawn_redis "$SERVICES_DIR/redis-cluster-$i" --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --masterauth "$SERVICES_PASSWORD"
        ports+=("$REDIS_PORT")
        nodes+=("127.0.0.1:$REDIS_PORT")
        urls+=("redis://:$SERVICES_PASSWORD@127.0.0.1:$REDIS_PORT/")
    done

    redis-cli -a "$SERVICES_PASSWORD" --no-auth-warning --cluster create "${nodes[@]}" \
        --cluster-replicas 0 --cluster-yes > "$SERVICES_DIR/redis-cluster-1/create.log" 2>&1 \
        || { cat "$SERVICES_DIR/redis-cluster-1/create.log" >&2; return 1; }

    # Every node must see the whole cluster before clients can rely on it.
    local port ready
    for _ in $(seq 150); do
        ready=1
        for port in "${ports[@]}"; do
            redis-cli -p "$port" -a "$SERVICES_PASSWORD" --no-auth-warning cluster info \
                2>/dev/null | grep -q '^cluster_state:ok' || ready=0
        done
        if [ "$ready" = 1 ]; then
            export BACKPLANE_REDIS_CLUSTER_URL
            BACKPLANE_REDIS_CLUSTER_URL=$(IFS=,; printf '%s' "${urls[*]}")
            log "Redis Cluster on ${nodes[*]}"
            return
        fi
        sleep 0.2
    done
    log "Redis Cluster did not reach cluster_state:ok"
    return 1
}

start_services() {
    SERVICES_DIR=$(mktemp -d /tmp/backplane-services.XXXXXX)
    chmod 755 "$SERVICES_DIR"
    trap stop_services EXIT
    trap 'exit 130' INT TERM
    start_postgres
    start_redis
    start_redis_cluster
}

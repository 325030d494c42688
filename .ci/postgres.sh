# shellcheck shell=bash
# A private, throw-away PostgreSQL server for the test suite.
#
# Source this file, then call `kaizenml_pg_start DIR`: it installs PostgreSQL from Debian's
# packages when no server binaries are found, runs initdb in DIR (a fresh temporary folder) as a
# non-root user, starts the server on a free loopback port and exports
# KAIZENML_TEST_POSTGRES_URL. `kaizenml_pg_stop` stops it; callers run it from their EXIT trap.
# Nothing here touches a system-wide cluster: the server listens on 127.0.0.1 only, its socket
# lives in DIR, and DIR is deleted afterwards.

KAIZENML_PG_DATA=""
KAIZENML_PG_BIN=""
KAIZENML_PG_USER=""

_kaizenml_pg_bindir() {
    local dir
    # Debian/Ubuntu keep the server binaries off PATH; elsewhere (Homebrew, other distributions)
    # initdb is on PATH.
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -z "$dir" ]] && command -v initdb >/dev/null 2>&1; then
        dir="$(dirname "$(command -v initdb)")"
    fi
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
    fi
}

_kaizenml_pg_install() {
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "postgres.sh: PostgreSQL server binaries (initdb, pg_ctl) are missing; install" \
             "PostgreSQL (Debian: the 'postgresql' package, as root)" >&2
        return 1
    fi
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

# Run a command as the server's user (root may not run postgres).
_kaizenml_pg_as() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u "$KAIZENML_PG_USER" -- "$@"
    else
        "$@"
    fi
}

_kaizenml_pg_free_port() {
    python3 - <<'EOF'
import socket
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
EOF
}

kaizenml_pg_start() {
    local base="$1" password port attempt
    KAIZENML_PG_BIN="$(_kaizenml_pg_bindir)"
    if [[ -z "$KAIZENML_PG_BIN" ]]; then
        _kaizenml_pg_install
        KAIZENML_PG_BIN="$(_kaizenml_pg_bindir)"
        [[ -n "$KAIZENML_PG_BIN" ]] || { echo "postgres.sh: no initdb after install" >&2; return 1; }
    fi

    if [[ "$(id -u)" -eq 0 ]]; then
        # Debian's package creates the 'postgres' system user; make our own if it is absent.
        if id postgres >/dev/null 2>&1; then
            KAIZENML_PG_USER=postgres
        else
            id kaizenml-pg >/dev/null 2>&1 || useradd --system --no-create-home \
                --shell /usr/sbin/nologin kaizenml-pg
            KAIZENML_PG_USER=kaizenml-pg
        fi
    else
        KAIZENML_PG_USER="$(id -un)"
    fi

    # The folder must be reachable by the server's user, so it is not inside a root-only tmpdir.
    KAIZENML_PG_DATA="$base"
    mkdir -p "$KAIZENML_PG_DATA"
    chmod 700 "$KAIZENML_PG_DATA"
    [[ "$(id -u)" -ne 0 ]] || chown "$KAIZENML_PG_USER" "$KAIZENML_PG_DATA"

    password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    _kaizenml_pg_as bash -c "umask 077; printf '%s\n' '$password' > '$KAIZENML_PG_DATA/pwfile'"
    _kaizenml_pg_as "$KAIZENML_PG_BIN/initdb" -D "$KAIZENML_PG_DATA/data" -U kaizenml \
        --pwfile="$KAIZENML_PG_DATA/pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --no-locale >"$KAIZENML_PG_DATA/initdb.log" 2>&1 \
        || { cat "$KAIZENML_PG_DATA/initdb.log" >&2; return 1; }

    # A throw-away cluster: durability settings off for speed; enough connections for the
    # stress tests (8 processes, each with its own pool).
    for attempt in 1 2 3 4 5; do
        port="$(_kaizenml_pg_free_port)"
        if _kaizenml_pg_as "$KAIZENML_PG_BIN/pg_ctl" -D "$KAIZENML_PG_DATA/data" -w -t 60 \
            -l "$KAIZENML_PG_DATA/server.log" \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $KAIZENML_PG_DATA -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB" \
            start >/dev/null; then
            break
        fi
        echo "postgres.sh: start on port $port failed (attempt $attempt)" >&2
        tail -n 5 "$KAIZENML_PG_DATA/server.log" >&2 || true
        [[ "$attempt" -lt 5 ]] || return 1
    done

    _kaizenml_pg_as "$KAIZENML_PG_BIN/createdb" -h "$KAIZENML_PG_DATA" -p "$port" -U kaizenml \
        kaizenml_test
    export KAIZENML_TEST_POSTGRES_URL="postgresql+psycopg://kaizenml:${password}@127.0.0.1:${port}/kaizenml_test"
    echo "postgres.sh: PostgreSQL $("$KAIZENML_PG_BIN/postgres" --version | awk '{print $3}')" \
         "listening on 127.0.0.1:$port as $KAIZENML_PG_USER" >&2
}

kaizenml_pg_stop() {
    if [[ -n "$KAIZENML_PG_DATA" && -d "$KAIZENML_PG_DATA/data" ]]; then
        _kaizenml_pg_as "$KAIZENML_PG_BIN/pg_ctl" -D "$KAIZENML_PG_DATA/data" -m immediate \
            -w stop >/dev/null 2>&1 || true
    fi
    if [[ -n "$KAIZENML_PG_DATA" ]]; then
        rm -rf "$KAIZENML_PG_DATA"
    fi
}

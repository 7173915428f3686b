# scripts/lib.sh: shared steps of the test, demo and benchmark commands.
# Sourced, not run.  Everything here runs as root on Debian 12; PostgreSQL
# itself always runs as the unprivileged "postgres" OS user.

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
export PG_CONFIG=$PG_BIN/pg_config
CMAP_TOP="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\n==== %s ====\n' "$*"; }

require_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "run as root (for example: sudo $0)" >&2
		exit 1
	fi
}

# ensure_packages PKG...: apt-get install whatever is missing.
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# keep the packages from creating and starting a default cluster we do not use
	mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/cmapext.conf
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}"
}

ensure_build_packages() {
	ensure_packages postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
		postgresql-contrib make gcc "$@"
}

# build_and_install: compile (PG_CFLAGS from the environment) and install.
build_and_install() {
	make -C "$CMAP_TOP" clean >/dev/null
	make -C "$CMAP_TOP" PG_CFLAGS="${PG_CFLAGS:-}"
	make -C "$CMAP_TOP" install
}

# Start in / : the caller's directory may be private to root.
run_pg() { (cd / && runuser -u postgres -- env PATH="$PG_BIN:$PATH" "$@"); }

# free_port: a TCP port nobody listens on.
free_port() {
	local p
	for p in $(seq 55432 55532); do
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
			echo $p
			return
		fi
	done
	echo 55999
}

# start_cluster DIR PORT [conf lines...]: initdb a throwaway cluster in DIR
# that preloads cmapext, and start it.  Its socket lives in DIR.
start_cluster() {
	local dir=$1 port=$2
	shift 2
	mkdir -p "$dir"
	chown postgres:postgres "$dir"
	run_pg initdb -D "$dir/data" -A trust -U postgres >/dev/null
	{
		echo "shared_preload_libraries = 'cmapext'"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "listen_addresses = ''"
		for line in "$@"; do echo "$line"; done
	} >> "$dir/data/postgresql.conf"
	run_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

stop_cluster() {
	local dir=$1
	[ -d "$dir/data" ] && run_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Helpers shared by bench/nbd/run.sh and bench/nbd/tls.sh (sourced; they
# set $raw, the RESULT file, $tmp, the scratch directory, and start one
# server at a time into $server_pid).

say() { printf '== %s\n' "$*" >&2; }
res() { echo "RESULT $*" | tee -a "$raw"; }

server_pid=
peak_kb=0

# Stops the server, keeping the highest peak RSS seen in $peak_kb.
stop_server() {
	[ -n "$server_pid" ] || return 0
	local hwm
	hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$server_pid/status" 2>/dev/null)
	[ -n "$hwm" ] && [ "$hwm" -gt "$peak_kb" ] && peak_kb=$hwm
	kill "$server_pid" 2>/dev/null
	wait "$server_pid" 2>/dev/null
	server_pid=
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# Waits for the server's socket SOCK; fails if the server dies first.
wait_sock() {
	for _ in $(seq 200); do
		[ -S "$1" ] && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "server did not start" >&2
	[ -f "$tmp/serve.log" ] && tail -5 "$tmp/serve.log" >&2
	exit 1
}

# The server's user+system CPU so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
# got FIO_EXIT 0: stops the run if a job failed.
got() { [ "$1" = "$2" ] || { echo "job failed" >&2; exit 1; }; }

# Records which vdisk ran, and when: RESULT meta commit (marked
# +uncommitted if the engine or a front end has local changes) and date.
record_build() {
	local commit
	commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
	[ -n "$(git -C "$top" status --porcelain -- engine format cli nbd 2>/dev/null)" ] &&
		commit="$commit+uncommitted"
	res meta commit "$commit"
	res meta date "$(date -u +%Y-%m-%dT%H:%MZ)"
}

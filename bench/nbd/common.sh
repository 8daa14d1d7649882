# Helpers shared by bench/nbd/run.sh and bench/nbd/tls.sh (sourced; they
# set $raw, the RESULT file, $tmp, the scratch directory, and start one
# server at a time into $server_pid).

say() { printf '== %s\n' "$*" >&2; }
res() { echo "RESULT $*" | tee -a "$raw"; }

server_pid=
peak_kb=0
peak_anon_kb=0
sampler_pid=

# Samples the server's RssAnon every 0.2 s into $tmp/anon-peak (the kernel
# keeps no peak of it): VmHWM counts the file pages a process maps too,
# such as vdisk's LMDB index, which the page cache holds either way.  Bash
# builtins only (the pause is a read timeout on a pipe nobody writes), so
# the sampling forks nothing while the jobs run.
start_sampler() {
	local pid=$server_pid out=$tmp/anon-peak
	(
		peak=0
		exec {idle}<> <(:)
		while kill -0 "$pid" 2>/dev/null; do
			while read -r k v _; do
				[ "$k" = RssAnon: ] && [ "$v" -gt "$peak" ] && peak=$v
			done <"/proc/$pid/status" 2>/dev/null
			echo "$peak" >"$out"
			read -r -t 0.2 -u "$idle" _
		done
	) &
	sampler_pid=$!
}

# Stops the server, keeping the highest peak RSS seen in $peak_kb and the
# highest sampled RssAnon in $peak_anon_kb.
stop_server() {
	[ -n "$server_pid" ] || return 0
	local hwm anon
	hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$server_pid/status" 2>/dev/null)
	[ -n "$hwm" ] && [ "$hwm" -gt "$peak_kb" ] && peak_kb=$hwm
	kill "$server_pid" 2>/dev/null
	wait "$server_pid" 2>/dev/null
	server_pid=
	if [ -n "$sampler_pid" ]; then
		wait "$sampler_pid" 2>/dev/null
		sampler_pid=
		anon=$(cat "$tmp/anon-peak" 2>/dev/null)
		[ -n "$anon" ] && [ "$anon" -gt "$peak_anon_kb" ] && peak_anon_kb=$anon
		rm -f "$tmp/anon-peak"
	fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# Waits for the server's socket SOCK; fails if the server dies first.
# Starts sampling its memory.
wait_sock() {
	for _ in $(seq 200); do
		[ -S "$1" ] && { start_sampler; return 0; }
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

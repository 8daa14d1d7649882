#!/bin/bash
# NBD over TLS (NBD_OPT_STARTTLS) with the real clients: nbdinfo, nbdcopy
# and qemu-img over X.509 certificates made here with certtool and a PSK
# made with psktool.  --tls=require: a plain client is refused every option
# and learns nothing (no export list); EXPORT_NAME without TLS is cut off.
# A wrong PSK fails the handshake; --tls-verify-peer wants a client
# certificate; --tls=on serves plain and TLS clients alike; TCP on a
# non-loopback address without TLS warns.
source "$(dirname "$0")/functions.sh"
requires certtool psktool nbdinfo nbdcopy python3
new_store >/dev/null
sock=$tmpdir/sock

# ---- credentials ----
pki=$tmpdir/pki cli=$tmpdir/client cli_nocert=$tmpdir/client-nocert
mkdir -p "$pki" "$cli" "$cli_nocert"
source "$(dirname "$0")/tls-certs.sh"
tls_make_certs "$pki" "$cli" "$tmpdir" "vdisk-test" || fail "certificates"
cp "$pki/ca-cert.pem" "$cli_nocert/"
psk=$tmpdir/psk
mkdir -p "$psk"
psktool -u alice -p "$psk/keys.psk" >/dev/null || fail "psktool"
psktool -u alice -p "$tmpdir/wrong.psk" >/dev/null || fail "psktool"

# A volume with known contents.
head -c 1M /dev/urandom >"$tmpdir/data"
truncate -s 4M "$tmpdir/data"
vdisk import vol "$tmpdir/data" || fail "import"

serve_pid=
serve() {	# serve ARGS...: (re)start vdisk serve on $sock
	stop
	: >"$tmpdir/serve.log"
	"$VDISK" serve --socket "$sock" --pidfile "$tmpdir/pid" "$@" \
		2>>"$tmpdir/serve.log" &
	serve_pid=$!
	cleanup_fn "kill $serve_pid 2>/dev/null; wait $serve_pid 2>/dev/null"
	for _ in $(seq 100); do
		[ -e "$tmpdir/pid" ] && return 0
		kill -0 "$serve_pid" 2>/dev/null || fail "serve $*: $(cat "$tmpdir/serve.log")"
		sleep 0.1
	done
	fail "serve did not start"
}
stop() {
	[ -n "$serve_pid" ] || return 0
	kill "$serve_pid"
	wait "$serve_pid" || fail "serve exited $? on SIGTERM"
	serve_pid=
}
x509_uri="nbds+unix:///vol?socket=$sock&tls-certificates=$cli"
psk_uri="nbds+unix://alice@/vol?socket=$sock&tls-psk-file=$psk/keys.psk"

# The raw protocol without TLS: every option but STARTTLS/ABORT gets
# NBD_REP_ERR_TLS_REQD and no export name is ever sent; EXPORT_NAME is cut
# off.  Prints what it saw.
cat >"$tmpdir/plain.py" <<'PY'
import socket, struct, sys
sock, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(sock)
def rd(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b
magic, opt, flags = struct.unpack(">QQH", rd(18))
s.sendall(struct.pack(">I", 3))              # FIXED_NEWSTYLE | NO_ZEROES
def option(o, data=b""):
    s.sendall(struct.pack(">QII", 0x49484156454F5054, o, len(data)) + data)
def replies(o):
    out = []
    while True:
        m, ro, t, n = struct.unpack(">QIII", rd(20))
        payload = rd(n)
        out.append((t, payload))
        if t != 2:                            # NBD_REP_SERVER repeats
            return out
seen = b""
if mode == "options":
    for o, data in ((3, b""),                 # LIST
                    (8, b""),                 # STRUCTURED_REPLY
                    (6, struct.pack(">I", 3) + b"vol" + struct.pack(">H", 0)),  # INFO
                    (7, struct.pack(">I", 0) + struct.pack(">H", 0)),          # GO
                    (10, struct.pack(">I", 3) + b"vol" + struct.pack(">I", 0))):  # LIST_META
        option(o, data)
        for t, payload in replies(o):
            seen += payload
            print("option", o, "reply", hex(t))
            if t != 0x80000005:
                sys.exit("option %d: reply %#x, not NBD_REP_ERR_TLS_REQD" % (o, t))
    if b"vol" in seen:
        sys.exit("an export name leaked: %r" % seen)
    option(2)                                 # ABORT
    print("abort reply", hex(replies(2)[0][0]))
elif mode == "export-name":
    option(1, b"vol")
    try:
        data = s.recv(4096)
    except ConnectionResetError:
        data = b""
    if data:
        sys.exit("EXPORT_NAME without TLS got %r" % data)
    print("EXPORT_NAME without TLS: connection closed")
PY

# ---- X.509, --tls=require ----
serve --tls=require --tls-certificates "$pki"
[ "$(nbdinfo --size "$x509_uri")" = 4194304 ] ||
	fail "nbdinfo over X.509 TLS: $(tail -3 "$tmpdir/serve.log")"
nbdinfo --list "nbds+unix://?socket=$sock&tls-certificates=$cli" |
	grep -q 'export="vol"' || fail "nbdinfo --list over TLS"
nbdcopy "$x509_uri" "$tmpdir/copy" || fail "nbdcopy over TLS"
cmp "$tmpdir/data" "$tmpdir/copy" || fail "nbdcopy over TLS: data differs"
# Writes over TLS.
head -c 64K /dev/urandom >"$tmpdir/w"
truncate -s 4M "$tmpdir/w"
nbdcopy "$tmpdir/w" "$x509_uri" || fail "nbdcopy write over TLS"
nbdcopy "$x509_uri" "$tmpdir/copy2" && cmp "$tmpdir/w" "$tmpdir/copy2" ||
	fail "data written over TLS does not read back"
grep -q "export 'vol' (rw, tls" "$tmpdir/serve.log" || fail "log does not say tls"
# Plain clients learn nothing.
out=$(nbdinfo --list "nbd+unix://?socket=$sock" 2>&1) &&
	fail "a plain client listed exports: $out"
grep -q 'export=' <<<"$out" && fail "a plain client saw an export: $out"
python3 "$tmpdir/plain.py" "$sock" options || fail "raw options without TLS"
python3 "$tmpdir/plain.py" "$sock" export-name || fail "raw EXPORT_NAME without TLS"
# qemu-img with X.509 (the socket has no host name: give it one).
if command -v qemu-img >/dev/null; then
	qemu-img info --object "tls-creds-x509,id=tls0,dir=$cli_nocert,endpoint=client" \
		--image-opts "driver=nbd,path=$sock,export=vol,tls-creds=tls0,tls-hostname=localhost" \
		>"$tmpdir/qi" 2>&1 || fail "qemu-img info over X.509: $(cat "$tmpdir/qi")"
	grep -q 'virtual size: 4 MiB' "$tmpdir/qi" || fail "qemu-img info: $(cat "$tmpdir/qi")"
fi

# ---- --tls-verify-peer ----
serve --tls-certificates "$pki" --tls-verify-peer
[ "$(nbdinfo --size "$x509_uri")" = 4194304 ] ||
	fail "client with a certificate refused: $(tail -3 "$tmpdir/serve.log")"
nbdinfo --size "nbds+unix:///vol?socket=$sock&tls-certificates=$cli_nocert" \
	>/dev/null 2>&1 && fail "--tls-verify-peer let a client without a certificate in"

# ---- PSK ----
serve --tls=require --tls-psk "$psk/keys.psk"
[ "$(nbdinfo --size "$psk_uri")" = 4194304 ] ||
	fail "nbdinfo over PSK: $(tail -3 "$tmpdir/serve.log")"
nbdcopy "$psk_uri" "$tmpdir/copy3" && cmp "$tmpdir/w" "$tmpdir/copy3" ||
	fail "nbdcopy over PSK"
out=$(nbdinfo --size "nbds+unix://alice@/vol?socket=$sock&tls-psk-file=$tmpdir/wrong.psk" 2>&1) &&
	fail "a wrong PSK was accepted: $out"
grep -q 'TLS handshake failed' "$tmpdir/serve.log" ||
	fail "no handshake failure logged for the wrong PSK"
if command -v qemu-img >/dev/null; then
	qemu-img info --object "tls-creds-psk,id=tls0,dir=$psk,endpoint=client,username=alice" \
		--image-opts "driver=nbd,path=$sock,export=vol,tls-creds=tls0" \
		>"$tmpdir/qi" 2>&1 || fail "qemu-img info over PSK: $(cat "$tmpdir/qi")"
	grep -q 'virtual size: 4 MiB' "$tmpdir/qi" || fail "qemu-img info: $(cat "$tmpdir/qi")"
fi

# ---- --tls=on: both kinds of client ----
serve --tls=on --tls-psk "$psk/keys.psk"
[ "$(nbdinfo --size "$psk_uri")" = 4194304 ] || fail "--tls=on: TLS client"
[ "$(nbdinfo --size "nbd+unix:///vol?socket=$sock")" = 4194304 ] ||
	fail "--tls=on: plain client"
stop

# ---- usage errors, and the warning ----
expect_exit 2 vdisk serve --socket "$sock" --tls=require 2>/dev/null
expect_exit 2 vdisk serve --socket "$sock" --tls=maybe --tls-psk "$psk/keys.psk" 2>/dev/null
expect_exit 2 vdisk serve --socket "$sock" --tls-psk x --tls-certificates y 2>/dev/null
expect_exit 2 vdisk serve --socket "$sock" --tls-psk x --tls-verify-peer 2>/dev/null
expect_exit 1 vdisk serve --socket "$sock" --tls-certificates "$tmpdir/none" 2>/dev/null
vdisk serve --help | grep -q -- '--tls-psk FILE' || fail "serve --help lacks TLS"

warn() {	# warn ADDR: start on TCP ADDR, print its stderr
	: >"$tmpdir/tcp.log"
	"$VDISK" serve --listen "$1" "${@:2}" 2>"$tmpdir/tcp.log" &
	local p=$!
	for _ in $(seq 50); do
		grep -q 'listening on' "$tmpdir/tcp.log" && break
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	cat "$tmpdir/tcp.log"
}
out=$(warn 127.0.0.1:0)
grep -q 'listening on' <<<"$out" || fail "TCP serve: $out"
grep -q warning <<<"$out" && fail "warning on loopback: $out"
out=$(warn 0.0.0.0:0)
if grep -q 'listening on' <<<"$out"; then
	grep -q 'warning: listening on .* without TLS' <<<"$out" ||
		fail "no warning for 0.0.0.0 without TLS: $out"
	out=$(warn 0.0.0.0:0 --tls-psk "$psk/keys.psk")
	grep -q warning <<<"$out" && fail "warning with TLS on: $out"
else
	echo "cannot listen on 0.0.0.0 here: warning not checked ($out)"
fi
echo OK

# Sourced by tests/test-nbd-tls.sh and bench/nbd/tls.sh (not a test).
#
# tls_make_certs PKI CLIENT WORK WHO
#   makes, with GnuTLS's certtool, a CA, a server certificate for localhost
#   and 127.0.0.1 and a CA-signed client certificate (CN WHO-client), each
#   valid for two days, laid out as `vdisk serve --tls-certificates` and
#   libnbd want them: PKI holds ca-cert.pem, server-cert.pem and
#   server-key.pem (and the CA's key), CLIENT holds ca-cert.pem,
#   client-cert.pem and client-key.pem.  Templates go in WORK.  Returns
#   non-zero, naming the failed step on stderr, if certtool fails.
tls_make_certs() {
	local pki=$1 cli=$2 work=$3 who=$4
	_tls_gen() { certtool "$@" >/dev/null 2>&1 || { echo "certtool $* failed" >&2; return 1; }; }
	mkdir -p "$pki" "$cli" || return 1
	printf 'cn = %s CA\nca\ncert_signing_key\nexpiration_days = 2\n' "$who" >"$work/ca.info"
	printf '%s\n' 'cn = localhost' 'dns_name = localhost' 'ip_address = 127.0.0.1' \
		tls_www_server encryption_key signing_key 'expiration_days = 2' >"$work/server.info"
	printf '%s\n' "cn = $who-client" tls_www_client encryption_key signing_key \
		'expiration_days = 2' >"$work/client.info"
	_tls_gen --generate-privkey --outfile "$pki/ca-key.pem" &&
	_tls_gen --generate-self-signed --load-privkey "$pki/ca-key.pem" \
		--template "$work/ca.info" --outfile "$pki/ca-cert.pem" &&
	_tls_gen --generate-privkey --outfile "$pki/server-key.pem" &&
	_tls_gen --generate-certificate --load-ca-certificate "$pki/ca-cert.pem" \
		--load-ca-privkey "$pki/ca-key.pem" --load-privkey "$pki/server-key.pem" \
		--template "$work/server.info" --outfile "$pki/server-cert.pem" &&
	_tls_gen --generate-privkey --outfile "$cli/client-key.pem" &&
	_tls_gen --generate-certificate --load-ca-certificate "$pki/ca-cert.pem" \
		--load-ca-privkey "$pki/ca-key.pem" --load-privkey "$cli/client-key.pem" \
		--template "$work/client.info" --outfile "$cli/client-cert.pem" &&
	cp "$pki/ca-cert.pem" "$cli/"
}

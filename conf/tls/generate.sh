#!/usr/bin/env bash
# Regenerates the EXAMPLE certificates in this directory (see README.md here): a CA, and a
# listener certificate it signed for localhost / healthgate / 127.0.0.1 / ::1, each valid
# for 20 years so CI's `healthgate --check` on conf/*.yaml never meets an expired one.
# The CA's key is thrown away. Their private key is public: never use them in production.
set -euo pipefail
cd "$(dirname "$0")"
days=7305   # 20 years
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$days" \
  -subj "/O=healthgate EXAMPLE (not for production)/CN=healthgate example CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out example-ca.crt

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out example-listener.key
openssl req -new -key example-listener.key \
  -subj "/O=healthgate EXAMPLE (not for production)/CN=localhost" -out "$work/listener.csr"
cat > "$work/listener.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:healthgate,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in "$work/listener.csr" -CA example-ca.crt -CAkey "$work/ca.key" \
  -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
  -extfile "$work/listener.ext" -out example-listener.crt
# Readable by the container's user when docker-compose mounts it (git keeps 0644 anyway).
chmod 644 example-listener.key
openssl verify -CAfile example-ca.crt example-listener.crt

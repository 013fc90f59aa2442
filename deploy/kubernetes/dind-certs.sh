#!/bin/sh
# TLS for the shared build daemon (manifests/dind.yaml): a CA of its own, the daemon's
# server certificate, and one client certificate for build pods. Then, with kubectl:
#   sh deploy/kubernetes/dind-certs.sh OUT_DIR [NAMESPACE]
#   kubectl -n binderlab create secret generic binderlab-dind-tls --from-file=OUT_DIR
# (delete OUT_DIR afterwards: ca-key.pem signs new clients). Build steps run inside the
# daemon and hold none of these, so they cannot use its API. Re-run to rotate (valid 825 days).
set -eu
out=${1:?usage: dind-certs.sh OUT_DIR [NAMESPACE]}
ns=${2:-binderlab}
days=825
mkdir -p "$out"
umask 077
cd "$out"
openssl genrsa -out ca-key.pem 4096 2>/dev/null
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" -subj "/CN=binderlab-dind CA" \
    -out ca.pem
openssl genrsa -out server-key.pem 4096 2>/dev/null
openssl req -new -key server-key.pem -subj "/CN=binderlab-dind" -out server.csr
printf 'subjectAltName=DNS:binderlab-dind,DNS:binderlab-dind.%s,DNS:binderlab-dind.%s.svc,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
    "$ns" "$ns" > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
    -sha256 -extfile server.ext -out server-cert.pem 2>/dev/null
openssl genrsa -out key.pem 4096 2>/dev/null
openssl req -new -key key.pem -subj "/CN=binderlab-build" -out client.csr
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
    -sha256 -extfile client.ext -out cert.pem 2>/dev/null
rm -f server.csr client.csr server.ext client.ext ca.srl
# the Secret holds what the daemon and the clients need, never the CA's key
mkdir -p ../"$(basename "$out")-ca-key"
mv ca-key.pem ../"$(basename "$out")-ca-key"/
echo "wrote $out (ca.pem server-cert.pem server-key.pem cert.pem key.pem); CA key in $out-ca-key/"

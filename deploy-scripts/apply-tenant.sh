#!/usr/bin/env bash
# Renders the tenant's templates and applies them (kubectl apply: running it twice changes nothing),
# copies the oauth2-proxy credentials from Secrets Manager into a Kubernetes Secret, registers the
# tenant's ext_authz provider with istiod and waits for the rollouts.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/apply-tenant.sh [--dry-run] TENANT

Deploys TENANT to the current kubectl context (after onboard-tenant.sh).
Required environment: AWS_REGION, CLUSTER_NAME, DOMAIN, IMAGE_TAG.
Optional: TLS_CERT_FILE and TLS_KEY_FILE (the certificate of TENANT.DOMAIN; otherwise the Secret
TENANT-tls must already exist in the ingress gateway namespace, e.g. from cert-manager), and the
optional variables of render.sh.
USAGE
}

# apply_secret_files NAMESPACE NAME TYPE KEY=FILE...: an idempotent Secret from files (values never
# appear on a command line or in the output).
apply_secret_files() {
  local ns=$1 name=$2 type=$3 kv args=()
  shift 3
  for kv in "$@"; do args+=("--from-file=${kv}"); done
  if [[ "${type}" == tls ]]; then
    kubectl create secret tls "${name}" -n "${ns}" "${args[@]}" --dry-run=client -o yaml | kubectl apply -f -
  else
    kubectl create secret generic "${name}" -n "${ns}" "${args[@]}" --dry-run=client -o yaml | kubectl apply -f -
  fi
}

# oauth2-proxy's credentials as its config file (client_id, client_secret, cookie_secret).
oauth2_proxy_secret() {
  local json cfg
  cfg="$(tmpdir)/oauth2-proxy.cfg"
  json="$(lookup '{"client-id": "<id>", "client-secret": "<secret>", "cookie-secret": "<cookie>"}' \
    aws secretsmanager get-secret-value --secret-id "${OAUTH_SECRET_NAME}" --query SecretString --output text)"
  [[ -n "${json}" ]] || die "secret ${OAUTH_SECRET_NAME} not found: run onboard-tenant.sh ${TENANT_ID}"
  (umask 077 && jq -er 'def v(k): (.[k] // error("missing \(k)")) | tojson;
    "client_id = \(v("client-id"))\nclient_secret = \(v("client-secret"))\ncookie_secret = \(v("cookie-secret"))"' \
    <<<"${json}" >"${cfg}") || die "secret ${OAUTH_SECRET_NAME} lacks client-id, client-secret or cookie-secret"
  run apply_secret_files "${AUTH_NAMESPACE}" oauth2-proxy Opaque "oauth2-proxy.cfg=${cfg}"
}

tls_secret() {
  if [[ -n "${TLS_CERT_FILE:-}" || -n "${TLS_KEY_FILE:-}" ]]; then
    : "${TLS_CERT_FILE:?set TLS_CERT_FILE together with TLS_KEY_FILE}"
    : "${TLS_KEY_FILE:?set TLS_KEY_FILE together with TLS_CERT_FILE}"
    run apply_secret_files "${ISTIO_INGRESS_NAMESPACE}" "${TLS_SECRET_NAME}" tls \
      "tls.crt=${TLS_CERT_FILE}" "tls.key=${TLS_KEY_FILE}"
  elif ! exists kubectl get secret "${TLS_SECRET_NAME}" -n "${ISTIO_INGRESS_NAMESPACE}"; then
    if [[ "${DRY_RUN}" == 1 ]]; then
      log "dry run: the TLS Secret ${ISTIO_INGRESS_NAMESPACE}/${TLS_SECRET_NAME} must exist or be given"
    else
      die "no TLS Secret ${ISTIO_INGRESS_NAMESPACE}/${TLS_SECRET_NAME}: set TLS_CERT_FILE and TLS_KEY_FILE"
    fi
  fi
}

main() {
  parse_common "$@"
  ((${#ARGS[@]} == 1)) || { usage; die "expected TENANT"; }
  validate_tenant "${ARGS[0]}"
  require_cmd aws kubectl helm jq envsubst
  resolve_deploy_env "${ARGS[0]}"

  local out files=() f
  out="$(tmpdir)/rendered"
  render_tenant "${out}"
  # the one-off Job is started by ingest.sh, not by every deploy
  while IFS= read -r f; do files+=(-f "${f}"); done \
    < <(find "${out}" -name '*.yaml' ! -name job-ingest.yaml | LC_ALL=C sort)

  log "deploying ${TENANT_ID} (${TENANT_HOST}), images ${IMAGE_REGISTRY}/chatbot-{webapp,ragapi}:${IMAGE_TAG}"
  run kubectl apply -f "${out}/manifests/namespace.yaml" -f "${out}/manifests/oauth2-proxy/namespace.yaml"
  oauth2_proxy_secret
  tls_secret
  # the ext_authz provider must exist before the CUSTOM AuthorizationPolicy that names it
  update_mesh_providers --with "${TENANT_ID}"
  run kubectl apply --dry-run=server "${files[@]}"
  run kubectl apply "${files[@]}"
  run kubectl rollout status deployment/oauth2-proxy -n "${AUTH_NAMESPACE}" --timeout=300s
  run kubectl rollout status deployment/chatbot -n "${NAMESPACE}" --timeout=600s
  log "done: https://${TENANT_HOST} (first deploy: run deploy-scripts/ingest.sh ${TENANT_ID})"
}

main "$@"

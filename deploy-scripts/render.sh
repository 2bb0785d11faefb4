#!/usr/bin/env bash
# Renders the tenant's Kubernetes and Istio templates into a directory (no cluster, no AWS calls).
# The same code path apply-tenant.sh uses; the tests call it too.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/render.sh [--dry-run] TENANT OUTDIR

Renders manifests/ and istio/ (tenant templates) for TENANT into OUTDIR.
Required environment: AWS_REGION, ACCOUNT_ID, DOMAIN, IMAGE_TAG, COGNITO_USER_POOL_ID, COGNITO_CLIENT_ID,
KUBE_API_CIDR (the cluster VPC's CIDR: the chatbot pod may reach the Kubernetes API server there).
Optional: IMAGE_REGISTRY, APP_VERSION, EMBEDDING_MODEL_ID, TEXT2TEXT_MODEL_ID, MIN_REPLICAS,
MAX_REPLICAS, INGEST_SCHEDULE, ISTIO_INGRESS_NAMESPACE, ISTIO_INGRESS_SERVICE_ACCOUNT,
VECTOR_STORE (faiss | pgvector; pgvector also needs PG_HOST and PG_EGRESS_CIDR), PG_DATABASE, PG_PORT.
Fails when a variable is missing or any ${...} is left in the output.
USAGE
}

main() {
  parse_common "$@"
  ((${#ARGS[@]} == 2)) || { usage; die "expected TENANT and OUTDIR"; }
  tenant_env "${ARGS[0]}"
  deploy_env
  local outdir=${ARGS[1]}
  if [[ "${DRY_RUN}" == 1 ]]; then
    log "dry run: would render $(tenant_templates | wc -l) templates for ${TENANT_ID} into ${outdir}"
    return 0
  fi
  render_tenant "${outdir}"
  log "rendered ${TENANT_ID} into ${outdir}"
}

main "$@"

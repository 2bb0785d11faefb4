#!/usr/bin/env bash
# Starts the tenant's ingestion Job (python -m ingest, ragapi image) and waits for it to finish.
# Re-running replaces the previous Job (ingestion itself is incremental).
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/ingest.sh [--dry-run] TENANT

Runs the ingestion Job of TENANT (documents from s3://BUCKET/documents/) and waits for it.
Required environment: AWS_REGION, CLUSTER_NAME, DOMAIN, IMAGE_TAG. Optional: INGEST_TIMEOUT (3600s).
USAGE
}

main() {
  parse_common "$@"
  ((${#ARGS[@]} == 1)) || { usage; die "expected TENANT"; }
  validate_tenant "${ARGS[0]}"
  require_cmd aws kubectl envsubst
  resolve_deploy_env "${ARGS[0]}"
  local out timeout=${INGEST_TIMEOUT:-3600s}
  out="$(tmpdir)/rendered"
  render_tenant "${out}"
  run kubectl delete job ingest -n "${NAMESPACE}" --ignore-not-found --wait=true
  run kubectl apply -f "${out}/manifests/job-ingest.yaml"
  log "waiting up to ${timeout} for job/ingest in ${NAMESPACE}"
  if ! run kubectl wait --for=condition=complete job/ingest -n "${NAMESPACE}" --timeout="${timeout}"; then
    run kubectl logs job/ingest -n "${NAMESPACE}" --tail=50 || true
    die "ingestion of ${TENANT_ID} did not complete (kubectl describe job/ingest -n ${NAMESPACE})"
  fi
  log "ingestion of ${TENANT_ID} complete"
}

main "$@"

#!/usr/bin/env bash
# Removes everything onboard-tenant.sh and apply-tenant.sh created for a tenant: its namespaces (and
# with them every object in them), its ext_authz policy, provider and TLS Secret at the gateway,
# the IAM role, the DynamoDB tables (history, sessions, usage, quota, feedback), the S3 bucket (all object versions), the Cognito user pool and
# domain, the Secrets Manager secret. Destructive and irreversible: needs --yes.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/offboard-tenant.sh [--dry-run] --yes TENANT

Deletes TENANT's Kubernetes objects and AWS resources, data included (documents, index, chat
history, usage, feedback, users). Required environment: AWS_REGION, CLUSTER_NAME, DOMAIN.
With VECTOR_STORE=pgvector also the tenant's schema (every index version) and login role.
USAGE
}

delete_kubernetes() {
  # the CUSTOM policy first, then its provider: a policy naming a missing provider denies all
  run kubectl delete authorizationpolicies.security.istio.io "ext-authz-${TENANT_ID}" \
    -n "${ISTIO_INGRESS_NAMESPACE}" --ignore-not-found
  update_mesh_providers --without "${TENANT_ID}"
  run kubectl delete secret "${TLS_SECRET_NAME}" -n "${ISTIO_INGRESS_NAMESPACE}" --ignore-not-found
  run kubectl delete namespace "${NAMESPACE}" "${AUTH_NAMESPACE}" --ignore-not-found --wait=true --timeout=300s
}

empty_bucket() {
  local b=$1 page file
  file="$(tmpdir)/delete-objects.json"
  # every version and delete marker, 1000 per request, until none is left
  while :; do
    page="$(lookup '' aws s3api list-object-versions --bucket "${b}" --max-items 1000 --output json \
      --query '{Objects: [Versions[].{Key: Key, VersionId: VersionId}, DeleteMarkers[].{Key: Key, VersionId: VersionId}][]}')"
    if [[ -z "${page}" ]] || jq -e '(.Objects // []) | length == 0' <<<"${page}" >/dev/null; then
      break
    fi
    jq -c '{Objects: .Objects, Quiet: true}' <<<"${page}" >"${file}"
    run aws s3api delete-objects --bucket "${b}" --delete "file://${file}"
  done
}

delete_aws() {
  local pool_id domain
  local role
  for role in "${CHATBOT_ROLE_NAME}" "${INGEST_ROLE_NAME}"; do
    if exists aws iam get-role --role-name "${role}"; then
      if exists aws iam get-role-policy --role-name "${role}" --policy-name "${IAM_POLICY_NAME}"; then
        run aws iam delete-role-policy --role-name "${role}" --policy-name "${IAM_POLICY_NAME}"
      fi
      run aws iam delete-role --role-name "${role}"
    fi
  done
  local t
  for t in "${CHATHISTORY_TABLE}" "${SESSIONS_TABLE}" "${USAGE_TABLE}" "${QUOTA_TABLE}" "${FEEDBACK_TABLE}"; do
    if exists aws dynamodb describe-table --table-name "${t}"; then
      run aws dynamodb delete-table --table-name "${t}"
      run aws dynamodb wait table-not-exists --table-name "${t}"
    fi
  done
  if exists aws s3api head-bucket --bucket "${CONTEXTUAL_DATA_BUCKET}" --expected-bucket-owner "${ACCOUNT_ID}"; then
    empty_bucket "${CONTEXTUAL_DATA_BUCKET}"
    run aws s3api delete-bucket --bucket "${CONTEXTUAL_DATA_BUCKET}"
  fi
  pool_id="$(lookup '' aws cognito-idp list-user-pools --max-results 60 \
    --query "UserPools[?Name=='${COGNITO_POOL_NAME}'].Id | [0]" --output text)"
  domain="$(lookup '' aws cognito-idp describe-user-pool-domain --domain "${COGNITO_DOMAIN_PREFIX}" \
    --query DomainDescription.UserPoolId --output text)"
  if [[ -n "${domain}" ]]; then
    run aws cognito-idp delete-user-pool-domain --domain "${COGNITO_DOMAIN_PREFIX}" --user-pool-id "${domain}"
  fi
  if [[ -n "${pool_id}" ]]; then
    # deletes its app clients and users with it
    run aws cognito-idp delete-user-pool --user-pool-id "${pool_id}"
  fi
  if exists aws secretsmanager describe-secret --secret-id "${OAUTH_SECRET_NAME}"; then
    run aws secretsmanager delete-secret --secret-id "${OAUTH_SECRET_NAME}" --force-delete-without-recovery
  fi
}

main() {
  local yes=0 args=() a
  for a in "$@"; do
    if [[ "${a}" == --yes ]]; then yes=1; else args+=("${a}"); fi
  done
  parse_common "${args[@]+"${args[@]}"}"
  ((${#ARGS[@]} == 1)) || { usage; die "expected TENANT"; }
  validate_tenant "${ARGS[0]}"
  ((yes)) || [[ "${DRY_RUN}" == 1 ]] || { usage; die "refusing to delete ${ARGS[0]} without --yes"; }
  cluster_env
  require_cmd aws kubectl helm jq envsubst
  resolve_account
  tenant_env "${ARGS[0]}"
  log "offboarding tenant ${TENANT_ID} (account ${ACCOUNT_ID}, region ${AWS_REGION})"
  delete_kubernetes
  if [[ "${VECTOR_STORE}" == pgvector ]]; then
    require_cmd psql
    resolve_aurora
    # after the pods are gone: DROP SCHEMA ... CASCADE, DROP OWNED, DROP ROLE (rag.index.pgvector.deprovision_sql)
    pg_admin_sql deprovision
  fi
  delete_aws
  log "done: ${TENANT_ID} removed"
}

main "$@"

# shellcheck shell=bash
# Shared functions for the deploy scripts: logging, tenant validation and naming, dry-run aware
# command execution, template rendering. Sourced, never executed.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

# Pinned platform versions (override only deliberately, e.g. ISTIO_VERSION=1.27.4 for an upgrade).
: "${ISTIO_VERSION:=1.27.3}"
: "${K8S_VERSION:=1.32}"
: "${OAUTH2_PROXY_IMAGE:=quay.io/oauth2-proxy/oauth2-proxy}"
: "${OAUTH2_PROXY_VERSION:=v7.7.1}"
readonly ISTIO_HELM_REPO=https://istio-release.storage.googleapis.com/charts

readonly TENANT_RE='^[a-z][a-z0-9-]{1,30}[a-z0-9]$'
DRY_RUN="${DRY_RUN:-0}"

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

on_error() {
  local rc=$? line=$1 cmd=$2
  log "ERROR: command failed (exit ${rc}) at line ${line}: ${cmd}"
}
trap 'on_error "${LINENO}" "${BASH_COMMAND}"' ERR

# Temporary files of this run, removed on exit.
TMP_ROOT="$(mktemp -d)"
readonly TMP_ROOT
cleanup() { rm -rf -- "${TMP_ROOT}"; }
trap cleanup EXIT
tmpdir() { printf '%s\n' "${TMP_ROOT}"; }

validate_tenant() {
  local tenant="${1-}"
  [[ "${tenant}" =~ ${TENANT_RE} ]] || die "invalid tenant id '${tenant}': must match ${TENANT_RE}"
}

# Local tools are always needed; the remote-facing CLIs only when not in --dry-run (it calls none).
require_cmd() {
  local c
  for c in "$@"; do
    command -v "${c}" >/dev/null 2>&1 && continue
    case "${DRY_RUN}:${c}" in
      1:aws | 1:kubectl | 1:helm | 1:eksctl | 1:docker) log "warning: ${c} not found (needed for a real run)" ;;
      *) die "required command not found on PATH: ${c}" ;;
    esac
  done
}

# A call that changes something. With --dry-run it is printed (shell-quoted) and not run.
run() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
    return 0
  fi
  "$@"
}

# A call that changes something and whose output is needed (e.g. the id of what it created):
# run_out PLACEHOLDER cmd...; with --dry-run it is printed and the placeholder is the output.
run_out() {
  local placeholder=$1
  shift
  if [[ "${DRY_RUN}" == 1 ]]; then
    { printf '+'; printf ' %q' "$@"; printf '\n'; } >&2
    printf '%s\n' "${placeholder}"
    return 0
  fi
  "$@"
}

# An existence check: succeeds when the resource exists. With --dry-run it is printed and
# reports "absent", so the dry run shows every call a first run would make.
exists() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '+ (check)'; printf ' %q' "$@"; printf '\n'
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# A read-only lookup whose output is needed: lookup PLACEHOLDER cmd...; prints the output (or the
# placeholder with --dry-run). An empty or "None" answer (aws --output text) prints nothing.
lookup() {
  local placeholder=$1 out
  shift
  if [[ "${DRY_RUN}" == 1 ]]; then
    { printf '+ (lookup)'; printf ' %q' "$@"; printf '\n'; } >&2
    printf '%s\n' "${placeholder}"
    return 0
  fi
  out="$("$@")" || return 1
  if [[ "${out}" == "None" ]]; then out=""; fi
  printf '%s\n' "${out}"
}

# --- configuration -----------------------------------------------------------------------------

check_value() { # check_value NAME REGEX HINT
  local name=$1 re=$2 hint=$3
  [[ "${!name-}" =~ ${re} ]] || die "${name}='${!name-}' is not valid: ${hint}"
}

# Cluster-wide settings (no tenant in them).
cluster_env() {
  : "${AWS_REGION:?set AWS_REGION, e.g. eu-west-1}"
  : "${CLUSTER_NAME:?set CLUSTER_NAME, the EKS cluster name}"
  : "${AWS_PARTITION:=aws}"
  : "${ISTIO_INGRESS_NAMESPACE:=istio-system}"
  : "${ISTIO_INGRESS_SERVICE_ACCOUNT:=istio-ingressgateway}"
  check_value AWS_REGION '^[a-z]{2}(-gov)?-[a-z]+-[0-9]$' "an AWS region such as eu-west-1"
  check_value CLUSTER_NAME '^[A-Za-z][A-Za-z0-9-]{0,99}$' "an EKS cluster name"
  : "${AURORA_CLUSTER_ID:=${CLUSTER_NAME,,}-rag-pg}"
  check_value AURORA_CLUSTER_ID '^[a-z][a-z0-9-]{0,62}$' "an Aurora cluster identifier"
}

# All names of one tenant, derived (never typed by hand). Needs ACCOUNT_ID and DOMAIN.
# shellcheck disable=SC2034  # the names are used by the scripts that source this file
tenant_env() {
  validate_tenant "${1-}"
  TENANT_ID=$1
  : "${AWS_REGION:?set AWS_REGION, e.g. eu-west-1}"
  : "${ACCOUNT_ID:?set ACCOUNT_ID (the scripts look it up with aws sts get-caller-identity)}"
  : "${DOMAIN:?set DOMAIN, the parent domain of the tenants subdomains, e.g. chat.example.com}"
  : "${AWS_PARTITION:=aws}"
  : "${ADMIN_GROUP:=admins}" # documents area: the Cognito group of the tenant's admins
  : "${ISTIO_INGRESS_NAMESPACE:=istio-system}"
  : "${ISTIO_INGRESS_SERVICE_ACCOUNT:=istio-ingressgateway}"
  check_value AWS_REGION '^[a-z]{2}(-gov)?-[a-z]+-[0-9]$' "an AWS region such as eu-west-1"
  check_value ADMIN_GROUP '^[A-Za-z0-9_+=,.@-]{1,128}$' "a Cognito group name"
  check_value ACCOUNT_ID '^([0-9]{12}|<account-id>)$' "a 12-digit AWS account id"
  check_value DOMAIN '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$' "a DNS name such as chat.example.com"

  NAMESPACE="${TENANT_ID}-ns"
  AUTH_NAMESPACE="${TENANT_ID}-auth"
  TENANT_HOST="${TENANT_ID}.${DOMAIN}"
  CONTEXTUAL_DATA_BUCKET="${TENANT_ID}-rag-${ACCOUNT_ID}-${AWS_REGION}"
  if (( ${#CONTEXTUAL_DATA_BUCKET} > 63 )); then
    die "bucket name ${CONTEXTUAL_DATA_BUCKET} is longer than 63 characters: use a shorter tenant id"
  fi
  CHATHISTORY_TABLE="${TENANT_ID}-chathistory"
  SESSIONS_TABLE="${TENANT_ID}-sessions"
  # operating many tenants: token usage, quota counters, feedback on answers
  USAGE_TABLE="${TENANT_ID}-usage"
  QUOTA_TABLE="${TENANT_ID}-quota"
  FEEDBACK_TABLE="${TENANT_ID}-feedback"
  # two IRSA roles: the chat pod only reads the bucket; only the ingestion Job writes the index
  CHATBOT_ROLE_NAME="${TENANT_ID}-chatbot"
  INGEST_ROLE_NAME="${TENANT_ID}-ingest"
  IAM_POLICY_NAME="access"
  CHATBOT_ROLE_ARN="arn:${AWS_PARTITION}:iam::${ACCOUNT_ID}:role/${CHATBOT_ROLE_NAME}"
  INGEST_ROLE_ARN="arn:${AWS_PARTITION}:iam::${ACCOUNT_ID}:role/${INGEST_ROLE_NAME}"
  COGNITO_POOL_NAME="${TENANT_ID}-users"
  COGNITO_CLIENT_NAME="${TENANT_ID}-oauth2-proxy"
  COGNITO_DOMAIN_PREFIX="${TENANT_ID}-${ACCOUNT_ID}"
  OAUTH_SECRET_NAME="tenant-rag/${TENANT_ID}/oauth2-proxy"
  TLS_SECRET_NAME="${TENANT_ID}-tls"

  : "${EMBEDDING_MODEL_ID:=amazon.titan-embed-text-v2:0}"
  : "${TEXT2TEXT_MODEL_ID:=anthropic.claude-3-haiku-20240307-v1:0}"
  check_value EMBEDDING_MODEL_ID '^[A-Za-z0-9.:/_-]+$' "a Bedrock model id"
  check_value TEXT2TEXT_MODEL_ID '^[A-Za-z0-9.:/_-]+$' "a Bedrock model id or inference profile"
  # pgvector backend (area: pgvector): VECTOR_STORE=pgvector keeps the index in the shared Aurora
  # cluster, in schema PG_ROLE owned by the login role PG_ROLE (rag.index.pgvector.role_for)
  : "${VECTOR_STORE:=faiss}"
  : "${PG_DATABASE:=rag}"
  : "${PG_PORT:=5432}"
  check_value VECTOR_STORE '^(faiss|pgvector)$' "faiss or pgvector"
  check_value PG_DATABASE '^[a-z_][a-z0-9_]{0,62}$' "a database name"
  check_value PG_PORT '^[0-9]{2,5}$' "a port number"
  PG_ROLE="tenant_${TENANT_ID//-/_}"
  export VECTOR_STORE PG_DATABASE PG_PORT PG_ROLE
  export TENANT_ID NAMESPACE AUTH_NAMESPACE TENANT_HOST CONTEXTUAL_DATA_BUCKET CHATHISTORY_TABLE \
    SESSIONS_TABLE USAGE_TABLE QUOTA_TABLE FEEDBACK_TABLE CHATBOT_ROLE_ARN INGEST_ROLE_ARN TLS_SECRET_NAME EMBEDDING_MODEL_ID TEXT2TEXT_MODEL_ID AWS_REGION \
    ISTIO_INGRESS_NAMESPACE ISTIO_INGRESS_SERVICE_ACCOUNT
}

# Settings only the Kubernetes objects need (images, Cognito ids, sizes).
deploy_env() {
  : "${IMAGE_REGISTRY:=${ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com/tenant-rag}"
  : "${IMAGE_TAG:?set IMAGE_TAG to the pinned tag that deploy-scripts/build-push.sh pushed (e.g. a git sha)}"
  : "${APP_VERSION:=${IMAGE_TAG}}"
  : "${COGNITO_USER_POOL_ID:?set COGNITO_USER_POOL_ID (apply-tenant.sh looks it up)}"
  : "${COGNITO_CLIENT_ID:?set COGNITO_CLIENT_ID (apply-tenant.sh looks it up)}"
  : "${MIN_REPLICAS:=2}"
  : "${MAX_REPLICAS:=5}"
  : "${INGEST_SCHEDULE:=0 3 * * *}"
  check_value IMAGE_TAG '^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$' "a Docker tag that is also a label value (max 63)"
  check_value APP_VERSION '^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$' "a label value (max 63)"
  [[ "${IMAGE_TAG}" != latest ]] || die "IMAGE_TAG=latest is not a pinned tag"
  check_value IMAGE_REGISTRY '^[a-z0-9<][a-z0-9.:/_<>-]+$' "a registry path such as ACCOUNT.dkr.ecr.REGION.amazonaws.com/tenant-rag"
  check_value COGNITO_USER_POOL_ID '^([a-z]{2}(-gov)?-[a-z]+-[0-9]_[A-Za-z0-9]+|<pool-id>)$' "a Cognito user pool id"
  check_value COGNITO_CLIENT_ID '^([a-z0-9]+|<client-id>)$' "a Cognito app client id"
  check_value MIN_REPLICAS '^[1-9][0-9]?$' "a number of replicas"
  check_value MAX_REPLICAS '^[1-9][0-9]?$' "a number of replicas"
  check_value INGEST_SCHEDULE '^[0-9*/,-]+( [0-9*/,-]+){4}$' "a cron schedule with five fields"
  # documents area: the chatbot pod may reach the Kubernetes API server (ENIs in the cluster VPC)
  : "${KUBE_API_CIDR:?set KUBE_API_CIDR to the CIDR of the cluster VPC (apply-tenant.sh looks it up)}"
  check_value KUBE_API_CIDR '^([0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}|<vpc-cidr>)$' "an IPv4 CIDR such as 10.0.0.0/16"
  ISSUER_URI="https://cognito-idp.${AWS_REGION}.amazonaws.com/${COGNITO_USER_POOL_ID}"
  export IMAGE_REGISTRY IMAGE_TAG APP_VERSION COGNITO_USER_POOL_ID COGNITO_CLIENT_ID MIN_REPLICAS \
    MAX_REPLICAS INGEST_SCHEDULE ISSUER_URI OAUTH2_PROXY_IMAGE OAUTH2_PROXY_VERSION ISTIO_VERSION KUBE_API_CIDR
}

# --- rendering ---------------------------------------------------------------------------------

# The only variables envsubst may replace in the tenant templates (anything else stays and fails).
readonly TENANT_RENDER_VARS=(
  TENANT_ID NAMESPACE AUTH_NAMESPACE TENANT_HOST AWS_REGION APP_VERSION IMAGE_REGISTRY IMAGE_TAG
  CHATBOT_ROLE_ARN INGEST_ROLE_ARN CONTEXTUAL_DATA_BUCKET CHATHISTORY_TABLE SESSIONS_TABLE EMBEDDING_MODEL_ID
  USAGE_TABLE QUOTA_TABLE FEEDBACK_TABLE
  TEXT2TEXT_MODEL_ID ISSUER_URI COGNITO_CLIENT_ID OAUTH2_PROXY_IMAGE OAUTH2_PROXY_VERSION
  INGEST_SCHEDULE MIN_REPLICAS MAX_REPLICAS TLS_SECRET_NAME ISTIO_INGRESS_NAMESPACE
  ISTIO_INGRESS_SERVICE_ACCOUNT KUBE_API_CIDR ADMIN_GROUP
)

# render_file SRC DEST VAR... : envsubst with exactly these variables; fails on an empty variable
# or on any "${" left in the output.
render_file() {
  local src=$1 dest=$2 v format=""
  shift 2
  for v in "$@"; do
    [[ -n "${!v-}" ]] || die "render ${src#"${REPO_ROOT}/"}: variable ${v} is empty"
    export "${v?}"
    format+="\${${v}} "
  done
  mkdir -p "$(dirname "${dest}")"
  envsubst "${format}" <"${src}" >"${dest}"
  # shellcheck disable=SC2016  # a literal "${"
  if grep -n '\${' "${dest}" >&2; then
    die "render ${src#"${REPO_ROOT}/"}: placeholders left (above); add them to the variable list"
  fi
}

# The tenant's templates, relative to REPO_ROOT (one kind per file).
tenant_templates() {
  # manifests/observability/ is cluster-wide (PrometheusRule, dashboard), not a tenant template
  (cd "${REPO_ROOT}" && find manifests istio -maxdepth 2 -name '*.yaml' -not -path 'istio/cluster/*' \
    -not -path 'manifests/observability/*' | LC_ALL=C sort)
}

# render_tenant OUTDIR: renders every tenant template into OUTDIR (same relative paths); the
# manifests/pgvector/ ones only with VECTOR_STORE=pgvector (they need PG_HOST and PG_EGRESS_CIDR).
render_tenant() {
  local outdir=$1 rel vars=("${TENANT_RENDER_VARS[@]}")
  if [[ "${VECTOR_STORE}" == pgvector ]]; then
    check_value PG_HOST '^[a-z0-9.<>-]+$' "the Aurora cluster endpoint"
    check_value PG_EGRESS_CIDR '^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$|^<vpc-cidr>$' "the VPC CIDR, e.g. 192.168.0.0/16"
    vars+=(VECTOR_STORE PG_HOST PG_PORT PG_DATABASE PG_ROLE PG_EGRESS_CIDR)
  fi
  while IFS= read -r rel; do
    if [[ "${rel}" == manifests/pgvector/* && "${VECTOR_STORE}" != pgvector ]]; then continue; fi
    render_file "${REPO_ROOT}/${rel}" "${outdir}/${rel}" "${vars[@]}"
  done < <(tenant_templates)
}

# resolve_aurora: with VECTOR_STORE=pgvector, the shared Aurora cluster's endpoint (PG_HOST), resource
# id (for rds-db:connect ARNs), master secret and the VPC CIDR (for the egress NetworkPolicy),
# unless already set. Needs cluster_env.
resolve_aurora() {
  [[ "${VECTOR_STORE}" == pgvector ]] || return 0
  local q="DBClusters[0]"
  if [[ -z "${PG_HOST:-}" ]]; then
    PG_HOST="$(lookup '<aurora-endpoint>' aws rds describe-db-clusters --db-cluster-identifier "${AURORA_CLUSTER_ID}" \
      --query "${q}.Endpoint" --output text)"
  fi
  [[ -n "${PG_HOST}" ]] || die "no Aurora cluster ${AURORA_CLUSTER_ID}: run bootstrap-cluster.sh --with-aurora first"
  : "${PG_CLUSTER_RESOURCE_ID:=$(lookup 'cluster-<resource-id>' aws rds describe-db-clusters \
    --db-cluster-identifier "${AURORA_CLUSTER_ID}" --query "${q}.DbClusterResourceId" --output text)}"
  : "${PG_ADMIN_SECRET_ARN:=$(lookup '<secret-arn>' aws rds describe-db-clusters \
    --db-cluster-identifier "${AURORA_CLUSTER_ID}" --query "${q}.MasterUserSecret.SecretArn" --output text)}"
  : "${PG_EGRESS_CIDR:=${KUBE_API_CIDR:-}}"  # the cluster VPC's CIDR, when deploy_env has it already
  if [[ -z "${PG_EGRESS_CIDR}" ]]; then
    local vpc
    vpc="$(lookup '<vpc-id>' aws eks describe-cluster --name "${CLUSTER_NAME}" \
      --query cluster.resourcesVpcConfig.vpcId --output text)"
    PG_EGRESS_CIDR="$(lookup '<vpc-cidr>' aws ec2 describe-vpcs --vpc-ids "${vpc}" --query 'Vpcs[0].CidrBlock' \
      --output text)"
  fi
  export PG_HOST PG_CLUSTER_RESOURCE_ID PG_ADMIN_SECRET_ARN PG_EGRESS_CIDR
}

# pg_admin_sql ACTION: the onboarding/offboarding SQL of rag.index.pgvector (one source of truth)
# run by psql as the cluster's master user (password from its Secrets Manager secret, through the
# environment, never a command line), over TLS.
pg_admin_sql() {
  local action=$1 sql_file secret user password
  sql_file="$(tmpdir)/pgvector-${action}.sql"
  PYTHONPATH="${REPO_ROOT}" "${PYTHON:-python3}" -m rag.index.pgvector "${action}" --tenant "${TENANT_ID}" \
    --database "${PG_DATABASE}" --iam >"${sql_file}"
  secret="$(lookup '{"username":"<user>","password":"<password>"}' aws secretsmanager get-secret-value \
    --secret-id "${PG_ADMIN_SECRET_ARN}" --query SecretString --output text)"
  user="$(jq -r .username <<<"${secret}")"
  password="$(jq -r .password <<<"${secret}")"
  PGPASSWORD="${password}" PGSSLMODE=require run psql --no-psqlrc --set ON_ERROR_STOP=1 --quiet \
    --host "${PG_HOST}" --port "${PG_PORT}" --username "${user}" --dbname "${PG_DATABASE}" --file "${sql_file}"
}

# --- shared cluster operations -------------------------------------------------------------------

# render_provider TENANT DEST: one tenant's ext_authz provider entry. The tenant's names are locals
# here, so rendering another tenant's entry never changes the caller's TENANT_ID/AUTH_NAMESPACE.
render_provider() {
  local TENANT_ID=$1 AUTH_NAMESPACE="$1-auth"
  render_file "${REPO_ROOT}/deploy-scripts/templates/mesh-extension-provider.yaml" "$2" TENANT_ID AUTH_NAMESPACE
}

# Writes the helm values with meshConfig.extensionProviders: one ext_authz provider (the tenant's
# oauth2-proxy) per onboarded tenant, found by the label of its auth namespace.
# Usage: mesh_providers_values FILE [--without TENANT] [--with TENANT]
mesh_providers_values() {
  local values=$1 without="" with="" tenant names count=0
  shift
  while (($#)); do
    case $1 in
      --without) without=$2; shift 2 ;;
      --with) with=$2; shift 2 ;;
      *) die "mesh_providers_values: unknown argument $1" ;;
    esac
  done
  names="$(lookup "" kubectl get namespaces -l 'app.kubernetes.io/name=oauth2-proxy,tenant-rag.io/tenant' \
    -o 'jsonpath={range .items[*]}{.metadata.labels.tenant-rag\.io/tenant}{"\n"}{end}')"
  printf 'meshConfig:\n  extensionProviders:\n' >"${values}"
  while IFS= read -r tenant; do
    [[ -n "${tenant}" && "${tenant}" != "${without}" ]] || continue
    validate_tenant "${tenant}"
    render_provider "${tenant}" "$(tmpdir)/provider-${tenant}.yaml"
    sed 's/^/    /' "$(tmpdir)/provider-${tenant}.yaml" >>"${values}"
    count=$((count + 1))
  done < <({ printf '%s\n' "${names}"; [[ -z "${with}" ]] || printf '%s\n' "${with}"; } | LC_ALL=C sort -u)
  if ((count == 0)); then printf 'meshConfig:\n  extensionProviders: []\n' >"${values}"; fi
  log "istiod: ${count} tenant ext_authz provider(s)"
}

# Installs or upgrades istiod (pinned ISTIO_VERSION) with the base values and the tenants'
# ext_authz providers; all values come from files, so the result does not depend on history.
# Usage: update_mesh_providers [--without TENANT] [--with TENANT]
update_mesh_providers() {
  local values
  values="$(tmpdir)/mesh-providers.yaml"
  mesh_providers_values "${values}" "$@"
  run helm upgrade --install istiod istiod --repo "${ISTIO_HELM_REPO}" \
    --namespace istio-system --version "${ISTIO_VERSION}" \
    -f "${REPO_ROOT}/istio/cluster/istiod-values.yaml" -f "${values}" --wait
}

# --- AWS lookups shared by the scripts ------------------------------------------------------------

resolve_account() {
  ACCOUNT_ID="$(lookup '<account-id>' aws sts get-caller-identity --query Account --output text)"
  [[ -n "${ACCOUNT_ID}" ]] || die "cannot determine the AWS account (aws sts get-caller-identity)"
  export ACCOUNT_ID
}

# Sets COGNITO_USER_POOL_ID and COGNITO_CLIENT_ID of the tenant (after tenant_env); empty if absent.
resolve_cognito() {
  COGNITO_USER_POOL_ID="$(lookup '<pool-id>' aws cognito-idp list-user-pools --max-results 60 \
    --query "UserPools[?Name=='${COGNITO_POOL_NAME}'].Id | [0]" --output text)"
  COGNITO_CLIENT_ID=""
  if [[ -n "${COGNITO_USER_POOL_ID}" ]]; then
    COGNITO_CLIENT_ID="$(lookup '<client-id>' aws cognito-idp list-user-pool-clients \
      --user-pool-id "${COGNITO_USER_POOL_ID}" --max-results 60 \
      --query "UserPoolClients[?ClientName=='${COGNITO_CLIENT_NAME}'].ClientId | [0]" --output text)"
  fi
  export COGNITO_USER_POOL_ID COGNITO_CLIENT_ID
}

# KUBE_API_CIDR (unless set): the CIDR of the cluster's VPC, where EKS puts the API server's ENIs.
resolve_kube_api_cidr() {
  local vpc
  [[ -z "${KUBE_API_CIDR:-}" ]] || return 0
  vpc="$(lookup '<vpc-id>' aws eks describe-cluster --name "${CLUSTER_NAME}" \
    --query cluster.resourcesVpcConfig.vpcId --output text)"
  [[ -n "${vpc}" ]] || die "cluster ${CLUSTER_NAME} has no VPC id: set KUBE_API_CIDR"
  KUBE_API_CIDR="$(lookup '<vpc-cidr>' aws ec2 describe-vpcs --vpc-ids "${vpc}" --query 'Vpcs[0].CidrBlock' --output text)"
  export KUBE_API_CIDR
}

# Everything apply-tenant.sh and ingest.sh need to render: tenant names, Cognito ids, images.
resolve_deploy_env() {
  validate_tenant "${1-}"
  cluster_env
  resolve_account
  tenant_env "$1"
  resolve_cognito
  [[ -n "${COGNITO_USER_POOL_ID}" && -n "${COGNITO_CLIENT_ID}" ]] \
    || die "no Cognito user pool/app client for ${TENANT_ID}: run deploy-scripts/onboard-tenant.sh ${TENANT_ID} first"
  resolve_kube_api_cidr
  deploy_env
  resolve_aurora
}

# Parses the standard options of every script: --dry-run, -h/--help. Sets ARGS to the rest.
parse_common() {
  ARGS=()
  while (($#)); do
    case $1 in
      --dry-run) DRY_RUN=1 ;;
      -h | --help) usage; exit 0 ;;
      --) shift; ARGS+=("$@"); break ;;
      -*) usage; die "unknown option $1" ;;
      *) ARGS+=("$1") ;;
    esac
    shift
  done
}

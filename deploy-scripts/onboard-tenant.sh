#!/usr/bin/env bash
# Creates a tenant's AWS resources (idempotent: each resource is looked up first and only created
# when missing): Cognito user pool (custom:tenantid) + hosted-UI domain + app client, the oauth2-proxy
# secret in Secrets Manager, S3 bucket (encrypted, versioned, public access blocked, TLS only),
# DynamoDB tables (chat history, sessions, usage, quota counters, feedback; TTL, point-in-time
# recovery), the Cognito group of the tenant's admins (ADMIN_GROUP, default admins: they manage the
# documents from the web chat), and two IRSA roles scoped to this tenant only
# (chatbot: read the bucket, write only under documents/, use the tables and both models;
# ingest: write the bucket, embed).
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/onboard-tenant.sh [--dry-run] TENANT

Creates the AWS resources of TENANT (then run apply-tenant.sh and ingest.sh).
Required environment: AWS_REGION, CLUSTER_NAME, DOMAIN.
Optional: EMBEDDING_MODEL_ID, TEXT2TEXT_MODEL_ID, BEDROCK_EXTRA_MODEL_ARNS (space separated),
VECTOR_STORE (faiss | pgvector: also the tenant's schema and login role in the Aurora cluster of
bootstrap-cluster.sh --with-aurora, and rds-db:connect for that role only), PG_DATABASE (rag).
USAGE
}

# Bedrock ARNs for the given model ids (for a cross-region inference profile such as us.anthropic...,
# the profile and its foundation model), plus BEDROCK_EXTRA_MODEL_ARNS; nothing else.
bedrock_model_arns() {
  local id p=${AWS_PARTITION}
  for id in "$@"; do
    if [[ "${id}" == arn:* ]]; then
      printf '%s\n' "${id}"
    elif [[ "${id}" =~ ^(us|eu|apac|jp|au|ca|us-gov|global)\.(.+)$ ]]; then
      printf '%s\n' "arn:${p}:bedrock:${AWS_REGION}:${ACCOUNT_ID}:inference-profile/${id}"
      printf '%s\n' "arn:${p}:bedrock:*::foundation-model/${BASH_REMATCH[2]}"
    else
      printf '%s\n' "arn:${p}:bedrock:${AWS_REGION}::foundation-model/${id}"
    fi
  done
  local extra=()
  read -r -a extra <<<"${BEDROCK_EXTRA_MODEL_ARNS:-}"
  if ((${#extra[@]})); then printf '%s\n' "${extra[@]}"; fi
}

json_list() { # quoted, comma separated JSON strings from stdin lines
  local first=1 line
  while IFS= read -r line; do
    [[ -n "${line}" ]] || continue
    ((first)) || printf ', '
    printf '"%s"' "${line}"
    first=0
  done
}

# VECTOR_STORE=pgvector: IAM database authentication as this tenant's role, and no other
# (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html).
pg_connect_statement() {
  [[ "${VECTOR_STORE}" == pgvector ]] || return 0
  printf ',\n    {"Sid": "TenantDatabaseUser", "Effect": "Allow", "Action": ["rds-db:connect"],\n'
  printf '     "Resource": "arn:%s:rds-db:%s:%s:dbuser:%s/%s"}' "${AWS_PARTITION}" "${AWS_REGION}" "${ACCOUNT_ID}" \
    "${PG_CLUSTER_RESOURCE_ID}" "${PG_ROLE}"
}

# The chat pod: read this tenant's bucket (the index), write and delete only under documents/ (the
# admins' uploads; never the index), read/write its five tables, invoke both models.
chatbot_policy() {
  local p=${AWS_PARTITION} b=${CONTEXTUAL_DATA_BUCKET}
  local tables="arn:${p}:dynamodb:${AWS_REGION}:${ACCOUNT_ID}:table"
  cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "TenantBucket", "Effect": "Allow",
     "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": "arn:${p}:s3:::${b}"},
    {"Sid": "TenantObjectsRead", "Effect": "Allow",
     "Action": ["s3:GetObject"],
     "Resource": "arn:${p}:s3:::${b}/*"},
    {"Sid": "TenantDocumentsWrite", "Effect": "Allow",
     "Action": ["s3:PutObject", "s3:DeleteObject"],
     "Resource": "arn:${p}:s3:::${b}/documents/*"},
    {"Sid": "TenantTables", "Effect": "Allow",
     "Action": ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
                "dynamodb:ConditionCheckItem"],
     "Resource": ["${tables}/${CHATHISTORY_TABLE}", "${tables}/${SESSIONS_TABLE}", "${tables}/${USAGE_TABLE}",
                  "${tables}/${QUOTA_TABLE}", "${tables}/${FEEDBACK_TABLE}"]},
    {"Sid": "BedrockModels", "Effect": "Allow",
     "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
     "Resource": [$(bedrock_model_arns "${EMBEDDING_MODEL_ID}" "${TEXT2TEXT_MODEL_ID}" | json_list)]}$(pg_connect_statement)
  ]
}
JSON
}

# The ingestion Job: read the documents and write index versions in this tenant's bucket; embed.
ingest_policy() {
  local p=${AWS_PARTITION} b=${CONTEXTUAL_DATA_BUCKET}
  cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "TenantBucket", "Effect": "Allow",
     "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": "arn:${p}:s3:::${b}"},
    {"Sid": "TenantObjectsReadWrite", "Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
     "Resource": "arn:${p}:s3:::${b}/*"},
    {"Sid": "BedrockEmbeddings", "Effect": "Allow",
     "Action": ["bedrock:InvokeModel"],
     "Resource": [$(bedrock_model_arns "${EMBEDDING_MODEL_ID}" | json_list)]}$(pg_connect_statement)
  ]
}
JSON
}

# Only the given ServiceAccount of the tenant's namespace may assume the role, through the
# cluster's OIDC provider.
trust_policy() {
  local issuer=$1 sa=$2
  cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Principal": {"Federated": "arn:${AWS_PARTITION}:iam::${ACCOUNT_ID}:oidc-provider/${issuer}"},
    "Action": "sts:AssumeRoleWithWebIdentity",
    "Condition": {"StringEquals": {
      "${issuer}:sub": "system:serviceaccount:${NAMESPACE}:${sa}",
      "${issuer}:aud": "sts.amazonaws.com"}}
  }]
}
JSON
}

ensure_bucket() {
  local b=${CONTEXTUAL_DATA_BUCKET} tags
  if ! exists aws s3api head-bucket --bucket "${b}" --expected-bucket-owner "${ACCOUNT_ID}"; then
    if [[ "${AWS_REGION}" == us-east-1 ]]; then
      run aws s3api create-bucket --bucket "${b}"
    else
      run aws s3api create-bucket --bucket "${b}" \
        --create-bucket-configuration "LocationConstraint=${AWS_REGION}"
    fi
  fi
  # the settings below are idempotent PUTs: re-applying them converges a drifted bucket
  run aws s3api put-public-access-block --bucket "${b}" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  run aws s3api put-bucket-encryption --bucket "${b}" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms"},"BucketKeyEnabled":true}]}'
  run aws s3api put-bucket-versioning --bucket "${b}" --versioning-configuration Status=Enabled
  run aws s3api put-bucket-ownership-controls --bucket "${b}" \
    --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerEnforced}]'
  run aws s3api put-bucket-policy --bucket "${b}" --policy "$(cat <<JSON
{"Version": "2012-10-17", "Statement": [{"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
 "Action": "s3:*", "Resource": ["arn:${AWS_PARTITION}:s3:::${b}", "arn:${AWS_PARTITION}:s3:::${b}/*"],
 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
JSON
)"
  # old index versions are garbage after a while; keep 30 days of noncurrent versions
  run aws s3api put-bucket-lifecycle-configuration --bucket "${b}" --lifecycle-configuration \
    '{"Rules":[{"ID":"expire-noncurrent","Status":"Enabled","Filter":{},"NoncurrentVersionExpiration":{"NoncurrentDays":30},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":7}}]}'
  tags="TagSet=[{Key=app.kubernetes.io/part-of,Value=tenant-rag},{Key=tenant,Value=${TENANT_ID}}]"
  run aws s3api put-bucket-tagging --bucket "${b}" --tagging "${tags}"
}

# ensure_table NAME HASH_KEY [RANGE_KEY [LSI_NAME:NUMBER_ATTRIBUTE]]  (string keys; the optional local
# secondary index sorts by a Number attribute, all attributes projected). A table's keys cannot change
# after it is created: an existing table with other keys stops the script with what to do.
ensure_table() {
  local t=$1 key=$2 range=${3:-} lsi=${4:-} ttl keys_now want
  local attrs=("AttributeName=${key},AttributeType=S") schema=("AttributeName=${key},KeyType=HASH") extra=()
  if [[ -n "${range}" ]]; then
    attrs+=("AttributeName=${range},AttributeType=S")
    schema+=("AttributeName=${range},KeyType=RANGE")
  fi
  if [[ -n "${lsi}" ]]; then
    attrs+=("AttributeName=${lsi#*:},AttributeType=N")
    extra=(--local-secondary-indexes "IndexName=${lsi%%:*},KeySchema=[{AttributeName=${key},KeyType=HASH},{AttributeName=${lsi#*:},KeyType=RANGE}],Projection={ProjectionType=ALL}")
  fi
  if ! exists aws dynamodb describe-table --table-name "${t}"; then
    run aws dynamodb create-table --table-name "${t}" \
      --attribute-definitions "${attrs[@]}" \
      --key-schema "${schema[@]}" \
      "${extra[@]}" \
      --billing-mode PAY_PER_REQUEST \
      --sse-specification Enabled=true \
      --tags "Key=app.kubernetes.io/part-of,Value=tenant-rag" "Key=tenant,Value=${TENANT_ID}"
    run aws dynamodb wait table-exists --table-name "${t}"
  else
    want="${key}${range:+ ${range}}"
    keys_now="$(lookup "${want}" aws dynamodb describe-table --table-name "${t}" \
      --query 'Table.KeySchema[].AttributeName' --output text | tr -s '\t' ' ')"
    if [[ "${keys_now}" != "${want}" ]]; then
      die "table ${t} has the keys '${keys_now}', expected '${want}' (an older layout): export what you need, delete the table and run this script again (see docs/deploy.md)"
    fi
  fi
  ttl="$(lookup '' aws dynamodb describe-time-to-live --table-name "${t}" \
    --query 'TimeToLiveDescription.TimeToLiveStatus' --output text)"
  if [[ "${ttl}" != ENABLED ]]; then
    run aws dynamodb update-time-to-live --table-name "${t}" \
      --time-to-live-specification "Enabled=true,AttributeName=expires_at"
  fi
  run aws dynamodb update-continuous-backups --table-name "${t}" \
    --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true
}

ensure_cognito() {
  local pool_id client_id domain callback="https://${TENANT_HOST}/oauth2/callback"
  pool_id="$(lookup '' aws cognito-idp list-user-pools --max-results 60 \
    --query "UserPools[?Name=='${COGNITO_POOL_NAME}'].Id | [0]" --output text)"
  if [[ -z "${pool_id}" ]]; then
    # custom:tenantid is immutable and not writable by the app client: users cannot change it.
    # A changed e-mail address takes effect only once the user has verified it (until then Cognito
    # keeps the old, verified one in the ID token). Users are identified by `sub`, never by e-mail
    # (SECURITY.md, "Which claim identifies a user").
    pool_id="$(run_out '<pool-id>' aws cognito-idp create-user-pool --pool-name "${COGNITO_POOL_NAME}" \
      --schema 'Name=tenantid,AttributeDataType=String,Mutable=false,StringAttributeConstraints={MinLength=3,MaxLength=32}' \
      --admin-create-user-config AllowAdminCreateUserOnly=true \
      --auto-verified-attributes email --username-attributes email \
      --user-attribute-update-settings AttributesRequireVerificationBeforeUpdate=email \
      --mfa-configuration OPTIONAL --software-token-mfa-configuration Enabled=true \
      --policies 'PasswordPolicy={MinimumLength=12,RequireUppercase=true,RequireLowercase=true,RequireNumbers=true,RequireSymbols=true}' \
      --deletion-protection INACTIVE \
      --user-pool-tags "app.kubernetes.io/part-of=tenant-rag,tenant=${TENANT_ID}" \
      --query UserPool.Id --output text)"
  else
    # update-user-pool would reset every setting not passed; the operator applies it (SECURITY.md)
    log "user pool ${pool_id} exists: check that it requires verification before an e-mail change" \
      "(UserAttributeUpdateSettings) and that the app client cannot write email (SECURITY.md, upgrading)"
  fi
  domain="$(lookup '' aws cognito-idp describe-user-pool-domain --domain "${COGNITO_DOMAIN_PREFIX}" \
    --query DomainDescription.UserPoolId --output text)"
  if [[ -z "${domain}" ]]; then
    run aws cognito-idp create-user-pool-domain --domain "${COGNITO_DOMAIN_PREFIX}" --user-pool-id "${pool_id}"
  elif [[ "${domain}" != "${pool_id}" ]]; then
    die "Cognito domain ${COGNITO_DOMAIN_PREFIX} belongs to another user pool (${domain})"
  fi
  client_id="$(lookup '' aws cognito-idp list-user-pool-clients --user-pool-id "${pool_id}" \
    --max-results 60 --query "UserPoolClients[?ClientName=='${COGNITO_CLIENT_NAME}'].ClientId | [0]" --output text)"
  if [[ -z "${client_id}" ]]; then
    client_id="$(run_out '<client-id>' aws cognito-idp create-user-pool-client --user-pool-id "${pool_id}" \
      --client-name "${COGNITO_CLIENT_NAME}" --generate-secret \
      --allowed-o-auth-flows code --allowed-o-auth-flows-user-pool-client \
      --allowed-o-auth-scopes openid email profile \
      --callback-urls "${callback}" --logout-urls "https://${TENANT_HOST}/" \
      --supported-identity-providers COGNITO \
      --read-attributes email email_verified name custom:tenantid \
      --write-attributes name \
      --prevent-user-existence-errors ENABLED \
      --enable-token-revocation \
      --id-token-validity 60 --access-token-validity 60 --refresh-token-validity 12 \
      --token-validity-units 'AccessToken=minutes,IdToken=minutes,RefreshToken=hours' \
      --query UserPoolClient.ClientId --output text)"
  fi
  ensure_oauth_secret "${pool_id}" "${client_id}"
  ensure_admin_group "${pool_id}"
  log "Cognito user pool ${pool_id}, app client ${client_id}"
}

# The tenant's admins: members of this group (cognito:groups in their ID token) manage the documents.
# Add a user with: aws cognito-idp admin-add-user-to-group --user-pool-id POOL --username USER --group-name admins
ensure_admin_group() {
  local pool_id=$1 group=${ADMIN_GROUP}
  if ! exists aws cognito-idp get-group --user-pool-id "${pool_id}" --group-name "${group}"; then
    run aws cognito-idp create-group --user-pool-id "${pool_id}" --group-name "${group}" \
      --description "tenant ${TENANT_ID}: manage the documents from the web chat"
  fi
}

# The oauth2-proxy credentials live in Secrets Manager; apply-tenant.sh copies them into the
# Kubernetes Secret. Created once (a new cookie secret would log every user out).
ensure_oauth_secret() {
  local pool_id=$1 client_id=$2 client_secret cookie_secret secret_file
  if exists aws secretsmanager describe-secret --secret-id "${OAUTH_SECRET_NAME}"; then
    return 0
  fi
  client_secret="$(lookup '<client-secret>' aws cognito-idp describe-user-pool-client \
    --user-pool-id "${pool_id}" --client-id "${client_id}" --query UserPoolClient.ClientSecret --output text)"
  cookie_secret="$(openssl rand -base64 32 | tr -- '+/' '-_' | cut -c1-32)"
  # through a file in the private temp dir, never on a command line (visible in ps)
  secret_file="$(tmpdir)/oauth2-proxy-secret.json"
  (umask 077 && printf '{"client-id": "%s", "client-secret": "%s", "cookie-secret": "%s"}\n' \
    "${client_id}" "${client_secret}" "${cookie_secret}" >"${secret_file}")
  run aws secretsmanager create-secret --name "${OAUTH_SECRET_NAME}" \
    --description "oauth2-proxy credentials of tenant ${TENANT_ID}" \
    --tags "Key=app.kubernetes.io/part-of,Value=tenant-rag" "Key=tenant,Value=${TENANT_ID}" \
    --secret-string "file://${secret_file}"
}

cluster_oidc_issuer() {
  local issuer
  issuer="$(lookup 'oidc.eks.<region>.amazonaws.com/id/<id>' aws eks describe-cluster --name "${CLUSTER_NAME}" \
    --query cluster.identity.oidc.issuer --output text)"
  issuer=${issuer#https://}
  [[ -n "${issuer}" ]] || die "cluster ${CLUSTER_NAME} has no OIDC issuer: run bootstrap-cluster.sh first"
  printf '%s\n' "${issuer}"
}

ensure_role() { # ensure_role ROLE_NAME SERVICE_ACCOUNT POLICY_FUNCTION OIDC_ISSUER
  local role=$1 sa=$2 policy_fn=$3 issuer=$4 policy_file trust_file
  trust_file="$(tmpdir)/trust-${role}.json"
  policy_file="$(tmpdir)/policy-${role}.json"
  trust_policy "${issuer}" "${sa}" >"${trust_file}"
  "${policy_fn}" >"${policy_file}"
  if exists aws iam get-role --role-name "${role}"; then
    run aws iam update-assume-role-policy --role-name "${role}" --policy-document "file://${trust_file}"
  else
    run aws iam create-role --role-name "${role}" \
      --description "tenant ${TENANT_ID}: IRSA role of ${NAMESPACE}/${sa}" \
      --assume-role-policy-document "file://${trust_file}" \
      --tags "Key=app.kubernetes.io/part-of,Value=tenant-rag" "Key=tenant,Value=${TENANT_ID}"
  fi
  # an inline policy: put-role-policy replaces it, so re-running converges
  run aws iam put-role-policy --role-name "${role}" --policy-name "${IAM_POLICY_NAME}" \
    --policy-document "file://${policy_file}"
}

main() {
  parse_common "$@"
  ((${#ARGS[@]} == 1)) || { usage; die "expected TENANT"; }
  validate_tenant "${ARGS[0]}"
  cluster_env
  require_cmd aws openssl
  resolve_account
  tenant_env "${ARGS[0]}"
  if [[ "${VECTOR_STORE}" == pgvector ]]; then
    require_cmd jq psql
    resolve_aurora
  fi
  log "onboarding tenant ${TENANT_ID} in account ${ACCOUNT_ID}, region ${AWS_REGION}"
  ensure_cognito
  ensure_bucket
  ensure_table "${CHATHISTORY_TABLE}" SessionId
  ensure_table "${SESSIONS_TABLE}" TenantId ConversationId ByLastActivity:last_activity  # rag/stores/sessions.py
  ensure_table "${USAGE_TABLE}" TenantId UsageKey
  ensure_table "${QUOTA_TABLE}" QuotaKey
  ensure_table "${FEEDBACK_TABLE}" TenantId FeedbackId
  local issuer
  issuer="$(cluster_oidc_issuer)"
  ensure_role "${CHATBOT_ROLE_NAME}" chatbot chatbot_policy "${issuer}"
  ensure_role "${INGEST_ROLE_NAME}" ingest ingest_policy "${issuer}"
  if [[ "${VECTOR_STORE}" == pgvector ]]; then
    # schema + login role (rds_iam) of this tenant, idempotent (rag.index.pgvector.provision_sql)
    pg_admin_sql provision
  fi
  log "done: next, deploy-scripts/apply-tenant.sh ${TENANT_ID}"
}

main "$@"

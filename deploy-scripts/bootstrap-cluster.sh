#!/usr/bin/env bash
# Creates (or converges) the shared EKS cluster: eksctl cluster with the IAM OIDC provider for IRSA
# and NetworkPolicy enforcement, then Istio at the pinned ISTIO_VERSION (base, CNI, istiod, ingress
# gateway behind an NLB) and the gateway filter that strips client-sent x-auth-request-* headers.
# With --with-aurora also the shared Aurora PostgreSQL Serverless v2 cluster for VECTOR_STORE=pgvector
# (IAM database authentication, encrypted, reachable on 5432 from the cluster's nodes only).
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/bootstrap-cluster.sh [--dry-run] [--with-aurora]

Required environment: AWS_REGION, CLUSTER_NAME.
Optional: K8S_VERSION (1.32), NODE_INSTANCE_TYPE (m6i.large), NODE_MIN (2), NODE_MAX (4),
ISTIO_VERSION (pinned in lib.sh); with --with-aurora: AURORA_CLUSTER_ID (<cluster>-rag-pg),
AURORA_ENGINE_VERSION (16.6, pgvector 0.8), AURORA_MIN_ACU (0.5), AURORA_MAX_ACU (16), PG_DATABASE (rag).
USAGE
}

helm_istio() { # helm_istio RELEASE CHART VALUES_FILE
  run helm upgrade --install "$1" "$2" --repo "${ISTIO_HELM_REPO}" --namespace istio-system \
    --create-namespace --version "${ISTIO_VERSION}" -f "$3" --wait
}

# The shared Aurora PostgreSQL Serverless v2 cluster (one writer) in the EKS cluster's VPC and
# subnets; its security group admits 5432 from the EKS cluster security group only. Each tenant
# gets its own schema and login role at onboarding (onboard-tenant.sh with VECTOR_STORE=pgvector).
# https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora-serverless-v2.create.html
ensure_aurora() {
  : "${AURORA_ENGINE_VERSION:=16.6}"
  : "${AURORA_MIN_ACU:=0.5}"
  : "${AURORA_MAX_ACU:=16}"
  : "${PG_DATABASE:=rag}"
  check_value AURORA_ENGINE_VERSION '^[0-9]+\.[0-9]+$' "an Aurora PostgreSQL version such as 16.6"
  check_value AURORA_MIN_ACU '^[0-9]+(\.5)?$' "Aurora capacity units, e.g. 0.5"
  check_value AURORA_MAX_ACU '^[0-9]+(\.5)?$' "Aurora capacity units, e.g. 16"
  check_value PG_DATABASE '^[a-z_][a-z0-9_]{0,62}$' "a database name"
  local id=${AURORA_CLUSTER_ID} vpc subnets cluster_sg sg tags
  tags=("Key=app.kubernetes.io/part-of,Value=tenant-rag" "Key=eks-cluster,Value=${CLUSTER_NAME}")
  vpc="$(lookup '<vpc-id>' aws eks describe-cluster --name "${CLUSTER_NAME}" \
    --query cluster.resourcesVpcConfig.vpcId --output text)"
  subnets="$(lookup '<subnet-ids>' aws eks describe-cluster --name "${CLUSTER_NAME}" \
    --query cluster.resourcesVpcConfig.subnetIds --output text)"
  cluster_sg="$(lookup '<cluster-sg>' aws eks describe-cluster --name "${CLUSTER_NAME}" \
    --query cluster.resourcesVpcConfig.clusterSecurityGroupId --output text)"
  if ! exists aws rds describe-db-subnet-groups --db-subnet-group-name "${id}"; then
    # shellcheck disable=SC2086  # the subnet ids are separate words
    run aws rds create-db-subnet-group --db-subnet-group-name "${id}" \
      --db-subnet-group-description "tenant-rag pgvector (${CLUSTER_NAME})" --subnet-ids ${subnets} --tags "${tags[@]}"
  fi
  sg="$(lookup '' aws ec2 describe-security-groups --filters "Name=group-name,Values=${id}" "Name=vpc-id,Values=${vpc}" \
    --query 'SecurityGroups[0].GroupId' --output text)"
  if [[ -z "${sg}" ]]; then
    sg="$(run_out '<sg-id>' aws ec2 create-security-group --group-name "${id}" --vpc-id "${vpc}" \
      --description "tenant-rag pgvector: 5432 from the EKS cluster" --query GroupId --output text)"
    run aws ec2 authorize-security-group-ingress --group-id "${sg}" \
      --ip-permissions "IpProtocol=tcp,FromPort=5432,ToPort=5432,UserIdGroupPairs=[{GroupId=${cluster_sg}}]"
  fi
  if ! exists aws rds describe-db-clusters --db-cluster-identifier "${id}"; then
    run aws rds create-db-cluster --db-cluster-identifier "${id}" --engine aurora-postgresql \
      --engine-version "${AURORA_ENGINE_VERSION}" --database-name "${PG_DATABASE}" \
      --serverless-v2-scaling-configuration "MinCapacity=${AURORA_MIN_ACU},MaxCapacity=${AURORA_MAX_ACU}" \
      --enable-iam-database-authentication --storage-encrypted --deletion-protection \
      --master-username ragadmin --manage-master-user-password \
      --db-subnet-group-name "${id}" --vpc-security-group-ids "${sg}" --backup-retention-period 7 --tags "${tags[@]}"
  fi
  if ! exists aws rds describe-db-instances --db-instance-identifier "${id}-1"; then
    run aws rds create-db-instance --db-instance-identifier "${id}-1" --db-cluster-identifier "${id}" \
      --engine aurora-postgresql --db-instance-class db.serverless --no-publicly-accessible --tags "${tags[@]}"
  fi
  run aws rds wait db-instance-available --db-instance-identifier "${id}-1"
  log "Aurora cluster ${id} ready (onboard tenants with VECTOR_STORE=pgvector)"
}

main() {
  local with_aurora=0 args=() a
  for a in "$@"; do
    if [[ "${a}" == --with-aurora ]]; then with_aurora=1; else args+=("${a}"); fi
  done
  parse_common "${args[@]+"${args[@]}"}"
  ((${#ARGS[@]} == 0)) || { usage; die "unexpected arguments: ${ARGS[*]}"; }
  cluster_env
  : "${NODE_INSTANCE_TYPE:=m6i.large}"
  : "${NODE_MIN:=2}"
  : "${NODE_MAX:=4}"
  check_value NODE_INSTANCE_TYPE '^[a-z0-9-]+\.[a-z0-9]+$' "an EC2 instance type"
  check_value NODE_MIN '^[0-9]+$' "a number"
  check_value NODE_MAX '^[1-9][0-9]*$' "a number"
  check_value ISTIO_VERSION '^[0-9]+\.[0-9]+\.[0-9]+$' "a pinned Istio version such as 1.27.3"
  require_cmd aws eksctl kubectl helm envsubst

  local cfg out
  cfg="$(tmpdir)/eksctl-cluster.yaml"
  render_file "${REPO_ROOT}/deploy-scripts/templates/eksctl-cluster.yaml" "${cfg}" \
    CLUSTER_NAME AWS_REGION K8S_VERSION NODE_INSTANCE_TYPE NODE_MIN NODE_MAX
  if exists eksctl get cluster --name "${CLUSTER_NAME}" --region "${AWS_REGION}"; then
    log "cluster ${CLUSTER_NAME} exists"
  else
    run eksctl create cluster -f "${cfg}"
  fi
  # idempotent; also covers a cluster that was created without withOIDC
  run eksctl utils associate-iam-oidc-provider --cluster "${CLUSTER_NAME}" --region "${AWS_REGION}" --approve
  run aws eks update-kubeconfig --name "${CLUSTER_NAME}" --region "${AWS_REGION}"

  helm_istio istio-base base "${REPO_ROOT}/istio/cluster/base-values.yaml"
  helm_istio istio-cni cni "${REPO_ROOT}/istio/cluster/cni-values.yaml"
  # shellcheck disable=SC2119  # no options: keep every onboarded tenant
  update_mesh_providers
  helm_istio istio-ingressgateway gateway "${REPO_ROOT}/istio/cluster/gateway-values.yaml"

  out="$(tmpdir)/cluster"
  export ISTIO_VERSION
  local filter
  for filter in envoyfilter-strip-auth-headers envoyfilter-gateway-limits; do
    render_file "${REPO_ROOT}/istio/cluster/${filter}.yaml" "${out}/${filter}.yaml" \
      ISTIO_INGRESS_NAMESPACE ISTIO_VERSION
    run kubectl apply -f "${out}/${filter}.yaml"
  done
  if ((with_aurora)); then ensure_aurora; fi
  log "cluster ready. The DNS name of the ingress load balancer (point *.DOMAIN at it):"
  run kubectl get service istio-ingressgateway -n istio-system \
    -o 'jsonpath={.status.loadBalancer.ingress[0].hostname}'
}

main "$@"

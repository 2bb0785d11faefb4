#!/usr/bin/env bash
# Creates (or converges) the shared EKS cluster: eksctl cluster with the IAM OIDC provider for IRSA
# and NetworkPolicy enforcement, then Istio at the pinned ISTIO_VERSION (base, CNI, istiod, ingress
# gateway behind an NLB) and the gateway filter that strips client-sent x-auth-request-* headers.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'USAGE'
Usage: deploy-scripts/bootstrap-cluster.sh [--dry-run]

Required environment: AWS_REGION, CLUSTER_NAME.
Optional: K8S_VERSION (1.32), NODE_INSTANCE_TYPE (m6i.large), NODE_MIN (2), NODE_MAX (4),
ISTIO_VERSION (pinned in lib.sh).
USAGE
}

helm_istio() { # helm_istio RELEASE CHART VALUES_FILE
  run helm upgrade --install "$1" "$2" --repo "${ISTIO_HELM_REPO}" --namespace istio-system \
    --create-namespace --version "${ISTIO_VERSION}" -f "$3" --wait
}

main() {
  parse_common "$@"
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
  log "cluster ready. The DNS name of the ingress load balancer (point *.DOMAIN at it):"
  run kubectl get service istio-ingressgateway -n istio-system \
    -o 'jsonpath={.status.loadBalancer.ingress[0].hostname}'
}

main "$@"

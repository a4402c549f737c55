"""The HTTP adapter: blueprints, and what every request passes through.

Routes (``api`` for ``/v1``, ``cds`` for CDS Hooks, ``ops`` for health and the
contract, ``review`` for the clinician pages), authentication of requests,
request schemas and body reading, the response views, problem+json errors, rate
limits, logs and metrics. Views parse, call a service, and shape the answer. A
new route goes in the blueprint it belongs to, with its entry in ``openapi.yaml``.
"""

"""TEMPORARY shim while app.py/gateway.py move to `tier_router.aws.ssm` (issue 12)."""

from tier_router.aws.ssm import SSMKeySource, fetch_parameter, key_source
from tier_router.errors import SecretNotFound, SecretsError

__all__ = ["SSMKeySource", "SecretNotFound", "SecretsError", "fetch_parameter", "key_source"]

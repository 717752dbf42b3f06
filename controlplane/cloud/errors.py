"""The cloud's failures as the control plane's own errors (status and code in the uniform error body)."""

from __future__ import annotations

from controlplane.errors import AppError


class CloudError(AppError):
    status_code = 502
    code = "cloud_error"


class CloudNotFound(CloudError):
    status_code = 404
    code = "cloud_not_found"


class CloudConflict(CloudError):
    status_code = 409
    code = "cloud_conflict"


class QuotaExceeded(CloudError):
    status_code = 409
    code = "quota_exceeded"


class CloudTimeout(CloudError):
    status_code = 504
    code = "cloud_timeout"


class CloudUnavailable(CloudError):
    """The cloud did not answer (connection refused or reset, 502/503/504) within the retry budget."""

    status_code = 503
    code = "cloud_unavailable"

"""``edgetrt serve``: engines over the KServe v2 / Triton HTTP protocol, with dynamic batching.

Modules: ``protocol`` (wire format), ``model`` (an engine as a served model), ``batcher``
(dynamic batching over K contexts), ``metrics`` (Prometheus + statistics), ``app`` (the
Starlette routes), ``server`` (uvicorn, sd_notify, SIGTERM drain), ``sdnotify``. The package
imports none of them itself, so the CLI stays fast when it only needs defaults.
"""

__all__: list[str] = []

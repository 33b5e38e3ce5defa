"""``edgetrt serve``: engines over the KServe v2 / Triton HTTP protocol, with dynamic batching.

Modules: ``protocol`` (wire format), ``modelconfig`` (Triton's config.pbtxt message),
``model`` (an engine version as a served model), ``repository`` (a Triton model repository),
``batcher`` (dynamic batching over K contexts), ``metrics`` (Prometheus + statistics),
``telemetry`` (sampler gauges), ``app`` (the Starlette routes), ``requestlog``
(``--log-verbose``), ``connections`` (header timeout, connection cap), ``server`` (uvicorn,
metrics port, sd_notify, SIGTERM drain), ``sdnotify``. The package imports none of them
itself, so the CLI stays fast when it only needs defaults.
"""

__all__: list[str] = []

"""``edgetrt deploy``: the files to ship a model as users deploy inference services.

``docker`` writes a multi-stage Dockerfile (the engine is built on the target from the ONNX),
a ``.dockerignore``, a model repository, and a ``compose.yaml`` with Prometheus and a
provisioned Grafana dashboard; ``k8s`` writes a Deployment, a Service and a
HorizontalPodAutoscaler on ``nv_inference_pending_request_count``. Every YAML and JSON file is
dumped from data structures (pyyaml, json), never from text templates.

Modules: ``plan`` (what is deployed where), ``docker``, ``monitoring`` (Prometheus, Grafana),
``compose``, ``k8s``, ``writer``.
"""

__all__: list[str] = []

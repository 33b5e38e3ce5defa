"""``edgetrt service``: run ``edgetrt serve`` as a hardened systemd service (install/uninstall/status)."""

from edge.service.manager import ENV_DIR, UNIT_DIR, InstallPlan, install, plan_install, status, systemctl, uninstall
from edge.service.unit import ServiceError, ServiceSpec, render_env, render_unit, unit_name

__all__ = [
    "ENV_DIR",
    "UNIT_DIR",
    "InstallPlan",
    "ServiceError",
    "ServiceSpec",
    "install",
    "plan_install",
    "render_env",
    "render_unit",
    "status",
    "systemctl",
    "uninstall",
    "unit_name",
]

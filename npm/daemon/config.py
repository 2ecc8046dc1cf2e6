"""Configuration of the enforcer daemon: defaults, then a file, then environment, then flags.

The file (JSON or YAML; the ``azure-npm-config`` ConfigMap mounted into the pod, path from
``NPM_CONFIG`` or ``--config``) may set any subset of the keys below: what it leaves out
keeps its default. Environment variables ``NPM_<KEY>`` (upper case) override the file, and
command-line flags override both. ``NODE_NAME`` (the downward API) also sets ``node_name``.
An unknown key or a bad value is a ``ConfigError`` that names the key and where it came
from; ``azure-npm start`` turns it into exit status 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import yaml

CONFIG_ENV = "NPM_CONFIG"
ENV_PREFIX = "NPM_"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A bad configuration key or value, naming the key and where it was set."""

    def __init__(self, origin: str, key: str, message: str) -> None:
        super().__init__(f"{origin}: {key}: {message}")
        self.origin = origin
        self.key = key
        self.message = message


@dataclass(frozen=True)
class DaemonConfig:
    """Every setting of ``azure-npm start``. Durations are in seconds."""

    node_name: str = ""
    kubeconfig: str = ""  # empty: in-cluster service account
    manifests: str = ""  # a directory: take objects from files instead of an API server
    listen: str = "0.0.0.0:10091"  # /healthz, /readyz, /metrics
    debug_listen: str = "127.0.0.1:10093"  # /npm/v1/debug/manager; empty disables
    coalesce_window: float = 0.1  # the longest a change waits for the rest of its burst (an isolated one: none)
    reconcile_interval: float = 60.0  # repair drift with the kernel at least this often
    poll_interval: float = 0.25  # static source: how often the manifest directory is scanned
    watch_timeout: float = 300.0  # server-side timeout of one watch request, then it resumes
    backoff_initial: float = 0.5  # first wait after a failed list or watch
    backoff_max: float = 30.0  # longest wait between retries (with jitter)
    watch_nodes: bool = True  # nodes give hostNetwork pods their address (and CNP ``nodes`` peers theirs)
    crd_retry_interval: float = 60.0  # ClusterNetworkPolicy CRD not served (404/403): list again this often
    post_events: bool = True  # post a Kubernetes Event on a policy that failed closed
    verify_interval: float = 900.0  # check the kernel against the policies this often (azure-npm verify); 0: on request
    verify_budget: int = 250_000  # a check needing more kernel walks than this is not run (and says so)
    verify_max_pods: int = 5_000  # larger clusters are checked on request only (the simulator's memory)
    cleanup_on_exit: bool = False  # remove every rule and set on SIGTERM
    log_level: str = "info"
    dataplane: Mapping[str, Any] = field(default_factory=dict)  # passed to DataplaneConfig

    def listen_address(self) -> tuple[str, int]:
        """``listen`` as (host, port)."""
        return split_address(self.listen)

    def debug_address(self) -> tuple[str, int] | None:
        """``debug_listen`` as (host, port), or None when disabled."""
        return split_address(self.debug_listen) if self.debug_listen else None


def split_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[V6]:PORT``) as (host, port); raises ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (port 0-65535)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _address(value: str) -> str | None:
    try:
        split_address(value)
    except ValueError as exc:
        return str(exc)
    return None


def _optional_address(value: str) -> str | None:
    return _address(value) if value else None


def _log_level(value: str) -> str | None:
    return None if value in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


# Extra checks beyond the type; each returns an error message or None.
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "listen": _address,
    "debug_listen": _optional_address,
    "coalesce_window": lambda v: None if v >= 0 else "must be 0 or more",
    "reconcile_interval": _positive,
    "poll_interval": _positive,
    "watch_timeout": _positive,
    "backoff_initial": _positive,
    "backoff_max": _positive,
    "crd_retry_interval": _positive,
    "verify_interval": lambda v: None if v >= 0 else "must be 0 (on request only) or more",
    "verify_budget": _positive,
    "verify_max_pods": _positive,
    "log_level": _log_level,
}

KEYS = tuple(f.name for f in fields(DaemonConfig))


def _coerce(origin: str, key: str, value: Any, *, from_text: bool) -> Any:
    """Check ``value`` against the key's type (parsing it when it comes from text)."""
    default = getattr(DaemonConfig(), key)
    if isinstance(default, bool):
        if from_text and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
        if not isinstance(value, bool):
            raise ConfigError(origin, key, f"must be true or false, not {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if from_text and isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(origin, key, f"must be a whole number, not {value!r}")
        return value
    if isinstance(default, float):
        if from_text and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(origin, key, f"must be a number of seconds, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(origin, key, f"must be a number of seconds, not {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(origin, key, f"must be a string, not {value!r}")
        return value
    # dataplane: a mapping of DataplaneConfig fields
    if from_text and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(origin, key, f"must be a JSON object: {exc.msg}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(origin, key, f"must be a mapping, not {value!r}")
    return dict(value)


def _merge(base: DaemonConfig, values: Mapping[str, Any], origin: str, *, from_text: bool) -> DaemonConfig:
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in KEYS:
            raise ConfigError(origin, str(key), f"unknown key (known keys: {', '.join(KEYS)})")
        coerced = _coerce(origin, key, value, from_text=from_text)
        check = _CHECKS.get(key)
        problem = check(coerced) if check else None
        if problem:
            raise ConfigError(origin, key, problem)
        changes[key] = coerced
    return replace(base, **changes)


def read_file(path: str) -> Mapping[str, Any]:
    """The mapping in a JSON or YAML config file; an empty file is an empty mapping."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(path, "-", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(path, "-", f"is not valid JSON or YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(path, "-", "must contain a mapping of keys to values")
    return data


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Settings given as ``NPM_<KEY>`` variables, plus ``NODE_NAME`` from the downward API."""
    values: dict[str, str] = {}
    if environ.get("NODE_NAME"):
        values["node_name"] = environ["NODE_NAME"]
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        if name in environ:
            values[key] = environ[name]
    return values


def load(
    flags: Mapping[str, Any] | None = None,
    *,
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> DaemonConfig:
    """Defaults, then the file (``path`` or ``$NPM_CONFIG``), then ``NPM_*``, then ``flags``.

    ``flags`` holds only what was given on the command line (None values are ignored).
    """
    env = os.environ if environ is None else environ
    config = DaemonConfig()
    path = path or env.get(CONFIG_ENV) or None
    if path:
        config = _merge(config, read_file(path), path, from_text=False)
    config = _merge(config, from_environment(env), "environment", from_text=True)
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    return _merge(config, given, "command line", from_text=False)


def check_dataplane_keys(config: DaemonConfig, allowed: tuple[str, ...]) -> None:
    """Reject ``dataplane`` keys the dataplane does not know (named in the error)."""
    for key in config.dataplane:
        if key not in allowed:
            raise ConfigError("dataplane", str(key), f"unknown key (known keys: {', '.join(allowed)})")


def as_dict(config: DaemonConfig) -> dict[str, Any]:
    """The configuration as plain data (for logs and the debug endpoint)."""
    return {f.name: (dict(v) if isinstance(v := getattr(config, f.name), Mapping) else v) for f in fields(config)}

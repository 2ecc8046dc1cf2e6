"""Reading what the daemon running on this node knows, through its debug endpoint.

``azure-npm debug gettuples --from-daemon URL`` resolves pod names with the daemon's own
cache (the pods it enforces for), read from ``/npm/v1/debug/manager`` on the daemon's
``debug_listen`` address (localhost by default: run it on the node, or through
``kubectl port-forward``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from npm.daemon.http import DEBUG_MANAGER_PATH


class DaemonUnreadable(Exception):
    """The daemon could not be reached, or did not answer with its debug dump."""


def manager_url(address: str) -> str:
    """The debug dump's URL from ``http://HOST:PORT``, ``HOST:PORT`` or the full URL."""
    if "://" not in address:
        address = f"http://{address}"
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DaemonUnreadable(f'"{address}" is not the address of a daemon (http://HOST:PORT)')
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") or DEBUG_MANAGER_PATH, "", ""))


def read_dump(address: str, timeout: float = 60.0) -> dict[str, Any]:
    """The daemon's debug dump (its cache, controller and watch status)."""
    url = manager_url(address)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise DaemonUnreadable(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DaemonUnreadable(
            f"cannot reach the daemon at {url}: {reason} (is it running here, with debug_listen at that address?)"
        ) from None
    try:
        data = json.loads(body)
    except ValueError:
        raise DaemonUnreadable(f"{url}: the answer is not the daemon's debug dump (not JSON)") from None
    if not isinstance(data, dict) or not isinstance(data.get("pods"), list):
        raise DaemonUnreadable(f"{url}: the answer is not the daemon's debug dump (no pods)")
    return data


def daemon_pods(address: str) -> dict[str, str]:
    """``namespace/name`` -> IP of every pod in the daemon's cache ("" for one without an IP yet)."""
    out: dict[str, str] = {}
    for pod in read_dump(address)["pods"]:
        if isinstance(pod, dict) and isinstance(pod.get("namespace"), str) and isinstance(pod.get("name"), str):
            out[f"{pod['namespace']}/{pod['name']}"] = str(pod.get("ip") or "")
    return out

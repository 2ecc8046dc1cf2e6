"""``azure-npm start``: the enforcer daemon for one node.

Parses the command line and the configuration, then runs a :class:`npm.daemon.daemon.Daemon`.

Exit status: 0 after SIGTERM/SIGINT, 1 when the dataplane cannot start, 2 for a bad
configuration or command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from dataclasses import fields, replace

import yaml

from npm.daemon import config as npm_config
from npm.daemon.config import ConfigError, DaemonConfig
from npm.daemon.daemon import Daemon, make_dataplane

log = logging.getLogger("npm.start")

EXIT_OK = 0
EXIT_DATAPLANE = 1
EXIT_CONFIG = 2

CHECK_CONFIG_HEADER = """\
# The effective configuration of azure-npm start: built-in defaults, then the config file,
# then NPM_<KEY> environment variables, then flags. Valid as a config file (--config).
"""

DESCRIPTION = """\
Run the enforcer on this node: watch Pods, Namespaces, NetworkPolicies (and Nodes) and
keep this node's ipsets and iptables rules equal to what the policies require.

Objects come from the API server (in-cluster service account, or --kubeconfig), or with
--manifests DIR from the manifest files in DIR, which is re-read when files change.
Settings come from a config file (--config or $NPM_CONFIG, JSON or YAML), then NPM_<KEY>
environment variables, then these flags, each overriding the one before.

Endpoints: /healthz, /readyz (ready after the first full apply), /metrics on --listen;
/npm/v1/debug/manager (a JSON dump of the cache) on --debug-listen.
Signals: SIGTERM/SIGINT stop and leave the rules in place (unless --cleanup-on-exit);
SIGHUP reconciles with the kernel at once.

Exit status: 0 stopped by a signal; 1 the dataplane could not start; 2 bad configuration.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``start`` subcommand to the azure-npm CLI."""
    parser = subparsers.add_parser(
        "start",
        help="run the enforcer daemon on this node",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``start``; every one defaults to None so the file and environment apply."""
    d = DaemonConfig()
    parser.add_argument("--config", metavar="FILE", help="config file, JSON or YAML (default: $NPM_CONFIG)")
    parser.add_argument("--node-name", help="this node's name (default: $NODE_NAME, from the downward API)")
    parser.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig to reach the API server (default: in-cluster)")
    parser.add_argument(
        "--manifests",
        metavar="DIR",
        help="take objects from the manifest files under DIR instead of an API server (polled for changes)",
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help=f"health and metrics address (default {d.listen})")
    parser.add_argument(
        "--debug-listen",
        metavar="HOST:PORT",
        help=f"debug endpoint address; '' disables it (default {d.debug_listen}, localhost only)",
    )
    for flag, what, default in (
        ("--coalesce-window", "a change after a quiet spell is applied at once; a burst of changes is applied "
         "together once quiet for a fifth of this, at the latest this long after its first change",
         d.coalesce_window),
        ("--reconcile-interval", "repair drift with the kernel at least this often", d.reconcile_interval),
        ("--poll-interval", "how often --manifests DIR is scanned for changes", d.poll_interval),
        ("--watch-timeout", "server-side timeout of one watch request before it resumes", d.watch_timeout),
        ("--verify-interval", "check the kernel against the policies (azure-npm verify) this often; 0: only on "
         "/npm/v1/debug/verify; a disagreement posts a VerifyMismatch Event and reconciles", d.verify_interval),
    ):
        parser.add_argument(flag, type=float, metavar="SECONDS", help=f"{what} (default {default:g})")
    parser.add_argument(
        "--cleanup-on-exit",
        action="store_true",
        default=None,
        help="remove every rule and set on SIGTERM (default: leave them enforcing)",
    )
    parser.add_argument(
        "--no-events", dest="post_events", action="store_false", default=None, help="do not post Kubernetes Events"
    )
    parser.add_argument(
        "--no-watch-nodes",
        dest="watch_nodes",
        action="store_false",
        default=None,
        help="do not watch Nodes (hostNetwork pods then keep the IP the pod reports)",
    )
    parser.add_argument("--log-level", choices=npm_config.LOG_LEVELS, help=f"default {d.log_level}")
    parser.add_argument(
        "--dataplane",
        dest="dataplane_kind",
        choices=("iptables", "nftables"),
        help="the dataplane: iptables (ipsets and iptables rules) or nftables (one table); sets the "
        "dataplane section's kind (default: iptables)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="print the effective configuration (as JSON with -o json) and exit: 0 valid, 2 invalid",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="format of --check-config")


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    """The effective configuration: file, then environment, then the flags that were given."""
    keys = {f.name for f in fields(DaemonConfig)}
    flags = {k: v for k, v in vars(args).items() if k in keys}
    cfg = npm_config.load(flags, path=args.config)
    if getattr(args, "dataplane_kind", None):  # overrides the kind only, not the rest of the section
        cfg = replace(cfg, dataplane={**cfg.dataplane, "kind": args.dataplane_kind})
    return cfg


def run(args: argparse.Namespace) -> int:
    """Entry point of ``azure-npm start``."""
    try:
        cfg = config_from_args(args)
        if not args.check_config and not cfg.node_name:
            raise ConfigError("command line", "node_name", "required: pass --node-name or set NODE_NAME")
    except ConfigError as exc:
        print(f"azure-npm start: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        data = npm_config.as_dict(cfg)
        if args.output == "json":
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            print(CHECK_CONFIG_HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")
        return EXIT_OK
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        dataplane = make_dataplane(cfg)
    except ConfigError as exc:
        print(f"azure-npm start: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        log.error("cannot start the dataplane: %s: %s", type(exc).__name__, exc)
        return EXIT_DATAPLANE
    daemon = Daemon(cfg, dataplane)
    try:
        daemon.start()
    except (ConfigError, OSError) as exc:
        # A kubeconfig that can't be loaded, or a listen address that can't be bound.
        print(f"azure-npm start: cannot start: {exc}", file=sys.stderr)
        daemon.shutdown()
        return EXIT_CONFIG
    install_signal_handlers(daemon)
    daemon.wait()
    daemon.shutdown()
    return EXIT_OK


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGTERM/SIGINT stop the daemon; SIGHUP asks for a reconcile."""
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop_event.set())
    signal.signal(signal.SIGHUP, lambda *_: daemon.controller.request_reconcile())


def main(argv: list[str] | None = None) -> int:
    """Run ``start`` on its own (``python -m npm.cli.start``), without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="azure-npm start", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m dashboard serve -i CLUSTER.libvirt_cluster.yml --users USERS.json [--bind 127.0.0.1] [--port 8080]
python -m dashboard adduser --users USERS.json NAME --role viewer|operator [--if-changed] [--dry-run]
    (password from the prompt or $ENTROPY_DASHBOARD_PASSWORD)
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys


def _serve(args: argparse.Namespace) -> int:
    import uvicorn  # pylint: disable=import-outside-toplevel

    from .app import Config, create_app  # pylint: disable=import-outside-toplevel
    from .collector import Collector, load_inventory_file  # pylint: disable=import-outside-toplevel

    if not os.path.exists(args.users):
        print("error: no users file %s: create one with: python -m dashboard adduser --users %s NAME --role operator"
              % (args.users, args.users), file=sys.stderr)
        return 2
    try:
        settings = load_inventory_file(args.inventory)   # credentials: the file's auth options, else ENTROPY_LIBVIRT_USERNAME/PASSWORD
    except ValueError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    secret = None
    if args.secret_file:
        with open(args.secret_file, encoding="utf-8") as handle:
            secret = handle.read().strip()
    config = Config(users_file=args.users, audit_file=args.audit_log, secret_key=secret, https_only=args.https_only,
                    migrate_unsafe=args.migrate_unsafe, metrics_token=os.environ.get("ENTROPY_DASHBOARD_METRICS_TOKEN"),
                    inventory_file=os.path.abspath(args.inventory), plan_dir=args.plan_dir,
                    checkpoint_dir=args.checkpoint_dir)
    collector = Collector(settings, refresh=args.refresh)
    collector.start()
    app = create_app(collector, config)
    print("entropy.cluster dashboard on http://%s:%d (%d hypervisors)" % (args.bind, args.port, len(settings.specs)), flush=True)
    uvicorn.run(app, host=args.bind, port=args.port, log_level="warning", proxy_headers=False)
    collector.stop()
    return 0


def _adduser(args: argparse.Namespace) -> int:
    from .auth import add_user, user_matches  # pylint: disable=import-outside-toplevel

    password = os.environ.get("ENTROPY_DASHBOARD_PASSWORD")
    if password is None:
        password = getpass.getpass("password for %s: " % args.name)
        if getpass.getpass("again: ") != password:
            print("error: the two passwords differ", file=sys.stderr)
            return 2
    if args.if_changed and user_matches(args.users, args.name, password, args.role):
        print("user %s (%s) unchanged in %s" % (args.name, args.role, args.users))
        return 0
    if args.dry_run:
        print("user %s (%s) would be written to %s" % (args.name, args.role, args.users))
        return 0
    try:
        add_user(args.users, args.name, password, args.role)
    except (ValueError, OSError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    print("user %s (%s) written to %s" % (args.name, args.role, args.users))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description="entropy.cluster web dashboard")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the dashboard")
    serve.add_argument("-i", "--inventory", required=True, help="the cluster's *.libvirt_cluster.yml inventory file")
    serve.add_argument("--users", required=True, help="the users file (python -m dashboard adduser)")
    serve.add_argument("--audit-log", default=None, help="append the audit log (JSON lines) to this file")
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--refresh", type=float, default=10.0, help="seconds between two inventory reads (events come at once)")
    serve.add_argument("--secret-file", default=None, help="file holding the session signing key (default: a new one per start)")
    serve.add_argument("--https-only", action="store_true", help="mark the session cookie Secure (behind a TLS proxy)")
    serve.add_argument("--migrate-unsafe", action="store_true",
                       help="migrate with vm_migrate unsafe=true (disks on storage every host sees that libvirt cannot detect)")
    serve.add_argument("--checkpoint-dir", default=None,
                       help="entropy.cluster.checkpoint's directory (entropy_checkpoint_dir): each VM's page lists its checkpoints")
    serve.add_argument("--plan-dir", default=None, help="where the plans computed from the page are written (default: plans/ beside the users file)")
    serve.set_defaults(func=_serve)
    adduser = sub.add_parser("adduser", help="add or replace a user in the users file")
    adduser.add_argument("--users", required=True)
    adduser.add_argument("name")
    adduser.add_argument("--role", choices=("viewer", "operator"), default="viewer")
    adduser.add_argument("--if-changed", action="store_true",
                         help="leave the file alone when the user already has this role and password (prints 'unchanged')")
    adduser.add_argument("--dry-run", action="store_true", help="say whether the user would be written; write nothing")
    adduser.set_defaults(func=_adduser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

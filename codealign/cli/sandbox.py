"""``sandbox build`` and ``sandbox check``: the Docker sandbox image."""

from __future__ import annotations

import argparse

from codealign.settings.execution import DEFAULT_IMAGE


def cmd_sandbox_build(args: argparse.Namespace) -> int:
    from codealign.execution.backends.docker_image import build_image

    method = build_image(
        args.image, args.pip or [], args.method, log=lambda line: print(line, flush=True)
    )
    print(f"built {args.image} ({method})")
    return 0


def cmd_sandbox_check(args: argparse.Namespace) -> int:
    from codealign.execution.backends.docker_image import check_sandbox
    from codealign.execution.backends.local import bwrap_path

    checks = check_sandbox(args.image)
    bwrap = bwrap_path()
    checks.append(
        (
            "bubblewrap (fallback)",
            bwrap is not None,
            bwrap or "not installed (apt-get install bubblewrap)",
        )
    )
    for what, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    docker_ok = all(ok for what, ok, _ in checks if not what.startswith("bubblewrap"))
    return 0 if docker_ok else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sandbox", help="build or check the Docker sandbox image")
    actions = p.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    image_help = f"image name (default: {DEFAULT_IMAGE})"
    b = actions.add_parser(
        "build",
        help="build the image: docker build, else offline "
        "from Debian's packages (debootstrap + docker import)",
    )
    b.add_argument("--image", default=DEFAULT_IMAGE, help=image_help)
    b.add_argument(
        "--pip",
        action="append",
        metavar="PACKAGE",
        help="extra pip package your test suites need (repeatable)",
    )
    b.add_argument(
        "--method",
        choices=["auto", "dockerfile", "offline"],
        default="auto",
        help="auto: try the Dockerfile (needs a registry), then the offline build",
    )
    b.set_defaults(func=cmd_sandbox_build)
    c = actions.add_parser("check", help="check the daemon, the image and a trial run")
    c.add_argument("--image", default=DEFAULT_IMAGE, help=image_help)
    c.set_defaults(func=cmd_sandbox_check)

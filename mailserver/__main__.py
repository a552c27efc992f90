"""Command line: `python -m mailserver lab [...]`, `doctor [...]` and `docs [--check]`."""

import sys

USAGE = """usage: python -m mailserver COMMAND [ARGS]

commands:
  lab [--stack NAME] [--check] [--keep]   run the mail server here, in a network namespace (root)
  doctor [...]                            check a running server (doctor --help)
  selfcheck [...]                         the host's daily check of itself, mailed to the postmaster
  docs [--check]                          regenerate the generated tables of the documents

Each command takes --help."""


def selfcheck_could_not_start(argv: list[str], why: str) -> None:
    """A library gone from the host (an OS upgrade without python3-dns...) stops the self-check
    at its imports, before it can remember anything: record why in its state, with the standard
    library and the catalog alone, so that the next run that starts tells the postmaster
    (selfcheck.previous_failure reads "failure")."""
    import json

    from mailserver.core import catalog

    config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else catalog.VM_LAYOUT.selfcheck_config
    try:
        with open(config) as f:
            state_path = catalog.Layout(**json.load(f)["layout"]).selfcheck_state
        try:
            with open(state_path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        state["failure"] = why[:300]
        with open(state_path, "w") as f:
            json.dump(state, f)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"selfcheck: could not record the failure: {e}", file=sys.stderr)


def main() -> int:
    command = sys.argv[1] if len(sys.argv) >= 2 else ""
    if command == "lab":
        from mailserver.lab.server import main as lab_main

        return lab_main(sys.argv[2:])
    if command == "doctor":
        from mailserver.doctor import main as doctor_main

        return doctor_main(sys.argv[2:])
    if command == "selfcheck":
        try:
            from mailserver.doctor.selfcheck import main as selfcheck_main
        except ImportError as e:
            selfcheck_could_not_start(sys.argv[2:], f"the self-check could not start: {e}")
            raise
        return selfcheck_main(sys.argv[2:])
    if command == "docs":
        from mailserver.docs import main as docs_main

        return docs_main(sys.argv[2:])
    if command in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

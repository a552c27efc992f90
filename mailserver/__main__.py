"""Command line: `python -m mailserver lab [...]`, `doctor [...]` and `docs [--check]`."""

import sys

USAGE = """usage: python -m mailserver COMMAND [ARGS]

commands:
  lab [--stack NAME] [--check] [--keep]   run the mail server here, in a network namespace (root)
  doctor [...]                            check a running server (doctor --help)
  selfcheck [...]                         the host's daily check of itself, mailed to the postmaster
  docs [--check]                          regenerate the generated tables of the documents

Each command takes --help."""


def main() -> int:
    command = sys.argv[1] if len(sys.argv) >= 2 else ""
    if command == "lab":
        from mailserver.lab.server import main as lab_main

        return lab_main(sys.argv[2:])
    if command == "doctor":
        from mailserver.doctor import main as doctor_main

        return doctor_main(sys.argv[2:])
    if command == "selfcheck":
        from mailserver.doctor.selfcheck import main as selfcheck_main

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

"""Command line: `python -m mailserver lab [--stack dev] [--check]`."""

import sys


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "lab":
        from .lab import main as lab_main

        return lab_main(sys.argv[2:])
    print("usage: python -m mailserver lab [--stack NAME] [--check] [--keep]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

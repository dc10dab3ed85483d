"""``fastloss bench``: fastloss against the NumPy baseline (placeholder, filled in next)."""


def add_parser(subparsers):
    return subparsers.add_parser("bench", help="benchmark fastloss against NumPy")


def run(args) -> int:
    raise SystemExit("fastloss bench: not built yet")

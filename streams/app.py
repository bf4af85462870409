"""The `cspulse` command line (placeholder until the commands land)."""


def main() -> None:
    raise SystemExit("cspulse: no commands yet")

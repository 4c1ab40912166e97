"""How many examples the property tests draw: `make test` runs each test at the count
written next to it; `SNNCOMPILE_HYPOTHESIS=thorough` (`make test-thorough`) runs ten times as
many, for the tests with an explicit count (through `examples`) and for those on Hypothesis's
own default (100, through the profile that tests/conftest.py loads)."""
import os

#: profile name -> factor on every example count
FACTORS = {"default": 1, "thorough": 10}

PROFILE = os.environ.get("SNNCOMPILE_HYPOTHESIS", "default") or "default"


def check_profile() -> None:
    """One line naming the variable, its value and the accepted ones (conftest turns it into
    a usage error, exit 4 by pytest's convention, before any test runs)."""
    if PROFILE not in FACTORS:
        raise ValueError(f"SNNCOMPILE_HYPOTHESIS={PROFILE!r}: unknown profile "
                         f"(accepted: {', '.join(FACTORS)})")


def factor() -> int:
    check_profile()
    return FACTORS[PROFILE]


def examples(n: int) -> int:
    """`n` examples under the default profile, `n` x the profile's factor otherwise."""
    return n * factor()

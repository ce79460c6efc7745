"""Process settings mmgraph makes on import, before torch reads them."""

import os
import subprocess
import sys

import pytest

PROBE = "import os, mmgraph.core; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0")])
def test_huge_pages_on_unless_the_caller_chose(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected

"""Has pytest rewrite the assertions of `flops_fit_core.testing`: failed contracts explain.

Loaded by pytest through the `pytest11` entry point, before any test module imports the
contracts: `register_assert_rewrite` only reaches modules not imported yet. The contracts also
carry explicit messages, so they read well under `-p no:flops_fit` or another runner too.
"""

import pytest

pytest.register_assert_rewrite("flops_fit_core.testing")

"""Settings for the whole test session: the unit tests, the notebooks under nbval and the CLI's subprocesses."""

import os
import shutil
import tempfile


def pytest_configure(config):
    # The corpus cache of `shakespeare()` goes to a temporary folder for the session, never to the user's
    # ~/.cache/tinytorch. Set in the environment, so the notebooks' kernels and the subprocesses inherit it.
    config.tinytorch_cache = tempfile.mkdtemp(prefix="tinytorch-test-cache-")
    os.environ["TINYTORCH_CACHE"] = config.tinytorch_cache


def pytest_unconfigure(config):
    shutil.rmtree(config.tinytorch_cache, ignore_errors=True)

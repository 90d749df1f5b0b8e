"""Settings for the whole test session: the unit tests, the notebooks under nbval and the CLI's subprocesses."""

import os
import shutil
import signal
import tempfile


def pytest_configure(config):
    # The corpus cache of `shakespeare()` goes to a temporary folder for the session, never to the user's
    # ~/.cache/tinytorch. Set in the environment, so the notebooks' kernels and the subprocesses inherit it.
    config.tinytorch_cache = tempfile.mkdtemp(prefix="tinytorch-test-cache-")
    os.environ["TINYTORCH_CACHE"] = config.tinytorch_cache
    # A shell that is not interactive starts a background job (`cmd &`) with Ctrl-C (SIGINT) ignored, and Python
    # keeps it ignored; the tests that send Ctrl-C need Python's usual handler (StopOnSignal leaves an ignored signal
    # alone). Put it back for the session: the subprocesses then start with it too.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config):
    shutil.rmtree(config.tinytorch_cache, ignore_errors=True)

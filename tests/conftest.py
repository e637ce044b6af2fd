"""Suite-wide rules: a skip fails the run unless its reason is allowed below; Hypothesis
profiles (derandomized, and randomized with a fixed budget and a printed seed); the
session's private SLURM cluster (``slurm`` fixture).

Hypothesis: ``--hypothesis-profile=derandomized`` (the default; also
``HYPOTHESIS_PROFILE=derandomized``) runs every property test on the examples its own
settings choose, the same ones every run. ``--hypothesis-profile=random`` explores new
examples: at most RANDOM_BUDGET a test, from ``--hypothesis-seed=N`` (or
``HYPOTHESIS_SEED``; a fresh seed otherwise), printed in the header so that a failure can
be replayed. ``scripts/test`` runs both.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# ------------------------------------------------------------------------ skips
# A skip hides a test that did not run. In CI every dependency the suite needs is
# installed (scripts/test), so a skip means something is missing or broken: it fails the
# run, unless its reason matches one of these (regex, searched in the reason), each with
# the reason it is allowed.
SKIP_ALLOW_LIST: dict[str, str] = {
    # pytest.mark.skipif(sys.platform ...): the suite runs on Linux; a platform guard is
    # not a missing dependency.
    r"^(only|not) on (linux|windows|macos|darwin)": "platform guard: not applicable here",
}


def _allowed(reason: str) -> bool:
    return any(re.search(pattern, reason, re.IGNORECASE) for pattern in SKIP_ALLOW_LIST)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


_UNEXPECTED: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not _allowed(reason):
            report.outcome = "failed"
            report.longrepr = (
                f"unexpected skip: {reason}\n(a skip fails the run unless its reason is in "
                "SKIP_ALLOW_LIST in tests/conftest.py: install what the test needs, "
                "scripts/test does)"
            )
            _UNEXPECTED.append(f"{item.nodeid}: {reason}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module skipped whole (pytest.importorskip at import, allow_module_level=True).
    if report.skipped:
        reason = _skip_reason(report)
        if not _allowed(reason):
            _UNEXPECTED.append(f"{report.nodeid} (whole module): {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _UNEXPECTED:
        terminalreporter.section("unexpected skips (the run fails)", red=True)
        for line in _UNEXPECTED:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _UNEXPECTED and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------------- hypothesis
RANDOM_BUDGET = 100  # examples a property test, at most, in the randomized profile
_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("derandomized", derandomize=True, **_COMMON)
settings.register_profile("random", derandomize=False, max_examples=RANDOM_BUDGET, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    profile = config.getoption("hypothesis_profile", None) or os.environ.get(
        "HYPOTHESIS_PROFILE", "derandomized")
    config.option.hypothesis_profile = profile
    if profile == "random" and config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = os.environ.get("HYPOTHESIS_SEED") or str(
            secrets.randbelow(2**32))


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.option.hypothesis_profile == "random":
        seed = config.option.hypothesis_seed
        return (f"hypothesis: randomized, at most {RANDOM_BUDGET} examples a test, seed "
                f"{seed} (replay: --hypothesis-profile=random --hypothesis-seed={seed})")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the randomized profile, property tests whose own settings pin
    ``derandomize=True`` explore too: their settings are rederived (same budget or less,
    not derandomized)."""
    if config.option.hypothesis_profile != "random":
        return
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None:
            continue
        test._hypothesis_internal_use_settings = settings(
            own, derandomize=False, database=None,
            max_examples=min(own.max_examples, RANDOM_BUDGET))


# ------------------------------------------------------------------------ SLURM
@pytest.fixture(scope="session")
def slurm() -> Iterator[object]:
    """A private one-node SLURM (munged, slurmctld, slurmd) on this host, with
    ``$SLURM_CONF`` pointing at it for this process and its children; stopped by process
    id at the end of the session (see tests/slurm_fixtures.py)."""
    from slurm_fixtures import Slurm, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)  # not in SKIP_ALLOW_LIST: fails the run, saying what is missing
    cluster = Slurm()
    before = os.environ.get("SLURM_CONF")
    try:
        try:
            cluster.start()
        except Exception as exc:
            pytest.fail(f"the private SLURM did not start: {exc}\n{cluster.logs()}")
        os.environ.update(cluster.env)
        yield cluster
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
        cluster.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """A LocalCluster of 2 single-threaded worker processes shared by a test module (the
    default client of the sweep tests; a module may define its own)."""
    import cluster

    with cluster.connect("local", workers=2, dashboard=False) as c:
        yield c

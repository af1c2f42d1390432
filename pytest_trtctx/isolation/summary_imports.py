"""What a plugin's terminal summary will import, imported while the last workers run.

The pytest process of an isolated run never imports the test modules (its workers do), so a
library they import is not loaded there, and a plugin whose summary imports it pays the import
after the last test. Imported earlier, on this process's own thread (no fork may meet a thread
that imports), with what the imports warn kept for the summary.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

#: Modules that a plugin (by its module's name) imports in its terminal summary: hypothesis'
#: plugin imports hypothesis at the end of the run, about a second on a GPU host (docs/speed.md).
#: :func:`import_now` imports them once the last group has its worker (``Forker.all_started``).
END_IMPORTS: dict[str, tuple[str, ...]] = {
    "_hypothesis_pytestplugin": ("hypothesis.internal.observability",),
}
#: The plugin name of :class:`EndImportWarnings`.
END_IMPORT_WARNINGS = "trtctx-end-import-warnings"


def end_imports(config: pytest.Config) -> list[str]:
    """What :data:`END_IMPORTS` asks of the plugins registered here, not yet imported. None in
    an xdist worker: it prints no summary."""
    if hasattr(config, "workerinput"):
        return []
    loaded = {getattr(p, "__name__", None) for p in config.pluginmanager.get_plugins()}
    return [
        module
        for plugin, modules in END_IMPORTS.items()
        if plugin in loaded
        for module in modules
        if module not in sys.modules
    ]


#: A warning an end import raised, and the name of the module it was raised in (what a
#: filter's module field matches).
Caught = tuple[warnings.WarningMessage, str | None]


def import_for_the_summary(modules: list[str]) -> list[Caught]:
    """Import ``modules`` here and now, and return what they warned.

    On the pytest process's one thread, between two reads of the workers' pipes: the workers
    run on meanwhile, and the run ends no later than the summary's own import would have let it
    (a thread gained nothing over that, and its ``catch_warnings`` changed every thread's
    warnings). The warnings are kept for the summary (:class:`EndImportWarnings`): raised here,
    outside any test, one would print in the progress line and miss pytest's warnings summary.
    """
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # pytest's filters decide, at the summary
        for module in modules:
            try:
                importlib.import_module(module)
            except pytest.exit.Exception:  # SIGTERM's way out (ended_by_signals) goes on out
                raise
            except Exception:  # fails again where the plugin imports it, and is said there
                pass
    return [(w, _module_named(w.filename)) for w in seen]


def _module_named(filename: str) -> str | None:
    """The loaded module whose file this is (warnings.warn's ``module``), else None."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None


class EndImportWarnings:
    """The warnings :func:`import_now`'s imports raised, raised again at the start of
    the terminal summary, where the plugin's own import would have raised them: pytest's
    filters (``-W``, ``filterwarnings``, by module too) apply to them, and its warnings summary
    lists them. Registered as ``trtctx-end-import-warnings`` where there are any."""

    def __init__(self, caught: list[Caught]) -> None:
        self.caught = caught

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self) -> None:
        for w, module in self.caught:
            warnings.warn_explicit(
                w.message, w.category, w.filename, w.lineno, module=module, source=w.source
            )


def import_now(config: pytest.Config) -> None:
    """Import what :data:`END_IMPORTS` asks of the plugins registered here; what the imports
    warn is raised again at the summary (:class:`EndImportWarnings`)."""
    modules = end_imports(config)
    caught = import_for_the_summary(modules) if modules else []
    manager = config.pluginmanager
    if caught and not manager.has_plugin(END_IMPORT_WARNINGS):
        manager.register(EndImportWarnings(caught), END_IMPORT_WARNINGS)

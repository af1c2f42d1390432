"""A warning recorded in a worker, shown by the pytest process
(pytest_trtctx.isolation.warning_wire)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

from pytest_trtctx.isolation import warning_wire


def test_warnings_cross_as_plain_data_with_their_category() -> None:

    message = warnings.WarningMessage(DeprecationWarning("old"), DeprecationWarning, "f.py", 3)
    data = warning_wire.serialize_warning(message)
    assert json.loads(json.dumps(data)) == data
    back = warning_wire.unserialize_warning(data)
    assert (back.category, str(back.message), back.filename, back.lineno) == (
        DeprecationWarning,
        "old",
        "f.py",
        3,
    )
    unknown = warning_wire.unserialize_warning({**data, "category": "nowhere.module:Gone"})
    assert issubclass(unknown.category, Warning) and str(unknown.message) == "old"
    assert (unknown.category.__module__, unknown.category.__name__) == ("nowhere.module", "Gone")
    again = warning_wire.unserialize_warning({**data, "category": "nowhere.module:Gone"})
    assert again.category is unknown.category


def test_a_warning_category_is_never_imported_to_show_it() -> None:
    """The module of a category that the process has not imported stays unimported: its import
    could initialise CUDA in the pytest process (a helper that loads NVML)."""
    code = (
        "import sys, json;"
        "from pytest_trtctx.isolation.warning_wire import unserialize_warning as back;"
        "w = back({'category': 'json.decoder:Nope', 'message': 'm'});"
        "w = back({'category': 'xml.dom.minidom:Warned', 'message': 'm'});"
        "print('xml.dom.minidom' in sys.modules, w.category.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "Warned"]
